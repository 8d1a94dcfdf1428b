from __future__ import annotations

import pickle

import numpy as np
import pytest

from experiments import datasets
from experiments.config import ConfigError


def write_cifar_folder(folder, per_batch=6, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for name in datasets.CIFAR_TRAIN + datasets.CIFAR_TEST:
        batch = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 b"labels": list(rng.integers(0, 10, per_batch))}
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle)


def test_cifar10_loader_reads_python_batches(tmp_path):
    write_cifar_folder(tmp_path / "cifar-10-batches-py")
    data = datasets.cifar10(tmp_path, n_train=10)
    assert data.x.shape == (10, 3072) and data.x_test.shape == (6, 3072)
    # standardised with the statistics of all 30 training rows, before taking the first 10
    full = datasets.cifar10(tmp_path)
    assert full.x.shape == (30, 3072)
    np.testing.assert_allclose(full.x.mean(0).numpy(), 0, atol=1e-12)
    np.testing.assert_array_equal(full.x[:10].numpy(), data.x.numpy())


def test_cifar10_missing_file_is_a_config_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="data_batch_1"):
        datasets.cifar10(tmp_path / "empty")


def test_mnist1d_is_generated_offline_and_deterministic():
    data = datasets.mnist1d(1000)
    assert data.x.shape == (1000, 40) and data.x_test.shape == (1000, 40)
    # class counts of the first 1000 training labels (reference note §4)
    counts = np.bincount(data.y.numpy(), minlength=10)
    assert counts.tolist() == [100, 103, 114, 90, 111, 91, 101, 114, 78, 98]


def test_digits():
    data = datasets.digits()
    assert data.x.shape[1] == 64 and len(data.y) + len(data.y_test) == 1797


def test_cifar10_folder_names_what_is_missing_before_reading(tmp_path):
    with pytest.raises(ConfigError, match="needs data_dir.*cifar-10-batches-py"):
        datasets.cifar10_folder("")
    with pytest.raises(ConfigError, match=f"{tmp_path / 'absent'} is not a folder"):
        datasets.cifar10_folder(tmp_path / "absent")
    write_cifar_folder(tmp_path / "cifar-10-batches-py", per_batch=2)
    assert datasets.cifar10_folder(tmp_path) == tmp_path / "cifar-10-batches-py"
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(ConfigError, match="test_batch"):
        datasets.cifar10_folder(tmp_path)
