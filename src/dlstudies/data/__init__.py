"""Datasets: a registry of built-in ones, and a user's own files by path."""

from __future__ import annotations

import functools
import importlib
import pkgutil
from pathlib import Path

from dlstudies.data.base import DATASETS, Dataset, Split
from dlstudies.data.tabular import load_tabular
from dlstudies.errors import UsageError
from dlstudies.registry import did_you_mean

__all__ = ["DATASETS", "Dataset", "Split", "load_data", "dataset_names", "describe_datasets"]


def _import_all() -> None:
    # Each module registers its datasets on import; new modules need no edit here.
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


def dataset_names() -> list[str]:
    _import_all()
    return DATASETS.names()


@functools.lru_cache(maxsize=8)
def load_data(spec: str, data_dir: str | None = None, label_column: int = -1) -> Dataset:
    """A registered dataset by name, or a user's CSV/NPZ file or folder by path.

    `data_dir` is handed to registered loaders that read files (IDX folders); others ignore it.
    """
    _import_all()
    if spec in DATASETS:
        return DATASETS.get(spec)(data_dir=data_dir)
    path = Path(spec)
    if path.suffix or path.exists() or "/" in spec:
        return load_tabular(path, label_column)
    raise UsageError(f"unknown dataset '{spec}'{did_you_mean(spec, DATASETS.names())}; valid: {', '.join(DATASETS.names())}, or a path to a .csv/.npz file or folder")


def describe_datasets() -> list[str]:
    """One line per registered dataset; one that cannot load here says why instead of failing."""
    lines = []
    for name in dataset_names():
        try:
            data = load_data(name)
            alias = f"{name} (= {data.name})" if data.name != name else name  # e.g. functions = f1
            lines.append(alias + data.describe()[len(data.name):])
        except UsageError as err:
            lines.append(f"{name}: not available here: {err}")
    return lines
