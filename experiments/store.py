"""Results store: a cache keyed by the resolved config and the code, atomic writes, provenance.

Layout (under the cache root, ``.cache/experiments`` in the project by default)::

    <id>/<key>/result.npz      the arrays and scalars that ``run`` returned
    <id>/<key>/meta.json       scale, resolved config, code hash, provenance
    <id>/<key>/checkpoints/    training checkpoints while a run is in progress
    <id>/<key>/.lock           held (flock) by the process computing the run
    <id>/<key>/error.json      a sweep point that crashed: its error and traceback

``key`` hashes the recipe id, the resolved config and the source of the code the
recipe can depend on (the recipe file, ``toy_models`` and the lab modules).
"""

from __future__ import annotations

import ast
import contextlib
import contextvars
import fcntl
import hashlib
import io
import json
import os
import platform
import resource
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent


def cache_root() -> Path:
    return Path(os.environ.get("EXPERIMENTS_CACHE", PROJECT_ROOT / ".cache" / "experiments"))


def figures_root() -> Path:
    return Path(os.environ.get("EXPERIMENTS_FIGURES", PROJECT_ROOT / "figures"))


# ---------------------------------------------------------------- atomic writes

def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def save_result(path: Path, result: dict[str, Any]) -> None:
    """Store a result dict (arrays, floats, ints, bools, strings) as one ``.npz`` file."""
    buffer = io.BytesIO()
    arrays = {key: np.asarray(value) for key, value in result.items()}
    for key, value in arrays.items():
        if value.dtype == object:
            raise TypeError(f"result[{key!r}] is not a numeric array or scalar")
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def load_result(path: Path) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as data:
        return {key: (data[key].item() if data[key].ndim == 0 else data[key]) for key in data}


# ---------------------------------------------------------------- keys

def _module_file(name: str) -> Path | None:
    """The project file of a dotted module name (``experiments.x``, ``toy_models.y``)."""
    parts = name.split(".")
    if parts[0] not in ("experiments", "toy_models"):
        return None
    base = PROJECT_ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def code_sources(recipe_file: Path) -> list[Path]:
    """The files whose edits invalidate a recipe's cached results: the recipe and every
    project module it imports, directly or through other project modules."""
    seen: set[Path] = set()
    stack = [Path(recipe_file).resolve()]
    while stack:
        path = stack.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imported_modules(path):
            # importing a.b.c also runs a/__init__.py and a/b/__init__.py
            pieces = name.split(".")
            for depth in range(1, len(pieces) + 1):
                found = _module_file(".".join(pieces[:depth]))
                if found is not None and found.resolve() not in seen:
                    stack.append(found.resolve())
    return sorted(seen)


def code_hash(recipe_file: Path) -> str:
    digest = hashlib.sha256()
    for path in code_sources(recipe_file):
        digest.update(str(path.relative_to(PROJECT_ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def run_key(recipe_id: str, config: dict[str, Any], code: str) -> str:
    blob = json.dumps({"id": recipe_id, "config": config, "code": code}, sort_keys=True,
                      default=_json_default)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_dir(recipe_id: str, key: str) -> Path:
    return cache_root() / recipe_id / key


def cached_runs(recipe_id: str) -> list[tuple[Path, dict[str, Any]]]:
    """Completed runs of a recipe, newest first, as (run dir, meta)."""
    base = cache_root() / recipe_id
    runs = []
    if base.is_dir():
        for meta_path in base.glob("*/meta.json"):
            if (meta_path.parent / "result.npz").exists():
                runs.append((meta_path.parent, json.loads(meta_path.read_text())))
    runs.sort(key=lambda item: item[1].get("finished_at", 0.0), reverse=True)
    return runs


def is_complete(directory: Path) -> bool:
    """A run is done only once its result and its meta are both in the store."""
    return (Path(directory) / "result.npz").exists() and (Path(directory) / "meta.json").exists()


# ---------------------------------------------------------------- run locks

# run directories whose lock this process holds (flock is per open file, so a second
# flock from the same process on a new descriptor would wait on itself)
_HELD: set[Path] = set()


@contextlib.contextmanager
def _flock(directory: Path, wait: bool, on_wait: Any = None) -> Iterator[bool]:
    """Take the run directory's lock (``.lock``, ``fcntl.flock``); yields whether it did.

    Without ``wait`` a busy lock yields False at once, even when this process is the
    holder; with it, ``on_wait()`` is called and the lock awaited, and a lock this
    process already holds counts as taken (reentrant, see ``_HELD``).
    """
    directory = Path(directory).resolve()
    if wait and directory in _HELD:
        yield True
        return
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                yield False
                return
            if on_wait is not None:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
        _HELD.add(directory)
        try:
            yield True
        finally:
            _HELD.discard(directory)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def run_lock(directory: Path):
    """Try to take the exclusive lock of a run directory (a context manager).

    Yields True when it took the lock and False when it is held (by another process, or
    already by this one); never blocks. The kernel drops the lock when its holder exits
    or is killed, so a dead worker leaves no stale lock. (Linux NFS clients map flock
    to POSIX locks, which NFSv4 servers honour across nodes; without working locks the
    content-addressed run directories and atomic writes still keep every result whole.)
    """
    return _flock(directory, wait=False)


def hold(directory: Path, on_wait: Any = None):
    """Hold the run directory's lock, waiting for another process that holds it.

    Reentrant within a process: inside :func:`run_lock` or another ``hold`` of the same
    directory it returns at once. ``on_wait()`` is called once if the lock is busy.
    Used by ``api.compute`` so two processes asked for one config compute it once: the
    second waits, then finds the first one's result in the store.
    """
    return _flock(directory, wait=True, on_wait=on_wait)


def lock_held(directory: Path) -> bool:
    """True while some process holds the run directory's lock (it is computing the run)."""
    try:
        fd = os.open(Path(directory) / ".lock", os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


# ---------------------------------------------------------------- checkpoints

_CHECKPOINT_DIR: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "checkpoint_dir", default=None)


@contextlib.contextmanager
def checkpointing(directory: Path | None) -> Iterator[None]:
    """Within this block, ``train.fit(..., checkpoint=name)`` saves to ``directory/name.pt``."""
    token = _CHECKPOINT_DIR.set(Path(directory) if directory is not None else None)
    try:
        yield
    finally:
        _CHECKPOINT_DIR.reset(token)


def checkpoint_path(name: str) -> Path | None:
    """Where the checkpoint ``name`` lives in the active run, or None outside a stored run."""
    directory = _CHECKPOINT_DIR.get()
    if directory is None:
        return None
    safe = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in name)
    return directory / f"{safe}.pt"


# ---------------------------------------------------------------- provenance

def git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, text=True,
                                capture_output=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=PROJECT_ROOT, text=True, capture_output=True,
                               timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def package_versions() -> dict[str, str]:
    import matplotlib
    import scipy
    import sympy
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "sympy": sympy.__version__,
        "matplotlib": matplotlib.__version__,
    }


def device_description(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return (f"cpu: {platform.processor() or platform.machine()}, "
            f"{torch.get_num_threads()} torch threads, {os.cpu_count()} cores")


def peak_memory_mb(device: str) -> dict[str, float]:
    """Peak resident memory of this process, and the peak CUDA allocation on a GPU."""
    import torch

    peak = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    if device.startswith("cuda") and torch.cuda.is_available():
        peak["peak_cuda_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return peak
