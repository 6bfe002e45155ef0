"""IDX files (the MNIST format) and the datasets stored in them: fashion-mnist and mnist.

An IDX file is a 4-byte magic number (two zero bytes, a data-type code, the number of
dimensions), one big-endian uint32 per dimension, then the values in C order, big-endian.
`read_idx` reads one, gzipped or plain, and checks every part of that layout, so a truncated
download fails here with the file's name instead of as a shape error deep in training.

A folder of the four classic files (train/t10k × images/labels) becomes a Dataset: images
float32 (N, 1, H, W) in [0, 1], labels int64. mnist's folder defaults to the one
`dlstudies data fetch mnist` fills (data/fetch.py). Validation: a fixed, stratified 10% of the train
files (seed SPLIT_SEED), so studies that stop or select on validation never touch the test
files; train keeps the other 90% in file order. Test is exactly the t10k files, so test
accuracy is comparable with published numbers.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import zlib
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from dlstudies.data.base import DATASETS, SPLIT_SEED, Dataset, as_split
from dlstudies.errors import UsageError

# Data-type codes of the IDX format; values are stored big-endian.
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
GZIP_MAGIC = b"\x1f\x8b"
VAL_FRACTION = 0.1

# role -> (file stem, IDX kind) of the classic MNIST layout
IDX_FILES = {
    "train_images": ("train-images", "idx3"),
    "train_labels": ("train-labels", "idx1"),
    "test_images": ("t10k-images", "idx3"),
    "test_labels": ("t10k-labels", "idx1"),
}
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def read_idx(path: str | Path) -> np.ndarray:
    """The array in an IDX file (gzipped or plain), writable and in native byte order."""
    path = Path(path)
    raw = _read_bytes(path)
    dtype, shape, offset = _parse_header(path, raw)
    count = math.prod(shape)
    if len(raw) - offset != count * dtype.itemsize:
        raise UsageError(
            f"IDX file '{path}' is corrupt: its header promises shape {shape} ({count * dtype.itemsize} bytes) "
            f"but {len(raw) - offset} bytes follow; download or install it again"
        )
    values = np.frombuffer(raw, dtype, count=count, offset=offset).reshape(shape)
    # astype copies: the result is writable (torch warns on read-only arrays) and native-endian.
    return values.astype(dtype.newbyteorder("="))


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise UsageError(f"IDX file '{path}' does not exist")
    raw = path.read_bytes()
    if not raw.startswith(GZIP_MAGIC):  # sniffed, not taken from the suffix: IDX starts with 0x0000
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise UsageError(f"IDX file '{path}' is a truncated or corrupt gzip file ({err}); download or install it again") from None


def _parse_header(path: Path, raw: bytes) -> tuple[np.dtype, tuple[int, ...], int]:
    if len(raw) < 4 or raw[:2] != b"\x00\x00":
        raise UsageError(f"'{path}' is not an IDX file: bad magic number {raw[:4].hex() or '(empty file)'}")
    code, ndim = raw[2], raw[3]
    if code not in IDX_TYPES:
        valid = ", ".join(f"0x{c:02x}" for c in IDX_TYPES)
        raise UsageError(f"IDX file '{path}' has unknown data-type code 0x{code:02x}; valid: {valid}")
    offset = 4 + 4 * ndim
    if ndim == 0 or len(raw) < offset:
        raise UsageError(f"IDX file '{path}' has a truncated or empty dimension list ({ndim} dimensions)")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    return np.dtype(IDX_TYPES[code]), shape, offset


def load_idx_folder(folder: str | Path, name: str, how_to_get: str = "") -> Dataset:
    """The four classic IDX files of `folder` as a Dataset (layout in the module docstring).

    `how_to_get` ends the message when files are missing: each dataset knows its own remedy.
    """
    folder = Path(folder)
    paths = _locate(folder, name, how_to_get)
    arrays = {role: read_idx(p) for role, p in paths.items()}
    train_x, train_y = _checked_pair(arrays, "train", paths)
    test_x, test_y = _checked_pair(arrays, "test", paths)
    n_classes = _checked_classes(train_x, train_y, test_x, test_y, folder)
    keep, held = holdout_indices(train_y, VAL_FRACTION, f"IDX folder '{folder}'")
    train = as_split(_as_images(train_x[keep]), train_y[keep])
    val = as_split(_as_images(train_x[held]), train_y[held])
    test = as_split(_as_images(test_x), test_y)
    meta = {"files": {role: str(p) for role, p in paths.items()}, "val_fraction": VAL_FRACTION}
    return Dataset(name, train, val, test, n_classes, f"{name} IDX files from {folder}", meta)


def _candidates(stem: str, kind: str) -> list[str]:
    # Canonical names use '-' before idxN; some mirrors use '.'. Either may be gzipped (Debian's are).
    return [f"{stem}{sep}{kind}-ubyte{gz}" for sep in "-." for gz in ("", ".gz")]


def _locate(folder: Path, name: str, how_to_get: str) -> dict[str, Path]:
    found = {role: _find(folder, *spec) for role, spec in IDX_FILES.items()}
    missing = [f"{IDX_FILES[role][0]}-{IDX_FILES[role][1]}-ubyte[.gz]" for role, p in found.items() if p is None]
    if missing:
        remedy = how_to_get or "pass --data-dir DIR holding the four IDX files"
        raise UsageError(f"{name}: '{folder}' lacks the IDX file(s) {', '.join(missing)}; {remedy}")
    return found


def _find(folder: Path, stem: str, kind: str) -> Path | None:
    return next((folder / c for c in _candidates(stem, kind) if (folder / c).is_file()), None)


def _checked_pair(arrays: dict, part: str, paths: dict) -> tuple[np.ndarray, np.ndarray]:
    images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
    where = f"IDX files '{paths[f'{part}_images']}' and '{paths[f'{part}_labels']}'"
    if images.ndim != 3 or images.dtype != np.uint8 or len(images) == 0:
        raise UsageError(f"{where}: images must be a non-empty (N, rows, cols) array of bytes; got {images.dtype} {images.shape}")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or len(labels) != len(images):
        raise UsageError(f"{where}: labels must be {len(images)} integers, one per image; got {labels.dtype} {labels.shape}")
    return images, labels.astype(np.int64)


def _checked_classes(train_x, train_y, test_x, test_y, folder: Path) -> int:
    if train_x.shape[1:] != test_x.shape[1:]:
        raise UsageError(f"IDX folder '{folder}': train images are {train_x.shape[1:]} but test images {test_x.shape[1:]}")
    n_classes = int(train_y.max()) + 1
    if train_y.min() < 0 or test_y.min() < 0 or test_y.max() >= n_classes:
        raise UsageError(f"IDX folder '{folder}': labels must lie in 0..{n_classes - 1} (the train labels' range)")
    return n_classes


def _as_images(pixels: np.ndarray) -> np.ndarray:
    # (N, H, W) bytes -> (N, 1, H, W) float32 in [0, 1]: the channel axis the conv layers expect.
    # One pass with a float32 result: astype-then-divide costs two passes over 200 MB for fashion-mnist.
    return np.divide(pixels[:, None], np.float32(255), dtype=np.float32)


def holdout_indices(y: np.ndarray, fraction: float, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out) of a fixed stratified holdout; both sorted, so file order survives."""
    try:
        kept, held = train_test_split(np.arange(len(y)), test_size=fraction, stratify=y, random_state=SPLIT_SEED)
    except ValueError as err:  # too few examples per class to stratify
        raise UsageError(f"{what}: too few training examples for a stratified {fraction:.0%} validation split ({err})") from None
    return np.sort(kept), np.sort(held)


@DATASETS.register("fashion-mnist")
def fashion_mnist(data_dir: str | None = None) -> Dataset:
    folder = Path(data_dir) if data_dir else FASHION_DIR
    hint = "install them with `apt-get install dataset-fashion-mnist`, or pass --data-dir DIR holding the four IDX files"
    data = load_idx_folder(folder, "fashion-mnist", hint)
    source = data.source + (" (Debian package dataset-fashion-mnist)" if folder == FASHION_DIR else "")
    return dataclasses.replace(data, source=source, meta={**data.meta, "class_names": list(FASHION_CLASSES)})


@DATASETS.register("mnist")
def mnist(data_dir: str | None = None) -> Dataset:
    # Nothing is downloaded at run time: the files are where `dlstudies data fetch mnist` put them,
    # or in the folder the user points to.
    from dlstudies.data.fetch import default_folder

    folder = Path(data_dir) if data_dir else default_folder("mnist")
    hint = f"run `dlstudies data fetch mnist` (into {default_folder('mnist')}), or pass --data-dir DIR holding MNIST's four IDX files"
    if not data_dir and not folder.is_dir():
        raise UsageError(f"mnist needs its IDX files: {hint}")
    return load_idx_folder(folder, "mnist", hint)
