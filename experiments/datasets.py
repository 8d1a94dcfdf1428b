"""Real workloads as tensors: MNIST-1D (generated offline), sklearn digits, CIFAR-10 from disk.

Every loader returns ``Dataset(x, y, x_test, y_test)`` with float64 inputs and int64
labels on the CPU; the training loop casts to the run's dtype and device.
"""

from __future__ import annotations

import functools
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from experiments.config import ConfigError


@dataclass(frozen=True)
class Dataset:
    x: torch.Tensor
    y: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def num_classes(self) -> int:
        return int(max(self.y.max(), self.y_test.max())) + 1

    def first(self, n: int | None) -> Dataset:
        """The first ``n`` training examples (Cohen et al.: first N, no shuffling)."""
        if n is None:
            return self
        return Dataset(self.x[:n], self.y[:n], self.x_test, self.y_test)


def _standardize(x: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std from the full training set, applied to both splits."""
    mean, std = x.mean(axis=0), x.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return (x - mean) / std, (x_test - mean) / std


def _as_dataset(x, y, x_test, y_test) -> Dataset:
    return Dataset(torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.long),
                   torch.as_tensor(x_test, dtype=torch.float64),
                   torch.as_tensor(y_test, dtype=torch.long))


@functools.lru_cache(maxsize=4)
def _mnist1d_arrays(seed: int):
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = seed
    data = make_dataset(args)  # generated locally; `get_dataset` would download
    return data["x"], data["y"], data["x_test"], data["y_test"]


def mnist1d(n_train: int | None = None, standardize: bool = True, seed: int = 42) -> Dataset:
    """MNIST-1D (Greydanus 2020): 4000 train / 1000 test sequences of length 40, 10 classes.

    Standardised with the statistics of all 4000 training examples, then the first
    ``n_train`` are kept.
    """
    x, y, x_test, y_test = _mnist1d_arrays(seed)
    if standardize:
        x, x_test = _standardize(x, x_test)
    return _as_dataset(x, y, x_test, y_test).first(n_train)


def digits(n_train: int | None = None, test_fraction: float = 0.25, seed: int = 0,
           standardize: bool = True) -> Dataset:
    """scikit-learn's 8×8 digits (1797 × 64), split with a seeded permutation."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    order = np.random.default_rng(seed).permutation(len(bunch.target))
    n_test = int(round(test_fraction * len(order)))
    test, train = order[:n_test], order[n_test:]
    x, x_test = bunch.data[train].astype(np.float64), bunch.data[test].astype(np.float64)
    if standardize:
        x, x_test = _standardize(x, x_test)
    return _as_dataset(x, bunch.target[train], x_test, bunch.target[test]).first(n_train)


CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_TEST = ["test_batch"]


# The globals a cifar-10-batches-py file may name: numpy's array and scalar
# reconstructors (under numpy 1's and numpy 2's module names) and latin-1 ``bytes``
# (protocol-2 pickles written by Python 3). Everything else -- ``os.system``,
# ``builtins.eval``, any class -- is refused before it can be called.
_CIFAR_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
})


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _CIFAR_GLOBALS:
            raise pickle.UnpicklingError(f"refused global {module}.{name}")
        return super().find_class(module, name)


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(pixels / 255 as float64 (N, 3072), labels int64 (N,)) of one CIFAR-10 batch file,
    read with an unpickler that admits only the types such a file holds."""
    bad = f"data_dir: {path} is not a CIFAR-10 python batch"
    try:
        with open(path, "rb") as handle:
            batch = _CifarUnpickler(handle, encoding="bytes").load()
    except Exception as err:  # truncated, garbage or hostile: one line, nothing executed
        raise ConfigError(f"{bad} ({type(err).__name__}: {err})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ConfigError(f"{bad} (no b'data' and b'labels' entries)")
    data, labels = batch[b"data"], batch[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3072:
        raise ConfigError(f"{bad} (b'data' is not a uint8 array of rows of 3072 pixels)")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise ConfigError(f"{bad} (b'labels' are not integers)") from None
    if labels.shape != (data.shape[0],) or labels.min(initial=0) < 0 or \
            labels.max(initial=0) > 9:
        raise ConfigError(f"{bad} (b'labels' are not {data.shape[0]} classes in 0..9)")
    return data.astype(np.float64) / 255.0, labels


def _read_cifar_batches(folder: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for name in names:
        path = folder / name
        if not path.is_file():
            raise ConfigError(f"data_dir: {folder} has no CIFAR-10 file {name!r} "
                              "(expected the python-pickle batches of cifar-10-batches-py)")
        x, y = _cifar_batch(path)
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def cifar10_folder(data_dir: str | Path) -> Path:
    """The ``cifar-10-batches-py`` folder in (or at) ``data_dir``; ConfigError naming the
    missing folder or batch file, without reading any (a run checks this before it starts)."""
    if not str(data_dir).strip():
        raise ConfigError("data_dir: CIFAR-10 needs data_dir, the folder holding "
                          "cifar-10-batches-py (--set data_dir=FOLDER)")
    folder = Path(data_dir).expanduser()
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    if not folder.is_dir():
        raise ConfigError(f"data_dir: {folder} is not a folder")
    for name in (*CIFAR_TRAIN, *CIFAR_TEST):
        if not (folder / name).is_file():
            raise ConfigError(f"data_dir: {folder} has no CIFAR-10 file {name!r} "
                              "(expected the python-pickle batches of cifar-10-batches-py)")
    return folder


def cifar10(data_dir: str | Path, n_train: int | None = None, standardize: bool = True) -> Dataset:
    """CIFAR-10 from a local ``cifar-10-batches-py`` folder (or its parent).

    As Cohen et al.: pixels / 255, flattened NCHW, per-feature mean and std from the
    full 50k training set, then the first ``n_train`` examples.
    """
    folder = cifar10_folder(data_dir)
    x, y = _read_cifar_batches(folder, CIFAR_TRAIN)
    x_test, y_test = _read_cifar_batches(folder, CIFAR_TEST)
    if standardize:
        x, x_test = _standardize(x, x_test)
    return _as_dataset(x, y, x_test, y_test).first(n_train)
