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


def load_tabular(path: Path, label_column: int = -1) -> Dataset:
    if path.is_dir():
        return _load_folder(path, label_column)
    if not path.exists():
        raise UsageError(f"data file '{path}' does not exist")
    x, y = read_table(path, label_column)
    train, val, test = stratified_splits(x, y)
    return _dataset(path, train, val, test)


def _load_folder(folder: Path, label_column: int) -> Dataset:
    found = {name: _find(folder, name) for name in ("train", "val", "test")}
    missing = [n for n in ("train", "test") if found[n] is None]
    if missing:
        raise UsageError(f"data folder '{folder}' has no {' or '.join(missing)} file; expected train.csv|npz and test.csv|npz")
    tables = {n: read_table(p, label_column) for n, p in found.items() if p is not None}
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
    rows = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    if not rows:
        raise UsageError(f"data file '{path}' is empty")
    if not _is_numeric_row(rows[0]):
        rows = rows[1:]  # a header line
    if not rows:
        raise UsageError(f"data file '{path}' has a header but no rows")
    table = [_parse_row(path, i, r) for i, r in enumerate(rows, start=1)]
    widths = {len(r) for r in table}
    if len(widths) > 1:
        raise UsageError(f"data file '{path}' has ragged rows: {sorted(widths)} columns")
    return _split_label(path, np.asarray(table, dtype=np.float64), label_column)


def _is_numeric_row(row: str) -> bool:
    try:
        [float(v) for v in row.split(",")]
        return True
    except ValueError:
        return False


def _parse_row(path: Path, number: int, row: str) -> list[float]:
    try:
        return [float(v) for v in row.split(",")]
    except ValueError:
        raise UsageError(f"data file '{path}' row {number} has a non-numeric value: '{row[:60]}'") from None


def _read_npz(path: Path, label_column: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise UsageError(f"data file '{path}' is not a readable NPZ archive ({type(err).__name__})") from None
    if {"x", "y"} <= set(arrays):
        return _numeric(path, arrays["x"]).reshape(len(arrays["x"]), -1), arrays["y"]
    if len(arrays) == 1:
        return _split_label(path, _numeric(path, next(iter(arrays.values()))), label_column)
    raise UsageError(f"data file '{path}' must hold arrays 'x' and 'y' or a single table; found {sorted(arrays)}")


def _numeric(path: Path, a: np.ndarray) -> np.ndarray:
    if not np.issubdtype(a.dtype, np.number):
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
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.number) or not np.isfinite(y.astype(np.float64)).all():
        raise UsageError(f"data file '{path}' has labels that are not finite numbers")
    if (y != np.round(y)).any() or (y < 0).any():
        raise UsageError(f"data file '{path}' has labels that are not non-negative integers")
    if len(np.unique(y)) < 2:
        raise UsageError(f"data file '{path}' has a single class; a classifier needs at least 2")
    return x, y.astype(np.int64)
