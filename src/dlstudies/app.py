"""What `dlstudies run` does, apart from parsing: validate the request, run each study, render."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from dlstudies.config import Runtime
from dlstudies.errors import UsageError
from dlstudies.runner import run_study
from dlstudies.studies import STUDIES, load_studies, ordered_studies


def resolve_studies(names: list[str]) -> list[str]:
    load_studies()
    if "all" in names:
        return [s.name for s in ordered_studies()]
    for n in names:
        STUDIES.get(n)
    return list(dict.fromkeys(names))


def check_runtime(runtime: Runtime, seeds: int, out: Path) -> None:
    if runtime.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available to PyTorch; valid here: cpu")
    if seeds < 1:
        raise UsageError(f"--seeds must be >= 1, got {seeds}")
    _check_writable(out)


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create output folder '{out}': {err.strerror}") from None
    if not os.access(out, os.W_OK):
        raise UsageError(f"output folder '{out}' is not writable")


def with_data(names: list[str], data: str | None, overrides: list[str]) -> dict[str, list[str]]:
    """Per study overrides; `--data` becomes `data=...` for the studies whose config has a data field."""
    per_study = {}
    for n in names:
        fields = {f.name for f in dataclasses.fields(STUDIES.get(n).presets["default"])}
        extra = [f"data={data}"] if data is not None and "data" in fields else []
        per_study[n] = extra + list(overrides)
    return per_study


def run_many(names, scale, seeds, data, overrides, runtime: Runtime, out: Path, backend, workers, command, **opts):
    names = resolve_studies(names)
    check_runtime(runtime, seeds, out)
    if data is not None:
        from dlstudies.data import load_data
        load_data(data, runtime.data_dir)  # a bad --data fails before any training
    for name, study_overrides in with_data(names, data, overrides).items():
        run_study(name, scale, seeds, study_overrides, runtime, out, backend, workers, command, **opts)
    from dlstudies.report import render_report
    print(render_report(out))
