"""The batched fractal trainer against torch.optim.SGD, the score, and box counting."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from experiments import losses
from experiments.fractal_analysis import (
    boundary_pixels,
    box_counting_dimension,
    box_counts,
    zoom_window,
)
from toy_models import fractal


class OneHidden(nn.Module):
    """The paper's network as an nn.Module, written from the reference note independently
    of the batched trainer (real tanh, autograd gradients)."""

    def __init__(self, problem: fractal.Problem):
        super().__init__()
        self.w0 = nn.Parameter(problem.w0.clone())
        self.w1 = nn.Parameter(problem.w1.clone())
        self.activation = problem.activation

    def forward(self, x):
        n = self.w0.shape[0]
        z = x @ self.w0 / math.sqrt(n)
        h = {"tanh": lambda z: torch.tanh(math.sqrt(2) * z),
             "relu": lambda z: math.sqrt(2) * torch.relu(z),
             "identity": lambda z: z}[self.activation](z)
        return h @ self.w1 / n


def sgd_trajectory(problem, lr0, lr1, steps, rows=None, offset=0.0, mode="none"):
    """(losses, [(w0, w1) after each step]) from torch.optim.SGD, one group per layer."""
    model = OneHidden(problem)
    opt = torch.optim.SGD([{"params": [model.w0], "lr": lr0},
                           {"params": [model.w1], "lr": lr1}])
    if mode == "init":
        with torch.no_grad():
            model.w0 += offset
    out_losses, states = [], []
    for t in range(steps):
        if mode == "every_step":
            with torch.no_grad():
                model.w0 += offset
        with torch.no_grad():
            out_losses.append(losses.mean_mse(model(problem.x), problem.y).mean().item())
        x, y = (problem.x, problem.y) if rows is None else (problem.x[rows[t]],
                                                            problem.y[rows[t]])
        opt.zero_grad()
        losses.mean_mse(model(x), y).mean().backward()
        opt.step()
        states.append((model.w0.detach().clone(), model.w1.detach().clone()))
    return np.array(out_losses), states


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("activation", fractal.ACTIVATIONS)
@pytest.mark.parametrize("batch_size", [None, 16])
def test_batched_step_equals_sgd_step_for_step(activation, batch_size):
    """From SGD's own state at every step, one batched step reproduces SGD's next state."""
    problem = fractal.make_problem(activation, seed=3)
    gen = torch.Generator().manual_seed(7)
    pixels = 4
    lr0 = 10 ** (torch.rand(pixels, generator=gen, dtype=torch.float64) * 3 - 1)
    lr1 = 10 ** (torch.rand(pixels, generator=gen, dtype=torch.float64) * 3 - 1)
    steps = 20
    rows = (None if batch_size is None
            else fractal.minibatch_indices(problem.n_data, batch_size, steps))
    for p in range(pixels):
        ref_losses, states = sgd_trajectory(problem, lr0[p].item(), lr1[p].item(), steps, rows)
        w0, w1 = problem.w0, problem.w1
        for t in range(steps):
            if not (np.isfinite(ref_losses[t]) and ref_losses[t] < 1e100
                    and torch.isfinite(states[t][0]).all() and torch.isfinite(states[t][1]).all()):
                break  # past overflow there is nothing left to compare
            plane = fractal.Plane.from_pixels(w0[None], w1[None])
            new, loss = fractal.gd_step(problem, plane, lr0[p:p + 1], lr1[p:p + 1],
                                        None if rows is None else rows[t])
            assert abs(loss.item() / ref_losses[t] - 1) < 1e-12
            assert relative_error(new.pixel_w0()[0], states[t][0]) < 1e-12
            assert relative_error(new.w1[0], states[t][1]) < 1e-12
            w0, w1 = states[t]


@pytest.mark.parametrize("batch_size", [None, 16])
@pytest.mark.parametrize("mode", ["none", "init", "every_step"])
def test_whole_trajectories_equal_sgd_on_random_pixels(batch_size, mode):
    """Run freely for 40 steps: losses agree with SGD's to 1e-12 relative (pixels chosen
    in the converging phase, where rounding differences do not grow)."""
    problem = fractal.make_problem("tanh", seed=5)
    gen = torch.Generator().manual_seed(11)
    pixels, steps = 6, 40
    lr0 = 10 ** (torch.rand(pixels, generator=gen, dtype=torch.float64) * 1.5 - 1)
    lr1 = 10 ** (torch.rand(pixels, generator=gen, dtype=torch.float64) * 1.5 - 1)
    offset = 10 ** (torch.rand(pixels, generator=gen, dtype=torch.float64) * 2 - 4)
    _, traj = fractal.train_plane(problem, lr0, lr1, steps, offset=offset, offset_mode=mode,
                                  batch_size=batch_size, chunk=4, trajectory=True)
    rows = (None if batch_size is None
            else fractal.minibatch_indices(problem.n_data, batch_size, steps))
    for p in range(pixels):
        ref, _ = sgd_trajectory(problem, lr0[p].item(), lr1[p].item(), steps, rows,
                                offset[p].item(), mode)
        np.testing.assert_allclose(traj[p].numpy(), ref, rtol=1e-12)


def test_float32_is_selectable_and_close():
    problem = fractal.make_problem("tanh")
    lr = torch.tensor([0.1, 0.3])
    s64 = fractal.train_plane(problem, lr, lr, 30)
    s32 = fractal.train_plane(problem, lr, lr, 30, dtype="float32")
    assert torch.allclose(s64, s32, rtol=1e-3)


def test_a_pixel_depends_on_its_place_only_not_on_its_chunk_mates():
    """Chunks are padded to one shape, so a pixel's numbers are fixed by its position:
    any subset of the plane (a tile), trained with the plane's positions, reproduces the
    plane's scores bit for bit; so do other pixels sharing its chunk."""
    problem = fractal.make_problem("relu")
    lr0, lr1 = torch.meshgrid(torch.logspace(-1, 2, 7, dtype=torch.float64),
                              torch.logspace(-1, 2, 5, dtype=torch.float64), indexing="ij")
    whole = fractal.train_plane(problem, lr0, lr1, 25, chunk=8)
    assert whole.shape == (7, 5)
    pick = torch.tensor([3, 4, 9, 17, 30, 34])
    part = fractal.train_plane(problem, lr0.reshape(-1)[pick], lr1.reshape(-1)[pick], 25,
                               chunk=8, positions=pick)
    assert torch.equal(part, whole.reshape(-1)[pick])
    swapped = lr0.reshape(-1).clone()
    # new chunk-mates for pixels 3 and 4
    swapped[[0, 1, 2]] = torch.tensor([50.0, 0.2, 7.0], dtype=torch.float64)
    other = fractal.train_plane(problem, swapped, lr1.reshape(-1), 25, chunk=8)
    assert torch.equal(other[3:], whole.reshape(-1)[3:])
    # chunks trained side by side by two threads: the same numbers
    assert torch.equal(fractal.train_plane(problem, lr0, lr1, 25, chunk=8, workers=2), whole)
    with pytest.raises(ValueError, match="own place"):
        fractal.train_plane(problem, lr0[:1, :2], lr1[:1, :2], 5, positions=[1, 1])


def test_score_matches_definition_and_sign_is_phase():
    t = torch.arange(50, dtype=torch.float64)
    falling = 2.0 * 0.9 ** t  # v_t = 0.9^t, converged
    rising = 2.0 * 1.1 ** t  # diverging, 1/v summed
    exploded = torch.cat([torch.tensor([1.0, 1e3]), torch.full((48,), float("nan"))])
    flat = torch.ones(50)  # last-20 mean = 1, not < 1: diverged by the weak criterion
    score = fractal.score_from_losses(torch.stack([falling, rising, exploded, flat]))
    assert score[0] == pytest.approx(-sum(0.9 ** k for k in range(50)), rel=1e-12)
    assert score[1] == pytest.approx(sum(1.1 ** -k for k in range(50)), rel=1e-12)
    assert score[2] == pytest.approx(1 + 1e-3 + 48 * 1e-6, rel=1e-12)
    assert score[3] == pytest.approx(50.0)
    assert fractal.converged(score).tolist() == [True, False, False, False]


def test_low_learning_rates_converge_and_huge_ones_diverge():
    problem = fractal.make_problem("tanh")
    score = fractal.train_plane(problem, torch.tensor([1e-1, 1e5]), torch.tensor([1e-1, 1e5]),
                                100)
    assert fractal.converged(score).tolist() == [True, False]


def test_liu_analogue_has_both_phases_and_converges_below_eta_one():
    lrs = torch.linspace(0.05, 1.5, 300, dtype=torch.float64)
    _, diverged = fractal.liu_scores(lrs, steps=300)
    assert not diverged[lrs < 0.9].any()
    assert diverged[lrs > 1.2].all()


# ---------------------------------------------------------------- analysis

def test_boundary_pixels_need_both_signs_in_a_two_by_two_window():
    score = -np.ones((4, 5))
    score[:, 3:] = 1.0
    edge = boundary_pixels(score)
    assert edge.shape == (3, 4)
    assert edge[:, 2].all() and edge.sum() == 3


def test_box_counting_of_a_line_a_square_and_the_sierpinski_carpet():
    size = 729  # 3^6
    line = np.zeros((size, size), bool)
    line[size // 3, :] = True
    assert box_counting_dimension(line) == pytest.approx(1.0, abs=0.03)
    diagonal = np.eye(512, dtype=bool)
    assert box_counting_dimension(diagonal) == pytest.approx(1.0, abs=0.03)
    square = np.ones((512, 512), bool)
    assert box_counting_dimension(square) == pytest.approx(2.0, abs=1e-9)
    carpet = np.ones((1, 1), bool)
    for _ in range(6):
        z = np.zeros_like(carpet)
        carpet = np.block([[carpet, carpet, carpet], [carpet, z, carpet],
                           [carpet, carpet, carpet]])
    # boxes of side 3^k align with the carpet's cells: N(3^k) = 8^(6−k) exactly
    sizes, counts = box_counts(carpet, sizes=[3 ** k for k in range(6)])
    assert counts.tolist() == [8 ** (6 - k) for k in range(6)]
    dim = box_counting_dimension(carpet, sizes=[3 ** k for k in range(6)])
    assert dim == pytest.approx(math.log(8) / math.log(3), rel=1e-9)


def test_zoom_window_halves_around_the_point():
    assert zoom_window((-1.0, 3.0, 0.0, 2.0), (0.5, 1.5)) == (-0.5, 1.5, 1.0, 2.0)


def test_zoom_sequence_is_cached_resumable_and_refinable(tmp_path):
    from experiments.fractal_analysis import canonical_name, zoom_sequence

    calls = []

    def compute(window, resolution):  # a wavy boundary y = sin(3x), analytic and cheap
        calls.append((window, resolution))
        x = np.linspace(window[0], window[1], resolution)
        y = np.linspace(window[2], window[3], resolution)
        gx, gy = np.meshgrid(x, y)
        return gy - np.sin(3 * gx)

    hyper = {"activation": "tanh", "steps": 10, "first_window": [-2.0, 2.0, -2.0, 2.0]}
    first = (-2.0, 2.0, -2.0, 2.0)
    scores, windows, directory = zoom_sequence(compute, first, 3, 32, hyper, cache=tmp_path)
    assert len(calls) == 3 and len(scores) == 3
    assert directory.name == canonical_name(hyper) and "activation-tanh" in directory.name
    for a, b in zip(windows, windows[1:], strict=False):
        assert b[1] - b[0] == pytest.approx((a[1] - a[0]) / 2)
    # killed after keyframe 1: only the missing keyframe is computed again
    (directory / "keyframe-02-r32.npz").unlink()
    again, windows2, _ = zoom_sequence(compute, first, 3, 32, hyper, cache=tmp_path)
    assert len(calls) == 4 and windows2 == windows
    assert np.array_equal(again[2], scores[2])
    # refined: same windows, every keyframe recomputed at the higher resolution
    fine, windows3, _ = zoom_sequence(compute, first, 3, 64, hyper, cache=tmp_path)
    assert len(calls) == 7 and windows3 == windows and fine[0].shape == (64, 64)
    # another hyperparameter, another cache entry
    _, _, other = zoom_sequence(compute, first, 2, 32, {**hyper, "steps": 11}, cache=tmp_path)
    assert other != directory


def test_paper_colouring_puts_converged_in_blue_half():
    from experiments.recipes._sohldickstein2024 import paper_colours

    values = paper_colours(np.array([[-5.0, -1.0], [0.5, 3.0]]))
    assert (values[0] >= 0.25).all() and (values[1] <= -0.25).all()  # Spectral: high = blue
