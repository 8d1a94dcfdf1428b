"""``python -m experiments plan``: the fit hook, the call counts behind an estimate, a
quick preset's estimate against its measured time, every paper preset planned on CPU."""

from __future__ import annotations

import pytest
import torch
from conftest import files_under, run_cli
from test_datasets import write_cifar_folder

from experiments import losses, plan, recipes, train


def test_the_fit_hook_is_off_outside_a_plan():
    assert train.plan_hook is None


def _tiny_fit(**kw):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    probe = train.Probe("w", lambda s: float(s.model.weight.norm()), train.every(3))
    return train.fit(model, losses.half_sum_mse, x, y,
                     lambda p: torch.optim.SGD(p, lr=0.01), probes=[probe],
                     progress=False, **kw)


@pytest.mark.parametrize("steps,eval_every", [(20, 1), (20, 2), (17, 5), (1, 1)])
def test_call_counts_are_those_of_a_real_fit(steps, eval_every):
    # the estimate counts the whole run's records and probe calls from the schedules;
    # here they are counted from an actual fit's history instead
    history = _tiny_fit(steps=steps, eval_every=eval_every)
    assert plan._counts(steps, eval_every, None) == len(history["step"])
    assert plan._counts(steps, eval_every, train.every(3)) == len(history["w.step"])
    log = train.log_spaced(6)
    expected = sum(1 for s in range(steps + 1)
                   if (s % eval_every == 0 or s == steps) and log.due(s, steps))
    assert plan._counts(steps, eval_every, log) == expected


def test_a_planned_fit_runs_a_few_steps_and_estimates_the_rest():
    with plan.planning() as session:
        history = _tiny_fit(steps=1000, eval_every=10, batch_size=4)
    assert train.plan_hook is None
    (phase,) = session.phases
    assert history.steps == plan.K_STEPS + 1 and phase.steps == 1000
    assert phase.step_seconds > 0 and phase.estimate_seconds > 1000 * phase.step_seconds
    assert phase.eval_seconds > 0  # minibatch: the full-set evaluations are counted


def test_a_quick_preset_plan_covers_every_fit_of_the_run():
    """The plan of xu2024-xor-grokking (quick) times every fit the run makes, and counts
    each at the run's full length. How close its wall-time estimate comes to the run is a
    bench row (``python -m experiments bench``, topic ``plan``): a ratio of wall times
    depends on the machine's load, so it is not asserted here."""
    recipe_id = "xu2024-xor-grokking"
    p = plan.plan(recipe_id, "quick", "cpu")
    assert p.ok, p.status
    assert p.phases and all(phase.steps > 0 and phase.step_seconds > 0 for phase in p.phases)
    assert all(phase.estimate_seconds >= phase.steps * phase.step_seconds
               for phase in p.phases)
    assert 0 < p.seconds < float("inf")


def test_a_plan_writes_nothing_to_the_store(isolated_store):
    p = plan.plan("xu2024-xor-grokking", "quick", "cpu")
    assert p.ok
    assert files_under(isolated_store[0]) == [] and files_under(isolated_store[1]) == []


def test_a_paper_preset_without_its_data_refuses_in_one_line(isolated_store):
    out = run_cli("plan", "cohen2021-progressive-sharpening", "--scale", "paper",
                  "--device", "cpu", env_dirs=isolated_store, timeout=300)
    assert out.returncode == 2, out.stdout + out.stderr
    line, = out.stderr.strip().splitlines()
    assert "data_dir" in line and "cifar-10-batches-py" in line
    assert out.stdout == ""


PAPER_IDS = [rid for rid in recipes.recipe_ids() if "paper" in recipes.load(rid).PRESETS]


def _paper_overrides(recipe_id, tmp_path):
    if recipe_id == "cohen2021-progressive-sharpening":  # the real CIFAR path, tiny file
        write_cifar_folder(tmp_path / "cifar-10-batches-py", per_batch=40)
        return {"data_dir": str(tmp_path)}
    return None


@pytest.mark.slow
@pytest.mark.parametrize("recipe_id", PAPER_IDS)
def test_every_paper_preset_starts_on_cpu(recipe_id, tmp_path):
    # the paper preset's own data and models are built and its first fit runs its first
    # steps (or 5 s of work before one pass without an error; not a speed limit, a run
    # that is still going then has started): a preset that fails to build, has a shape
    # error or does not fit in memory fails here
    p = plan.start(recipe_id, "paper", "cpu", _paper_overrides(recipe_id, tmp_path),
                   time_limit=5)
    assert p.started, p.status
    assert p.peak_mb is None or p.peak_mb < 16 * 1024


def test_a_start_check_stops_at_the_end_of_the_first_fit(isolated_store):
    p = plan.start("xu2024-xor-grokking", "quick", "cpu", time_limit=600)
    assert p.started and "updates at" in p.status, p.status
    assert len(p.phases) == 1 and p.phases[0].timed == plan.K_STEPS + 1
    assert files_under(isolated_store[0]) == [] and files_under(isolated_store[1]) == []


def test_plan_start_from_the_cli_says_one_line_per_recipe(isolated_store):
    out = run_cli("plan", "lu2024-benign-oscillation", "--start", env_dirs=isolated_store,
                  timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    line, = out.stdout.strip().splitlines()
    assert line.startswith("lu2024-benign-oscillation (paper, cpu): started: ")
    out = run_cli("plan", "cohen2021-progressive-sharpening", "--start",
                  env_dirs=isolated_store, timeout=300)
    assert out.returncode == 2 and out.stdout == ""
    line, = out.stderr.strip().splitlines()
    assert "cifar-10-batches-py" in line
    assert files_under(isolated_store[0]) == [] and files_under(isolated_store[1]) == []


def test_a_start_check_reports_a_recipe_error_in_one_line(monkeypatch):
    def broken(cfg, device):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x3 and 2x5)\nmore")

    monkeypatch.setattr(recipes.load("xu2024-xor-grokking"), "run", broken)
    p = plan.start("xu2024-xor-grokking", "quick", "cpu")
    assert p.failed and not p.started
    assert p.status == "failed: RuntimeError: mat1 and mat2 shapes cannot be multiplied " \
                       "(4x3 and 2x5)"


@pytest.mark.slow
@pytest.mark.paper_start
@pytest.mark.parametrize("recipe_id", PAPER_IDS)
def test_every_paper_preset_plans_on_cpu(recipe_id, tmp_path):
    # builds the preset's data and models and runs the first steps of every phase
    overrides = _paper_overrides(recipe_id, tmp_path)
    limit = 240  # a guard against a hung plan, not a speed test: the slowest (wu2023-stability-
    # threshold) took 42 s on an idle core, ~6x less
    p = plan.plan(recipe_id, "paper", "cpu", overrides, time_limit=limit)
    assert p.ok, p.status
    assert p.phases and p.seconds > 0 and p.peak_mb < 16 * 1024
