from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from experiments import losses
from experiments.train import Probe, every, fit, log_spaced
from toy_models.networks import mlp, seeded


def small_problem(n=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=gen, dtype=torch.float64)
    labels = (x[:, 0] + 0.5 * x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    return x, labels


def model(seed=0):
    return seeded(seed, mlp, [5, 16, 3], "tanh", dtype=torch.float64)


def sgd(lr=0.1, **kw):
    return lambda params: torch.optim.SGD(params, lr=lr, **kw)


def test_chunked_gradient_equals_full_batch_gradient():
    x, labels = small_problem(n=50)
    grads = []
    for chunk in (None, 7):
        net = model()
        fit(net, losses.cross_entropy, x, labels, sgd(lr=0.0), steps=0, chunk_size=chunk)
        net.zero_grad()
        from experiments.train import accumulate_gradient

        accumulate_gradient(net, losses.cross_entropy, x, labels, chunk)
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
    reference = model()
    loss = losses.cross_entropy(reference(x), labels).mean()
    expected = torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(
        reference.parameters()))])
    for g in grads:
        torch.testing.assert_close(g, expected, rtol=1e-12, atol=1e-14)


def test_full_batch_gd_matches_hand_written_gd():
    x, labels = small_problem()
    net, reference = model(), model()
    history = fit(net, losses.cross_entropy, x, labels, sgd(lr=0.3), steps=5)
    with torch.no_grad():
        expected_losses = []
        for _ in range(5):
            with torch.enable_grad():
                loss = losses.cross_entropy(reference(x), labels).mean()
                grads = torch.autograd.grad(loss, list(reference.parameters()))
            expected_losses.append(float(loss))
            for p, g in zip(reference.parameters(), grads, strict=True):
                p -= 0.3 * g
    np.testing.assert_allclose(history["train_loss"][:5], expected_losses, rtol=1e-12)
    for p, q in zip(net.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    assert history.outcome == "budget" and history.steps == 5
    assert list(history["step"]) == [0, 1, 2, 3, 4, 5]


def test_divergence_is_an_outcome_not_an_exception():
    x, labels = small_problem()
    y = losses.one_hot(labels, 3, torch.float64)
    history = fit(model(), losses.half_sum_mse, x, y, sgd(lr=50.0), steps=500)
    assert history.diverged and history.steps < 500
    assert not np.isfinite(history["train_loss"][-1]) or \
        history["train_loss"][-1] > 1e6 * history["train_loss"][0]


def test_goals_stop_the_run():
    x, labels = small_problem()
    history = fit(model(), losses.cross_entropy, x, labels, sgd(lr=0.5), steps=5000,
                  accuracy_goal=0.9)
    assert history.outcome == "accuracy_goal"
    assert history["train_accuracy"][-1] >= 0.9
    history = fit(model(), losses.cross_entropy, x, labels, sgd(lr=0.5), steps=5000,
                  loss_goal=0.5)
    assert history.outcome == "loss_goal" and history["train_loss"][-1] <= 0.5


@pytest.mark.parametrize("replacement", [False, True])
def test_minibatches_are_seeded(replacement):
    x, labels = small_problem()
    runs = [fit(model(), losses.cross_entropy, x, labels, sgd(), steps=30, batch_size=8,
                replacement=replacement, seed=s) for s in (1, 1, 2)]
    np.testing.assert_array_equal(runs[0]["batch_loss"], runs[1]["batch_loss"])
    assert not np.array_equal(runs[0]["batch_loss"], runs[2]["batch_loss"])


def test_epochs_without_replacement_visit_every_example_once():
    from experiments.train import _BatchSampler

    sampler = _BatchSampler(24, 8, "epoch", seed=0)
    epoch = torch.cat([sampler.next() for _ in range(3)])
    assert sorted(epoch.tolist()) == list(range(24))


def test_subset_batches_are_distinct_and_cover_uniformly():
    from experiments.train import _BatchSampler

    sampler = _BatchSampler(6, 3, "subset", seed=0)
    counts = torch.zeros(6)
    for _ in range(3000):
        batch = sampler.next()
        assert len(set(batch.tolist())) == 3
        counts[batch] += 1
    # each example is in a batch with probability B/n = 1/2
    assert torch.allclose(counts / 3000, torch.full((6,), 0.5), atol=0.04)


def test_probe_schedules():
    x, labels = small_problem()
    seen = {"every": [], "log": []}
    probes = [Probe("every", lambda s: seen["every"].append(s.step) or 1.0, every(4)),
              Probe("log", lambda s: {"norm": seen["log"].append(s.step) or 2.0},
                    log_spaced(5))]
    history = fit(model(), losses.cross_entropy, x, labels, sgd(), steps=100, probes=probes)
    assert seen["every"] == list(range(0, 101, 4))
    assert seen["log"][0] == 0 and seen["log"][-1] == 100 and len(seen["log"]) <= 6
    assert list(history["every.step"]) == seen["every"]
    assert history["log.norm"].shape == (len(seen["log"]),)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_dtypes(dtype):
    x, labels = small_problem()
    net = model()
    history = fit(net, losses.cross_entropy, x, labels, sgd(), steps=3, dtype=dtype)
    assert next(net.parameters()).dtype == getattr(torch, dtype)
    assert np.isfinite(history["train_loss"]).all()


RESUME_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import numpy as np, torch
    from experiments import losses, store
    from experiments.train import Probe, every, fit
    from toy_models.networks import mlp, seeded

    out, ckpt_dir, kill_at = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(96, 5, generator=gen, dtype=torch.float64)
    y = (x[:, 0] > 0).long()
    net = seeded(0, mlp, [5, 16, 2], "tanh", dtype=torch.float64)

    def noisy_probe(state):
        # uses the global RNG and the probe memory: both must be restored on resume
        state.memory["calls"] = state.memory.get("calls", 0) + 1
        if state.step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return {"noise": float(torch.randn(())), "calls": state.memory["calls"]}

    torch.manual_seed(123)
    with store.checkpointing(Path(ckpt_dir) if ckpt_dir != "-" else None):
        history = fit(net, losses.cross_entropy, x, y,
                      lambda p: torch.optim.SGD(p, lr=0.2, momentum=0.9), steps=60,
                      batch_size=16, seed=5, probes=[Probe("p", noisy_probe, every(3))],
                      checkpoint="run", checkpoint_every=10)
    np.savez(out, **history.arrays,
             params=torch.cat([p.detach().flatten() for p in net.parameters()]).numpy())
""")


def test_killed_run_resumes_bit_for_bit(tmp_path):
    script = tmp_path / "resume.py"
    script.write_text(RESUME_SCRIPT)
    ckpt = tmp_path / "ckpt"

    def launch(out, ckpt_dir, kill_at):
        return subprocess.run([sys.executable, str(script), str(out), ckpt_dir, str(kill_at)],
                              capture_output=True, text=True, timeout=300)

    killed = launch(tmp_path / "a.npz", str(ckpt), 33)
    assert killed.returncode == -9, killed.stderr
    assert (ckpt / "run.pt").exists() and not (tmp_path / "a.npz").exists()
    resumed = launch(tmp_path / "a.npz", str(ckpt), -1)
    assert resumed.returncode == 0, resumed.stderr
    straight = launch(tmp_path / "b.npz", "-", -1)
    assert straight.returncode == 0, straight.stderr
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert sorted(a.files) == sorted(b.files)
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    # a finished checkpoint short-circuits: rerunning returns the same history at once
    again = launch(tmp_path / "c.npz", str(ckpt), 33)
    assert again.returncode == 0
    np.testing.assert_array_equal(np.load(tmp_path / "c.npz")["params"], b["params"])
