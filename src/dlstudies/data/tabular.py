"""A user's own tabular data: CSV or NPZ files, label in the last column unless configured.

`--data FILE` splits one file stratified into train/val/test; `--data DIR` reads `train.*`,
`test.*` and an optional `val.*` from the folder. Every malformed input is a UsageError naming
the file and the problem.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from dlstudies.data.base import Dataset, Split, as_split, stratified_splits
from dlstudies.errors import UsageError

SUFFIXES = (".csv", ".npz")
FLOAT32_MAX = float(np.finfo(np.float32).max)
# A classifier gets one output per class up to the largest label, so a label of 10^9 would ask
# for a 10^9-wide layer; labels are class indices, and this bounds them.
MAX_CLASSES = 100_000


def load_tabular(path: Path, label_column: int = -1) -> Dataset:
    if path.is_dir():
        return _load_folder(path, label_column)
    if not path.exists():
        raise UsageError(f"data file '{path}' does not exist")
    x, y = read_table(path, label_column)
    _check_classes(path, y)
    try:
        train, val, test = stratified_splits(x, y)
    except ValueError as err:  # scikit-learn: a class too small to appear in every split
        raise UsageError(f"data file '{path}' is too small to split stratified into train/val/test ({err})") from None
    return _dataset(path, train, val, test)


def _load_folder(folder: Path, label_column: int) -> Dataset:
    found = {name: _find(folder, name) for name in ("train", "val", "test")}
    missing = [n for n in ("train", "test") if found[n] is None]
    if missing:
        raise UsageError(f"data folder '{folder}' has no {' or '.join(missing)} file; expected train.csv|npz and test.csv|npz")
    tables = {n: read_table(p, label_column) for n, p in found.items() if p is not None}
    _check_classes(found["train"], tables["train"][1])  # a test split may hold one class; train may not
    _check_compatible(tables, folder)
    splits = {n: as_split(*t) for n, t in tables.items()}
    return _dataset(folder, splits["train"], splits.get("val"), splits["test"])


def _find(folder: Path, name: str) -> Path | None:
    return next((folder / f"{name}{s}" for s in SUFFIXES if (folder / f"{name}{s}").is_file()), None)


def _check_compatible(tables: dict, folder: Path) -> None:
    widths = {n: t[0].shape[1] for n, t in tables.items()}
    if len(set(widths.values())) > 1:
        raise UsageError(f"data folder '{folder}': feature counts differ between splits: {widths}")
    train_classes = set(np.unique(tables["train"][1]).tolist())
    for n, (_, y) in tables.items():
        extra = set(np.unique(y).tolist()) - train_classes
        if extra:
            raise UsageError(f"data folder '{folder}': {n} has labels {sorted(extra)} that train does not have")


def _dataset(path: Path, train: Split, val: Split | None, test: Split) -> Dataset:
    n_classes = int(max(int(s.y.max()) for s in (train, val, test) if s is not None)) + 1
    return Dataset(path.stem, train, val, test, n_classes, f"user data from {path}")


def read_table(path: Path, label_column: int = -1) -> tuple[np.ndarray, np.ndarray]:
    readers = {".csv": _read_csv, ".npz": _read_npz}
    if path.suffix.lower() not in readers:
        raise UsageError(f"data file '{path}' has an unsupported type; valid: {', '.join(SUFFIXES)}")
    if not path.is_file():
        raise UsageError(f"data file '{path}' does not exist")
    x, y = readers[path.suffix.lower()](path, label_column)
    return _validated(path, x, y)


def _read_csv(path: Path, label_column: int) -> tuple[np.ndarray, np.ndarray]:
    lines = [(n, line.strip()) for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1) if line.strip()]
    if not lines:
        raise UsageError(f"data file '{path}' is empty")
    if _is_header(lines[0][1]):
        lines = lines[1:]
    if not lines:
        raise UsageError(f"data file '{path}' has a header but no rows")
    table = [_parse_row(path, n, line) for n, line in lines]
    widths = {len(r) for r in table}
    if len(widths) > 1:
        raise UsageError(f"data file '{path}' has ragged rows: {sorted(widths)} columns")
    return _split_label(path, np.asarray(table, dtype=np.float64), label_column)


def _is_header(line: str) -> bool:
    # Only a line with no number at all is a header: "1,abc,0" is a first row with a bad value.
    return not any(_is_number(v) for v in line.split(","))


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _parse_row(path: Path, number: int, line: str) -> list[float]:
    try:
        return [float(v) for v in line.split(",")]
    except ValueError:
        raise UsageError(f"data file '{path}' line {number} has a non-numeric value: '{line[:60]}'") from None


# What np.load and zipfile raise on a damaged archive: bad zip directory, truncated member, a
# member that is not .npy, pickled objects (refused), encrypted or unsupported compression.
NPZ_ERRORS = (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, RuntimeError, NotImplementedError)


def _read_npz(path: Path, label_column: int) -> tuple[np.ndarray, np.ndarray]:
    arrays = _npz_arrays(path)
    if {"x", "y"} <= set(arrays):
        return _features(path, arrays["x"]), _labels(path, arrays["y"], len(arrays["x"]))
    if len(arrays) == 1:
        return _split_label(path, _numeric(path, next(iter(arrays.values()))), label_column)
    raise UsageError(f"data file '{path}' must hold arrays 'x' and 'y' or a single table; found {sorted(arrays)}")


def _npz_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded as archive:
                return {k: archive[k] for k in archive.files}
    except NPZ_ERRORS as err:
        raise UsageError(f"data file '{path}' is not a readable NPZ archive ({type(err).__name__})") from None
    # np.load also reads a plain .npy array (np.save's format)
    raise UsageError(f"data file '{path}' is a single .npy array, not an NPZ archive; save it with np.savez")


def _features(path: Path, x: np.ndarray) -> np.ndarray:
    x = _numeric(path, x)
    if x.ndim < 2 or x.shape[0] == 0 or x[0].size == 0:
        raise UsageError(f"data file '{path}': 'x' must be (rows, features...) with at least one row and feature; got shape {x.shape}")
    return x.reshape(len(x), -1)


def _labels(path: Path, y: np.ndarray, rows: int) -> np.ndarray:
    if y.ndim != 1 or len(y) != rows:
        raise UsageError(f"data file '{path}': 'y' must hold one class label per row of 'x' ({rows}); got shape {y.shape}")
    return _numeric(path, y)


def _numeric(path: Path, a: np.ndarray) -> np.ndarray:
    # Booleans count as 0/1; complex numbers, strings and datetimes are not features or labels.
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating) or a.dtype == bool):
        raise UsageError(f"data file '{path}' holds non-numeric values (dtype {a.dtype})")
    return a.astype(np.float64)


def _split_label(path: Path, table: np.ndarray, label_column: int) -> tuple[np.ndarray, np.ndarray]:
    if table.ndim != 2 or table.shape[1] < 2:
        raise UsageError(f"data file '{path}' needs at least one feature column and a label column")
    if not -table.shape[1] <= label_column < table.shape[1]:
        raise UsageError(f"label column {label_column} is outside the {table.shape[1]} columns of '{path}'")
    return np.delete(table, label_column, axis=1), table[:, label_column]


def _validated(path: Path, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(x) == 0:
        raise UsageError(f"data file '{path}' has no rows")
    if not np.isfinite(x).all():
        raise UsageError(f"data file '{path}' has NaN or infinite feature values")
    if (np.abs(x) > FLOAT32_MAX).any():  # training is float32: these would become infinite
        raise UsageError(f"data file '{path}' has feature values beyond ±{FLOAT32_MAX:.3g} (the float32 range)")
    if not np.isfinite(y).all():
        raise UsageError(f"data file '{path}' has labels that are NaN or infinite")
    if (y != np.round(y)).any() or (y < 0).any() or (y >= MAX_CLASSES).any():
        raise UsageError(f"data file '{path}' has labels that are not class indices 0..{MAX_CLASSES - 1}")
    return x, y.astype(np.int64)


def _check_classes(path: Path, y: np.ndarray) -> None:
    if len(np.unique(y)) < 2:
        raise UsageError(f"data file '{path}' has a single class; a classifier needs at least 2")
