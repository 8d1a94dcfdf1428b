"""toy_models.xor_clusters against direct computation, autograd and Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from experiments import losses
from experiments.train import fit
from toy_models import xor_clusters as xc


def test_data_statistics():
    data = xc.sample(40_000, 6, 3.0, 0.2, seed=0)
    counts = np.bincount(data["cluster"].numpy(), minlength=4) / 40_000
    np.testing.assert_allclose(counts, 0.25, atol=0.01)
    assert abs(float(data["flipped"].double().mean()) - 0.2) < 0.01
    # clean label +1 exactly on the ±μ1 clusters; noisy = clean except where flipped
    assert torch.equal(data["y_clean"] > 0, data["cluster"] < 2)
    assert torch.equal(data["y"] != data["y_clean"], data["flipped"])
    mu1, mu2 = xc.cluster_means(6, 3.0)
    assert float(mu1 @ mu2) == 0.0 and float(mu1.norm()) == float(mu2.norm()) == 3.0
    means = torch.stack([mu1, -mu1, mu2, -mu2])
    noise = data["x"] - means[data["cluster"]]
    np.testing.assert_allclose(noise.mean(0).numpy(), 0.0, atol=0.02)
    np.testing.assert_allclose(noise.var(0).numpy(), 1.0, atol=0.03)


def test_network_has_a_fixed_balanced_second_layer():
    net = xc.TwoLayerReLU(10, 6, 0.1)
    assert [name for name, _ in net.named_parameters()] == ["weight"]
    np.testing.assert_allclose(net.a.numpy(), np.array([1, 1, 1, -1, -1, -1]) / math.sqrt(6))
    x = torch.randn(5, 10, dtype=torch.float64)
    manual = sum(float(net.a[j]) * torch.relu(x @ net.weight[j]) for j in range(6))
    torch.testing.assert_close(net(x), manual)
    assert len(list(xc.TwoLayerReLU(10, 6, 0.1, train_output=True).parameters())) == 2


def test_closed_form_gd_step_equals_one_step_of_torch_sgd():
    data = xc.sample(30, 50, 2.0, 0.1, seed=1)
    net = xc.TwoLayerReLU(50, 8, 0.3, seed=2)
    w0 = net.weight.detach().clone()
    fit(net, losses.logistic, data["x"], data["y"],
        lambda params: torch.optim.SGD(params, lr=0.7), steps=1, progress=False)
    expected = xc.gd_step(w0, net.a, data["x"], data["y"], 0.7)
    torch.testing.assert_close(net.weight.detach(), expected, rtol=1e-12, atol=1e-12)


def test_one_step_from_tiny_init_is_the_linear_classifier_and_fits_every_label():
    # p much larger than n‖μ‖², wide net: the regime of the theory
    p, n, step = 20_000, 20, 1.0
    train = xc.sample(n, p, 5.0, 0.2, seed=3)
    test = xc.sample(500, p, 5.0, 0.2, seed=4)
    net = xc.TwoLayerReLU(p, 2000, 1e-8, seed=5)
    w1 = xc.gd_step(net.weight.detach(), net.a, train["x"], train["y"], step)
    direction = xc.one_step_direction(train["x"], train["y"], step)

    def f1(x):
        return torch.relu(x @ w1.T) @ net.a

    assert np.corrcoef(f1(test["x"]).numpy(), (test["x"] @ direction).numpy())[0, 1] > 0.99
    assert xc.accuracy(f1(train["x"]), train["y"]) == 1.0           # flipped labels too
    assert xc.accuracy(train["x"] @ direction, train["y"]) == 1.0
    assert abs(xc.accuracy(f1(test["x"]), test["y_clean"]) - 0.5) < 0.1


@pytest.mark.parametrize("mu_norm", [0.8, 1.5])
def test_bayes_accuracy_by_monte_carlo(mu_norm):
    noise_rate, n = 0.2, 400_000
    data = xc.sample(n, 3, mu_norm, noise_rate, seed=6)
    mu1, mu2 = xc.cluster_means(3, mu_norm)
    guess = xc.bayes_predict(data["x"], mu1, mu2)
    for clean, labels in ((False, data["y"]), (True, data["y_clean"])):
        expected = xc.bayes_accuracy(mu_norm, noise_rate, clean=clean)
        measured = xc.accuracy(guess, labels)
        assert abs(measured - expected) < 4 * math.sqrt(expected * (1 - expected) / n)


def test_bayes_accuracy_is_one_minus_noise_rate_for_separated_clusters():
    assert xc.bayes_accuracy(16.0, 0.15) == pytest.approx(0.85, abs=1e-12)
    assert xc.bayes_accuracy(16.0, 0.15, clean=True) == pytest.approx(1.0, abs=1e-12)


def test_alignment_splits_by_output_sign():
    mu1, mu2 = xc.cluster_means(5, 2.0)
    weight = torch.zeros(4, 5, dtype=torch.float64)
    weight[0, 0], weight[1, 0], weight[2, 1], weight[3, 1] = 3.0, -1.0, 2.0, -4.0
    a = torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=torch.float64) / 2
    out = {k: float(v) for k, v in xc.alignment(weight, a, mu1, mu2).items()}
    assert out == {"pos_mu1": 2.0, "pos_mu2": 0.0, "neg_mu1": 0.0, "neg_mu2": 3.0}
