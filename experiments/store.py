"""Results store: a cache keyed by the resolved config and the code, atomic writes, provenance.

Layout (under the cache root, ``.cache/experiments`` in the project by default)::

    <id>/<key>/result.npz      the arrays and scalars that ``run`` returned
    <id>/<key>/meta.json       scale, resolved config, code hash, provenance
    <id>/<key>/checkpoints/    training checkpoints while a run is in progress
    <id>/<key>/.lock           held (flock) by the process computing the run
    <id>/<key>/error.json      a sweep point that crashed: its error and traceback

``key`` hashes the recipe id, the resolved config and the source of the code the
recipe can depend on (the recipe file, ``toy_models`` and the lab modules).

What a reader of the store can rely on (the README's contract section says the same):

* an entry is served only if its ``meta.json`` names this key, this recipe and this
  resolved config, and the digest of its arrays equals the one recorded when it was
  written (:func:`read_entry`); anything else is moved aside into ``<id>/.damaged/``
  with one warning line (:func:`quarantine`) and recomputed;
* nothing read from the store or a data folder is unpickled or executed: results are
  ``.npz`` loaded with ``allow_pickle=False``, checkpoints load with
  ``torch.load(weights_only=True)``; the lock is opened with ``O_NOFOLLOW`` and must be
  a regular file, so a planted symlink is never written through;
* files are created with the permissions the umask allows (0644 under 022, 0664 under
  002), folders likewise, so a group can share one ``EXPERIMENTS_CACHE``.
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
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from experiments.config import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent


class StoreError(ConfigError):
    """The store or the figures folder cannot be used as configured (one line, exit 2)."""


class DamagedEntry(Exception):
    """A cache entry that must not be served: unreadable, truncated, or another config's."""


def _root_from_env(variable: str, default: Path) -> Path:
    value = os.environ.get(variable)
    if value is None:
        return default
    if not value.strip():
        raise StoreError(f"{variable} is set but empty; unset it or name a folder")
    return Path(value).expanduser()


def cache_root() -> Path:
    return _root_from_env("EXPERIMENTS_CACHE", PROJECT_ROOT / ".cache" / "experiments")


def figures_root() -> Path:
    """The committed reference figures: ``<id>.png/json`` (quick), ``paper/<id>.*``."""
    return _root_from_env("EXPERIMENTS_FIGURES", PROJECT_ROOT / "figures")


def reference_dir(scale: str) -> Path:
    """Where a preset's reference figure and JSON live for ``scale``."""
    return figures_root() if scale == "quick" else figures_root() / scale


def _nearest_existing(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def writable(path: Path) -> bool:
    """True if ``path`` is a folder this process can write, or can be created as one."""
    existing = _nearest_existing(path)
    return existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)


def check_environment() -> None:
    """One clear line (StoreError) before any compute when the store's folders are unusable."""
    for variable, root in (("EXPERIMENTS_CACHE", cache_root()),
                           ("EXPERIMENTS_FIGURES", figures_root())):
        if root.exists() and not root.is_dir():
            raise StoreError(f"{variable}: {root} is a file, not a folder")
        existing = _nearest_existing(root)
        if not existing.is_dir():
            raise StoreError(f"{variable}: {existing} is a file, not a folder")


def require_writable(path: Path, what: str) -> None:
    if not writable(path):
        raise StoreError(f"{what}: cannot write {path} (read-only or not a folder)")


# ---------------------------------------------------------------- atomic writes

def current_umask() -> int:
    """The process umask, read without changing it (``/proc``), else by set-and-restore."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    The file gets the mode a plain ``open`` would (0666 less the umask), not mkstemp's 0600,
    so the other members of a group sharing the store can read it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
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


def arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of every array's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for key in sorted(arrays):
        value = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}\0{value.dtype.str}\0{value.shape}\0".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def save_result(path: Path, result: dict[str, Any]) -> str:
    """Store a result dict (arrays, floats, ints, bools, strings) as one ``.npz`` file;
    returns the digest of its arrays (recorded in ``meta.json``)."""
    buffer = io.BytesIO()
    arrays = {key: np.asarray(value) for key, value in result.items()}
    for key, value in arrays.items():
        if value.dtype == object:
            raise TypeError(f"result[{key!r}] is not a numeric array or scalar")
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())
    return arrays_digest(arrays)


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data}


def _as_result(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    return {key: (value.item() if value.ndim == 0 else value) for key, value in arrays.items()}


def load_result(path: Path) -> dict[str, Any]:
    """The arrays of a ``result.npz`` without any check (prefer :func:`read_entry`)."""
    return _as_result(_load_arrays(path))


def _plain(obj: Any) -> Any:
    """JSON round trip (tuples become lists), to compare a config with a stored one."""
    return json.loads(json.dumps(obj, default=_json_default))


def read_meta(directory: Path) -> dict[str, Any]:
    """An entry's ``meta.json`` as a dict; DamagedEntry if missing, unreadable or garbled."""
    path = Path(directory) / "meta.json"
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise DamagedEntry("meta.json is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DamagedEntry(f"meta.json is unreadable ({type(err).__name__})") from None
    if not isinstance(meta, dict):
        raise DamagedEntry("meta.json is not an object")
    return meta


def read_entry(directory: Path, recipe_id: str | None = None,
               config: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(result, meta) of a complete cache entry, after checking that it is the one asked for.

    Served only if ``meta.json`` records this folder's key, ``recipe_id`` and ``config``
    (when given), and the arrays of ``result.npz`` hash to the recorded digest. Raises
    :class:`DamagedEntry` naming the first check that fails.
    """
    directory = Path(directory)
    meta = read_meta(directory)
    if meta.get("key") != directory.name:
        raise DamagedEntry(f"meta.json names key {meta.get('key')!r}, not {directory.name!r}")
    if recipe_id is not None and meta.get("id") != recipe_id:
        raise DamagedEntry(f"meta.json names recipe {meta.get('id')!r}, not {recipe_id!r}")
    if config is not None and _plain(meta.get("config")) != _plain(config):
        raise DamagedEntry("meta.json records another config")
    if not isinstance(meta.get("digest"), str):
        raise DamagedEntry("meta.json has no digest of the arrays (an entry from older code)")
    try:
        arrays = _load_arrays(directory / "result.npz")
    except FileNotFoundError:
        raise DamagedEntry("result.npz is missing") from None
    except Exception as err:  # a truncated zip raises one of several types, all unservable
        raise DamagedEntry(f"result.npz is unreadable ({type(err).__name__})") from None
    if arrays_digest(arrays) != meta["digest"]:
        raise DamagedEntry("result.npz does not match the digest in meta.json")
    return _as_result(arrays), meta


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def quarantine(path: Path, reason: str) -> Path:
    """Move a bad entry (a run folder, less its lock, or a single file) into ``.damaged/``
    beside it, with one warning line; returns where it went. Nothing is deleted."""
    path = Path(path)
    destination = path.parent / ".damaged" / f"{path.name}.{time.time_ns()}"
    destination.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir() and not path.is_symlink():
        destination.mkdir()
        for child in path.iterdir():
            if child.name != ".lock":  # the lock stays: a waiting process still holds it
                os.replace(child, destination / child.name)
    elif path.exists() or path.is_symlink():
        os.replace(path, destination)
    warn(f"{path}: {reason}; moved aside to {destination}")
    return destination


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


# recipe file -> (the (path, mtime_ns, size) of every source, their hash): a run asks for
# its recipe's hash several times (key, preflight, reference flags); an edit to any source
# changes its stamp and the hash is recomputed
_CODE_HASHES: dict[Path, tuple[tuple[tuple[Path, int, int], ...], str]] = {}


def _stamps(paths) -> tuple[tuple[Path, int, int], ...]:
    out = []
    for path in paths:
        st = path.stat()
        out.append((path, st.st_mtime_ns, st.st_size))
    return tuple(out)


def code_hash(recipe_file: Path) -> str:
    """The first 16 hex digits of SHA-256 over the recipe's sources (names and bytes)."""
    recipe_file = Path(recipe_file).resolve()
    cached = _CODE_HASHES.get(recipe_file)
    if cached is not None:
        try:
            if _stamps(p for p, _, _ in cached[0]) == cached[0]:
                return cached[1]
        except OSError:
            pass
    sources = code_sources(recipe_file)
    stamps = _stamps(sources)
    digest = hashlib.sha256()
    for path in sources:
        digest.update(str(path.relative_to(PROJECT_ROOT)).encode())
        digest.update(path.read_bytes())
    value = digest.hexdigest()[:16]
    _CODE_HASHES[recipe_file] = (stamps, value)
    return value


def run_key(recipe_id: str, config: dict[str, Any], code: str) -> str:
    blob = json.dumps({"id": recipe_id, "config": config, "code": code}, sort_keys=True,
                      default=_json_default)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_dir(recipe_id: str, key: str) -> Path:
    return cache_root() / recipe_id / key


def entries(recipe_id: str) -> list[Path]:
    """Every run folder of a recipe in the store that holds a result or a meta file."""
    base = cache_root() / recipe_id
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and ((p / "result.npz").exists() or (p / "meta.json").exists()))


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
    fd = open_lock(directory / ".lock")
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


def open_lock(path: Path) -> int:
    """Open (creating) a lock file for writing, never through a symlink and only if it is a
    regular file; a planted link or folder there is a StoreError, not a write elsewhere."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as err:
        kind = "a symlink" if path.is_symlink() else "a folder" if path.is_dir() else \
            "not openable"
        raise StoreError(f"lock {path} is {kind} ({err.strerror}); remove it") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StoreError(f"lock {path} is not a regular file; remove it")
    return fd


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
        fd = os.open(Path(directory) / ".lock", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:  # none, or a planted link or folder: no process holds a lock there
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

def tree_state() -> tuple[str, bool | None]:
    """(HEAD commit, whether the work tree is clean) of the project's git checkout.

    Clean means no modified, staged or untracked (not ignored) file outside ``figures/``:
    writing the references themselves must not make the next one dirty. ("unknown", None)
    outside a git checkout.
    """
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, text=True,
                                capture_output=True, timeout=10, check=True).stdout.strip()
        changes = subprocess.run(["git", "status", "--porcelain", "--", ".", ":!figures"],
                                 cwd=PROJECT_ROOT, text=True, capture_output=True,
                                 timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown", None
    return commit, not changes


def git_commit() -> str:
    """HEAD, with ``+dirty`` when the tree is not clean (see :func:`tree_state`)."""
    commit, clean = tree_state()
    return commit + ("+dirty" if clean is False else "")


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


def device_description(device: str, threads: int | None = None) -> str:
    """The device in words; ``threads``: the torch threads the run used (default: now)."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    threads = torch.get_num_threads() if threads is None else threads
    return (f"cpu: {platform.processor() or platform.machine()}, "
            f"{threads} torch threads, {os.cpu_count()} cores")


def peak_memory_mb(device: str) -> dict[str, float]:
    """Peak resident memory of this process, and the peak CUDA allocation on a GPU."""
    import torch

    peak = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    if device.startswith("cuda") and torch.cuda.is_available():
        peak["peak_cuda_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return peak


# ---------------------------------------------------------------- checkpoint files

# ``torch.load(weights_only=True)`` admits tensors and plain containers only, so numpy
# values (probe histories, warm-start vectors) are stored as tagged tensors and come back
# with their dtype: a resumed run records the same arrays as an uninterrupted one.
_NDARRAY, _NPSCALAR, _TUPLE = "__ndarray__", "__npscalar__", "__tuple__"


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray | np.generic):
        array = np.asarray(obj)
        if array.dtype.kind not in "biufc":
            raise TypeError(f"checkpoint: cannot store a numpy array of dtype {array.dtype}")
        tag = _NDARRAY if isinstance(obj, np.ndarray) else _NPSCALAR
        return {tag: __import__("torch").from_numpy(np.array(array, order="C", copy=True))}
    if isinstance(obj, dict):
        return {key: _encode(value) for key, value in obj.items()}
    if isinstance(obj, tuple):
        return {_TUPLE: [_encode(value) for value in obj]}
    if isinstance(obj, list):
        return [_encode(value) for value in obj]
    return obj


def _decode(obj: Any) -> Any:
    if isinstance(obj, dict):
        if len(obj) == 1 and _NDARRAY in obj:
            return obj[_NDARRAY].numpy()
        if len(obj) == 1 and _NPSCALAR in obj:
            return obj[_NPSCALAR].numpy()[()]
        if len(obj) == 1 and _TUPLE in obj:
            return tuple(_decode(value) for value in obj[_TUPLE])
        return {key: _decode(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_decode(value) for value in obj]
    return obj


def save_checkpoint(path: Path, blob: dict[str, Any]) -> None:
    """Write a training checkpoint atomically, as tensors and plain data only."""
    import torch

    buffer = io.BytesIO()
    torch.save(_encode(blob), buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, map_location: Any = None) -> dict[str, Any]:
    """A checkpoint written by :func:`save_checkpoint`; loads no code (``weights_only``).
    Raises :class:`DamagedEntry` for a truncated, garbled or foreign file."""
    import torch

    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, pickle with disallowed globals, not a file
        raise DamagedEntry(f"checkpoint is unreadable ({type(err).__name__})") from None
    if not isinstance(blob, dict):
        raise DamagedEntry("checkpoint is not a dict")
    return _decode(blob)
