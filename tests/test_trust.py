"""Results a group can trust on a store it can share.

Each test reproduces a failure of the older store (a tweaked run overwriting the
reference, a damaged entry giving a traceback or another config's numbers, code run
from a planted file, files only their owner could read, a broken environment found
after compute) and checks the behaviour that replaced it, with real store folders and
planted files, not mocks.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, files_under, run_cli

from experiments import api, datasets, fractal_analysis, store, train
from experiments.config import ConfigError

RECIPE = "xu2024-xor-grokking"  # its quick preset runs in a few seconds
TINY = ["seeds=1", "steps=40", "cross_steps=20", "n_test=100", "p=200", "probe_points=5"]
TINY_ARGS = [arg for item in TINY for arg in ("--set", item)]
OTHER_ARGS = ["--set" if a == "--set" else ("seeds=2" if a == "seeds=1" else a)
              for a in TINY_ARGS]  # another config of the same recipe


def _dirs(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "cache", tmp_path / "figures"


def _entry(cache: Path, recipe: str = RECIPE) -> Path:
    found = [p for p in (cache / recipe).iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(found) == 1, found
    return found[0]


def _one_line(proc, fragment: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], proc.stderr


# ---------------------------------------------------------------- 1. references

@pytest.fixture(scope="module")
def preset_store(tmp_path_factory):
    """The quick preset of RECIPE run once through the CLI into its own store."""
    root = tmp_path_factory.mktemp("preset")
    dirs = _dirs(root)
    proc = run_cli("run", RECIPE, env_dirs=dirs)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dirs, proc


def test_a_preset_run_writes_the_reference_with_its_code_hash_and_tree_state(preset_store):
    (cache, figures), proc = preset_store
    js = figures / f"{RECIPE}.json"
    assert f"wrote the reference {figures / RECIPE}.png" in proc.stdout
    record = json.loads(js.read_text())
    module = api.recipes.load(RECIPE)
    assert record["reference"] is True and record["scale"] == "quick"
    assert record["provenance"]["code_hash"] == store.code_hash(Path(module.__file__))
    assert isinstance(record["provenance"]["tree_clean"], bool)
    assert len(record["provenance"]["load_average"]) == 3
    result, meta = store.read_entry(cache / RECIPE / record["provenance"]["cache_key"], RECIPE,
                                    record["config"])
    assert record["result_scalars"] == sorted(k for k, v in result.items() if np.ndim(v) == 0)
    assert record["result_scalars"] and meta["digest"] == record["provenance"]["digest"]
    assert (figures / f"{RECIPE}.png").stat().st_size > 10_000
    assert not (figures / "paper").exists()


def test_a_run_with_overrides_never_replaces_the_reference(preset_store, tmp_path):
    (cache, figures), _ = preset_store
    before = {p: p.read_bytes() for p in files_under(figures)}
    proc = run_cli("run", RECIPE, *TINY_ARGS, env_dirs=(cache, figures))
    assert proc.returncode in (0, 1), proc.stderr
    assert {p: p.read_bytes() for p in files_under(figures)} == before
    written = [p for p in (cache / RECIPE).glob(f"*/{RECIPE}.json")
               if json.loads(p.read_text())["config"]["steps"] == 40]
    assert len(written) == 1 and str(written[0].with_suffix(".png")) in proc.stdout
    assert "not the preset, so not the reference" in proc.stdout
    assert json.loads(written[0].read_text())["reference"] is False
    # list and the claim table still read the reference: the preset's claim count
    listing = run_cli("list", env_dirs=(cache, figures))
    n = len(json.loads((figures / f"{RECIPE}.json").read_text())["claims"])
    assert f"{RECIPE}  [quick: {n}/{n} pass" in listing.stdout


def test_python_api_writes_beside_the_cache_unless_asked_for_the_reference(tmp_path, monkeypatch):
    cache, figures = _dirs(tmp_path)
    monkeypatch.setenv("EXPERIMENTS_CACHE", str(cache))
    monkeypatch.setenv("EXPERIMENTS_FIGURES", str(figures))
    outcome = api.run(RECIPE, overrides=TINY)
    assert not outcome.reference and outcome.json_path.parent == _entry(cache)
    assert files_under(figures) == []
    outcome = api.run(RECIPE, overrides=TINY, write=True)  # still not the preset
    assert not outcome.reference and files_under(figures) == []
    quiet = api.run(RECIPE, overrides=TINY, figure=False)
    assert quiet.figure_path is None and quiet.from_cache


def test_paper_references_live_in_figures_paper(monkeypatch, tmp_path):
    monkeypatch.setenv("EXPERIMENTS_FIGURES", str(tmp_path))
    meta = {"key": "k"}
    assert api.output_paths("x", "quick", True, meta) == (tmp_path / "x.png",
                                                          tmp_path / "x.json")
    assert api.output_paths("x", "paper", True, meta) == (tmp_path / "paper" / "x.png",
                                                          tmp_path / "paper" / "x.json")
    module = api.recipes.load(RECIPE)
    assert api.is_preset(module, module.PRESETS["paper"], "paper")
    assert not api.is_preset(module, module.PRESETS["paper"], "quick")


def test_list_and_check_flag_stale_and_dirty_references(preset_store, tmp_path):
    (cache, _), _ = preset_store
    figures = tmp_path / "figures"
    shutil.copytree(preset_store[0][1], figures)
    path = figures / f"{RECIPE}.json"
    record = json.loads(path.read_text())
    record["provenance"]["tree_clean"] = True
    path.write_text(json.dumps(record))
    clean = run_cli("list", env_dirs=(cache, figures))
    assert "stale" not in clean.stdout.split(RECIPE)[1].split("\n")[0]
    record["provenance"]["code_hash"] = "0" * 16
    record["provenance"]["tree_clean"] = False
    path.write_text(json.dumps(record))
    listing = run_cli("list", env_dirs=(cache, figures))
    assert "pass, stale, dirty;" in listing.stdout.split(RECIPE)[1].split("\n")[0]
    table = run_cli("list", "--markdown", env_dirs=(cache, figures))
    assert f"| `{RECIPE}` | quick (stale, dirty) |" in table.stdout
    check = run_cli("check", env_dirs=(cache, figures))
    assert f"reference {RECIPE} (quick): stale, dirty" in check.stdout


# ---------------------------------------------------------------- 2. verified entries

@pytest.fixture
def tiny_store(tmp_path):
    """RECIPE with TINY overrides computed once into a fresh store: (dirs, entry, claims)."""
    dirs = _dirs(tmp_path)
    first = run_cli("run", RECIPE, *TINY_ARGS, env_dirs=dirs)
    assert first.returncode in (0, 1), first.stderr
    return dirs, _entry(dirs[0]), first.stdout.split("\n", 1)[1]


@pytest.mark.parametrize("damage", ["truncate", "empty", "garble_meta", "drop_digest"])
def test_a_damaged_entry_is_moved_aside_and_recomputed_with_one_warning(tiny_store, damage):
    dirs, entry, claims = tiny_store
    result, meta = entry / "result.npz", entry / "meta.json"
    if damage == "truncate":
        result.write_bytes(result.read_bytes()[: result.stat().st_size // 2])
    elif damage == "empty":
        result.write_bytes(b"")
    elif damage == "garble_meta":
        meta.write_text(meta.read_text()[:40])
    else:
        data = json.loads(meta.read_text())
        del data["digest"]
        meta.write_text(json.dumps(data))
    proc = run_cli("run", RECIPE, *TINY_ARGS, env_dirs=dirs)
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and str(entry) in warnings[0], proc.stderr
    assert "cached" not in proc.stdout.splitlines()[0]  # recomputed, not served
    assert proc.stdout.split("\n", 1)[1] == claims  # the same claims, the same numbers
    moved = list((entry.parent / ".damaged").iterdir())
    assert len(moved) == 1 and moved[0].name.startswith(entry.name)
    store.read_entry(entry, RECIPE)  # the recomputed entry verifies


def test_another_configs_result_copied_in_is_never_served(tiny_store):
    (cache, figures), entry, claims = tiny_store
    other_store = cache.parent / "other"  # a second store holding another config
    other = run_cli("run", RECIPE, *OTHER_ARGS,
                    env_dirs=(other_store, figures))
    assert other.returncode in (0, 1), other.stderr
    shutil.copy(_entry(other_store) / "result.npz", entry / "result.npz")
    with pytest.raises(store.DamagedEntry, match="digest"):
        store.read_entry(entry, RECIPE)
    proc = run_cli("run", RECIPE, *TINY_ARGS, env_dirs=(cache, figures))
    assert "moved aside" in proc.stderr and proc.stdout.split("\n", 1)[1] == claims
    # meta.json copied too: it names the other folder's key, so it is refused as well
    shutil.copy(_entry(other_store) / "result.npz", entry / "result.npz")
    shutil.copy(_entry(other_store) / "meta.json", entry / "meta.json")
    with pytest.raises(store.DamagedEntry, match="key"):
        store.read_entry(entry, RECIPE)


def test_check_reports_every_damaged_entry_and_goes_on(tiny_store):
    (cache, figures), entry, _ = tiny_store
    run_cli("run", RECIPE, *OTHER_ARGS, env_dirs=(cache, figures))
    second = next(p for p in (cache / RECIPE).iterdir() if p.is_dir() and p != entry)
    (entry / "result.npz").write_bytes(b"not a zip")
    (second / "meta.json").write_text("{")
    proc = run_cli("check", env_dirs=(cache, figures))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"damaged cache entry {entry}: result.npz is unreadable" in proc.stdout
    assert f"damaged cache entry {second}: meta.json is unreadable" in proc.stdout
    assert "2 cache entries, 2 damaged" in proc.stdout
    assert (entry / "result.npz").read_bytes() == b"not a zip"  # check changes nothing


def _quadratic_fit(steps: int = 30):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    history = train.fit(model, lambda out, t: ((out - t) ** 2).sum(1) / 2, x, y,
                        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), steps=steps,
                        checkpoint="fit", checkpoint_every=5, progress=False)
    return history, model


def test_a_damaged_checkpoint_restarts_that_fit(tmp_path, capsys):
    reference, ref_model = _quadratic_fit()
    folder = tmp_path / "checkpoints"
    with store.checkpointing(folder):
        _quadratic_fit(10)  # leaves a finished checkpoint behind
        path = store.checkpoint_path("fit")
        path.write_bytes(path.read_bytes()[:100])  # truncated
        history, model = _quadratic_fit()
    assert "restarts" in capsys.readouterr().err
    np.testing.assert_array_equal(history["train_loss"], reference["train_loss"])
    assert torch.equal(model.weight, ref_model.weight)
    assert len(list((folder / ".damaged").iterdir())) == 1


def test_checkpoints_round_trip_numpy_values_through_weights_only(tmp_path):
    blob = {"a": np.arange(4, dtype=np.float32), "s": np.float32(1.5), "t": (1, 2.0),
            "l": [np.int64(3)], "x": torch.ones(2)}
    store.save_checkpoint(tmp_path / "c.pt", blob)
    back = store.load_checkpoint(tmp_path / "c.pt")
    assert back["a"].dtype == np.float32 and np.array_equal(back["a"], blob["a"])
    assert type(back["s"]) is np.float32 and back["t"] == (1, 2.0)
    assert type(back["l"][0]) is np.int64 and torch.equal(back["x"], blob["x"])


def test_a_damaged_zoom_keyframe_is_recomputed(tmp_path, capsys):
    calls = []

    def compute(window, resolution):
        calls.append(window)
        xs = np.linspace(window[0], window[1], resolution)
        return np.sin(7 * xs)[None, :] * np.cos(5 * np.linspace(window[2], window[3],
                                                                resolution))[:, None]

    hyper = {"net": "toy"}
    first, windows, directory = fractal_analysis.zoom_sequence(
        compute, (0.0, 1.0, 0.0, 1.0), 2, 16, hyper, cache=tmp_path)
    assert len(calls) == 2
    frame = directory / "keyframe-01-r16.npz"
    frame.write_bytes(frame.read_bytes()[:50])
    (directory / "windows.json").write_text("[")
    again, windows2, _ = fractal_analysis.zoom_sequence(
        compute, (0.0, 1.0, 0.0, 1.0), 2, 16, hyper, cache=tmp_path)
    assert len(calls) == 3 and windows2 == windows  # only keyframe 1 recomputed
    np.testing.assert_array_equal(again[1], first[1])
    err = capsys.readouterr().err
    assert "windows.json is unreadable" in err and "keyframe is unreadable" in err
    # a keyframe copied from another plane's folder is refused
    other = tmp_path / "elsewhere"
    other.mkdir()
    shutil.copy(directory / "keyframe-00-r16.npz", other / "keyframe-00-r16.npz")
    with pytest.raises(store.DamagedEntry, match="another plane"):
        fractal_analysis._load_keyframe(other / "keyframe-00-r16.npz")


# ---------------------------------------------------------------- 3. nothing executes

class _Exploit:
    """A pickle that runs a shell command when loaded by an unrestricted unpickler."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_planted_checkpoint_is_not_executed(tmp_path, capsys):
    marker = tmp_path / "pwned"
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    with store.checkpointing(folder):
        path = store.checkpoint_path("fit")
        torch.save({"model": _Exploit(marker)}, path)
        history, _ = _quadratic_fit()
    assert not marker.exists()
    assert "checkpoint is unreadable" in capsys.readouterr().err
    reference, _ = _quadratic_fit()
    np.testing.assert_array_equal(history["train_loss"], reference["train_loss"])


def _cifar_folder(folder: Path, planted: object | bytes | None = None) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in datasets.CIFAR_TRAIN + datasets.CIFAR_TEST:
        batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                 b"labels": list(rng.integers(0, 10, 4)), b"batch_label": b"x",
                 b"filenames": [b"a.png"] * 4}
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle, protocol=2)
    if isinstance(planted, bytes):
        (folder / "data_batch_3").write_bytes(planted)
    elif planted is not None:
        with open(folder / "data_batch_3", "wb") as handle:
            pickle.dump(planted, handle)
    return folder


@pytest.mark.parametrize("kind", ["exploit", "garbage", "wrong_shape"])
def test_cifar_batches_admit_only_their_own_types(tmp_path, kind):
    marker = tmp_path / "pwned"
    planted = {"exploit": {b"data": _Exploit(marker), b"labels": [0]},
               "garbage": b"\x80\x04garbage that is no pickle",
               "wrong_shape": {b"data": np.zeros((2, 5), np.uint8), b"labels": [0, 1]}}[kind]
    folder = _cifar_folder(tmp_path / "cifar-10-batches-py", planted)
    with pytest.raises(ConfigError, match="data_batch_3 is not a CIFAR-10 python batch"):
        datasets.cifar10(folder)
    assert not marker.exists()


def test_a_real_shaped_cifar_folder_still_loads(tmp_path):
    data = datasets.cifar10(_cifar_folder(tmp_path / "cifar-10-batches-py"))
    assert data.x.shape == (20, 3072) and data.y_test.shape == (4,)


def test_a_planted_cifar_file_from_the_cli_is_one_line_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    folder = _cifar_folder(tmp_path / "data", {b"data": _Exploit(marker), b"labels": [0]})
    proc = run_cli("run", "cohen2021-progressive-sharpening", "--set", "dataset=cifar10",
                   "--set", f"data_dir={folder}", env_dirs=_dirs(tmp_path))
    _one_line(proc, "data_batch_3 is not a CIFAR-10 python batch")
    assert not marker.exists()


def test_a_lock_symlink_is_never_written_through(tmp_path):
    cache, figures = _dirs(tmp_path)
    module, cfg = api.resolve(RECIPE, "quick", TINY)
    directory = api.run_directory(RECIPE, module, cfg)
    directory = cache / directory.relative_to(store.cache_root())
    directory.mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (directory / ".lock").symlink_to(victim)
    proc = run_cli("run", RECIPE, *TINY_ARGS, env_dirs=(cache, figures))
    _one_line(proc, "is a symlink")
    assert victim.read_text() == "precious\n"
    with pytest.raises(store.StoreError, match="symlink"):
        store.open_lock(directory / ".lock")
    assert store.lock_held(directory) is False


# ---------------------------------------------------------------- 4. a shared store

def _modes(root: Path) -> set[tuple[str, int]]:
    return {("d" if p.is_dir() else "f", stat.S_IMODE(p.stat().st_mode))
            for p in root.rglob("*") if not p.is_symlink()}


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755),
                                                         (0o002, 0o664, 0o775)])
def test_store_files_follow_the_umask(tmp_path, umask, file_mode, dir_mode):
    cache, figures = _dirs(tmp_path)
    env = {**os.environ, "EXPERIMENTS_CACHE": str(cache), "EXPERIMENTS_FIGURES": str(figures)}
    command = f"umask {umask:03o}; exec {sys.executable} -m experiments run {RECIPE} " + \
        " ".join(TINY_ARGS)
    proc = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode in (0, 1), proc.stderr
    modes = _modes(cache)
    assert ("f", file_mode) in modes and ("d", dir_mode) in modes
    assert modes <= {("f", file_mode), ("d", dir_mode)}, modes


def test_atomic_writes_follow_the_umask_in_process(tmp_path):
    old = os.umask(0o007)
    try:
        store.atomic_write_json(tmp_path / "a" / "x.json", {"x": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a" / "x.json").stat().st_mode) == 0o660
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o770


@pytest.mark.parametrize("case", ["cache_is_file", "figures_is_file", "cache_empty",
                                  "lock_is_folder"])
def test_a_broken_environment_is_one_line_before_any_compute(tmp_path, case):
    cache, figures = _dirs(tmp_path)
    env = dict(os.environ)
    env["EXPERIMENTS_CACHE"], env["EXPERIMENTS_FIGURES"] = str(cache), str(figures)
    fragment = {"cache_is_file": "is a file, not a folder",
                "figures_is_file": "is a file, not a folder",
                "cache_empty": "EXPERIMENTS_CACHE is set but empty",
                "lock_is_folder": "is a folder"}[case]
    if case == "cache_is_file":
        cache.write_text("x")
    elif case == "figures_is_file":
        figures.write_text("x")
    elif case == "cache_empty":
        env["EXPERIMENTS_CACHE"] = ""
    else:
        module, cfg = api.resolve(RECIPE, "quick", TINY)
        rel = api.run_directory(RECIPE, module, cfg).relative_to(store.cache_root())
        (cache / rel / ".lock").mkdir(parents=True)
    proc = subprocess.run([sys.executable, "-m", "experiments", "run", RECIPE, *TINY_ARGS],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    _one_line(proc, fragment)
    assert not list(tmp_path.glob("*.npz")) and not (tmp_path / "xu2024-xor-grokking").exists()
    if case == "lock_is_folder":
        assert [p.name for p in (cache / RECIPE).rglob("*")
                if p.is_file()] == []  # nothing computed


@pytest.fixture
def read_only_mount(tmp_path):
    """A folder that is read-only for every user, root included (a read-only bind mount),
    so the test needs no second account; skipped where this process cannot mount."""
    folder = tmp_path / "shared"
    folder.mkdir()
    yield folder
    subprocess.run(["umount", str(folder)], capture_output=True)


def test_a_read_only_store_refuses_a_config_it_must_compute(read_only_mount):
    """A second user of a store they cannot write: a cached config is served, one that
    must be computed is refused with one line before compute."""
    cache, figures = read_only_mount / "cache", read_only_mount / "figures"
    first = run_cli("run", RECIPE, *TINY_ARGS, env_dirs=(cache, figures))
    assert first.returncode in (0, 1), first.stderr
    for args in (["--bind", str(read_only_mount), str(read_only_mount)],
                 ["-o", "remount,ro,bind", str(read_only_mount)]):
        mounted = subprocess.run(["mount", *args], capture_output=True, text=True)
        if mounted.returncode != 0:
            pytest.skip(f"cannot make a read-only mount here: {mounted.stderr.strip()}")
    assert not os.access(cache, os.W_OK)
    before = files_under(read_only_mount)
    served = run_cli("run", RECIPE, *TINY_ARGS, env_dirs=(cache, figures))
    assert served.returncode in (0, 1) and "cached" in served.stdout, served.stderr
    refused = run_cli("run", RECIPE, *OTHER_ARGS, env_dirs=(cache, figures))
    _one_line(refused, "EXPERIMENTS_CACHE (this config must be computed): cannot write")
    assert files_under(read_only_mount) == before
