"""The IDX reader against files written here byte by byte, and the IDX-folder datasets."""

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dlstudies.data import load_data
from dlstudies.data.idx import FASHION_DIR, load_idx_folder, mnist, read_idx
from dlstudies.errors import UsageError

# Written from the IDX specification, independently of the reader's own table.
CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
         np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}


def idx_bytes(a: np.ndarray) -> bytes:
    header = bytes([0, 0, CODES[a.dtype], a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    return header + a.astype(a.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, a: np.ndarray, gz: bool = False) -> Path:
    data = idx_bytes(a)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_folder(folder: Path, n_train=40, n_test=20, n_classes=4, gz=True, sep="-") -> dict:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images": rng.integers(0, 256, (n_train, 5, 6), dtype=np.uint8),
        "train-labels": (np.arange(n_train) % n_classes).astype(np.uint8),
        "t10k-images": rng.integers(0, 256, (n_test, 5, 6), dtype=np.uint8),
        "t10k-labels": (np.arange(n_test) % n_classes).astype(np.uint8),
    }
    for stem, a in arrays.items():
        kind = "idx3" if a.ndim == 3 else "idx1"
        write_idx(folder / f"{stem}{sep}{kind}-ubyte{'.gz' if gz else ''}", a, gz)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_ubyte_images_and_labels_round_trip_exactly(tmp_path, gz):
    images = np.random.default_rng(1).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5, 9, 2], dtype=np.uint8)
    got_images = read_idx(write_idx(tmp_path / "img", images, gz))
    got_labels = read_idx(write_idx(tmp_path / "lab", labels, gz))
    assert got_images.dtype == np.uint8 and np.array_equal(got_images, images)
    assert got_labels.shape == (7,) and np.array_equal(got_labels, labels)


@settings(max_examples=25, deadline=None)
@given(dtype=st.sampled_from(sorted(CODES, key=str)), shape=st.lists(st.integers(0, 4), min_size=1, max_size=3))
def test_every_type_code_round_trips_in_native_byte_order(tmp_path_factory, dtype, shape):
    a = (np.arange(int(np.prod(shape))) - 3).astype(dtype).reshape(shape)
    got = read_idx(write_idx(tmp_path_factory.mktemp("idx") / "a.idx", a, gz=False))
    assert got.dtype == dtype and got.dtype.isnative and got.flags.writeable
    assert np.array_equal(got, a)


def test_gzip_is_recognised_by_content_not_suffix(tmp_path):
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert np.array_equal(read_idx(write_idx(tmp_path / "plain-name", a, gz=True)), a)


def bad_files() -> dict:
    good = idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
    return {
        "empty": b"",
        "wrong magic": b"\x01\x02" + good[2:],
        "png": b"\x89PNG\r\n\x1a\n" + good,
        "unknown type code": good[:2] + b"\x07" + good[3:],
        "truncated dims": good[:9],
        "zero dims": b"\x00\x00\x08\x00",
        "truncated payload": good[:-1],
        "trailing bytes": good + b"\x00",
        "truncated gzip": gzip.compress(good)[:-10],
        "corrupt gzip": gzip.compress(good)[:12] + b"\xff" * 30,
    }


@pytest.mark.parametrize("case", sorted(bad_files()))
def test_corrupt_files_are_usage_errors_naming_the_file(tmp_path, case):
    path = tmp_path / "broken-idx3-ubyte"
    path.write_bytes(bad_files()[case])
    with pytest.raises(UsageError, match="broken-idx3-ubyte") as err:
        read_idx(path)
    assert "\n" not in str(err.value)


def test_missing_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        read_idx(tmp_path / "nope")


@pytest.mark.parametrize("gz, sep", [(True, "-"), (False, "-"), (False, ".")])
def test_load_idx_folder(tmp_path, gz, sep):
    arrays = write_folder(tmp_path, gz=gz, sep=sep)
    data = load_idx_folder(tmp_path, "tiny")
    assert data.name == "tiny" and data.n_classes == 4 and str(tmp_path) in data.source
    assert data.train.x.shape == (36, 1, 5, 6) and data.val.x.shape == (4, 1, 5, 6)
    assert data.test.x.dtype == torch.float32 and data.test.y.dtype == torch.int64
    expected = torch.as_tensor(arrays["t10k-images"][:, None] / 255.0, dtype=torch.float32)
    assert torch.equal(data.test.x, expected)
    assert torch.equal(data.test.y, torch.as_tensor(arrays["t10k-labels"], dtype=torch.int64))
    # the validation set is a stratified 10%: one example of each class
    assert torch.equal(data.val.y.sort().values, torch.arange(4))
    # train + val together are exactly the train files' images
    both = (torch.cat([data.train.x, data.val.x]) * 255).round().to(torch.uint8).flatten(1)
    assert sorted(map(bytes, both.numpy())) == sorted(map(bytes, arrays["train-images"].reshape(40, -1)))


def test_load_idx_folder_split_is_fixed(tmp_path):
    write_folder(tmp_path)
    a, b = load_idx_folder(tmp_path, "tiny"), load_idx_folder(tmp_path, "tiny")
    assert torch.equal(a.val.x, b.val.x) and torch.equal(a.train.y, b.train.y)


def test_missing_files_name_them_and_the_remedy(tmp_path):
    write_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(UsageError, match="t10k-labels-idx1-ubyte.*apt-get install"):
        load_idx_folder(tmp_path, "x", "apt-get install something")


def test_label_count_mismatch_is_a_usage_error(tmp_path):
    write_folder(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(39, dtype=np.uint8), gz=True)
    with pytest.raises(UsageError, match="labels must be 40 integers"):
        load_idx_folder(tmp_path, "x")


def test_too_few_examples_per_class_for_a_stratified_holdout(tmp_path):
    write_folder(tmp_path, n_train=6, n_classes=6)
    with pytest.raises(UsageError, match="too few training examples"):
        load_idx_folder(tmp_path, "x")


def test_mnist_without_data_dir_says_fetch_or_pass_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DLSTUDIES_DATA", str(tmp_path))  # nothing fetched there
    with pytest.raises(UsageError, match="run `dlstudies data fetch mnist` .*, or pass --data-dir"):
        mnist()


def test_mnist_reads_a_data_dir(tmp_path):
    write_folder(tmp_path, n_classes=10, n_train=100)
    data = mnist(str(tmp_path))
    assert data.name == "mnist" and data.n_classes == 10 and len(data.val) == 10


def test_fashion_mnist_from_a_data_dir_with_missing_files(tmp_path):
    with pytest.raises(UsageError, match="apt-get install dataset-fashion-mnist.*--data-dir"):
        load_data("fashion-mnist", str(tmp_path))


def test_real_fashion_mnist():
    # CI installs Debian's dataset-fashion-mnist, so there its absence is a failure, not a skip.
    if not FASHION_DIR.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{FASHION_DIR} is missing; CI must `apt-get install dataset-fashion-mnist`")
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    data = load_data("fashion-mnist")
    assert data.n_classes == 10 and data.input_shape == (1, 28, 28)
    assert (len(data.train), len(data.val), len(data.test)) == (54000, 6000, 10000)
    assert data.train.x.dtype == torch.float32 and data.train.y.dtype == torch.int64
    assert float(data.train.x.min()) == 0.0 and float(data.train.x.max()) == 1.0
    # Fashion-MNIST is balanced: 6000 per class in train, 1000 in test; the holdout keeps that.
    assert data.val.y.bincount().tolist() == [600] * 10
    assert data.test.y.bincount().tolist() == [1000] * 10
    assert data.meta["class_names"][9] == "Ankle boot" and "dataset-fashion-mnist" in data.source
