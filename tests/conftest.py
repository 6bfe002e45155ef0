"""Shared test settings, and the tiny end-to-end runs the study tests are built on."""

import pytest
import torch

from dlstudies.config import Runtime, as_dict
from dlstudies.runner import run_study
from dlstudies.studies import STUDIES, load_studies
from dlstudies.studies.base import finite
from dlstudies.studies.results import summarize_study


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """One intra-op thread, as every work unit runs: tiny models only pay synchronisation for a
    second thread, and the numbers then match what the executors compute."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _run_tiny(name: str, cfg, seeds, folder=None, runtime: Runtime | None = None):
    """A study run in-process, without the runner's store: (unit results, summary, figure files).

    Unit results and summary are JSON-ready (`finite`), as the runner stores them; figures are drawn
    into `folder` (none when it is None) from the summary plus the config, as in results.json.
    """
    load_studies()
    study = STUDIES.get(name)
    results = [finite(study.run_unit(u)) for u in study.work_units(cfg, tuple(seeds), runtime or Runtime())]
    summary = finite(summarize_study(study, cfg, results))
    files = study.figures({**summary, "config": as_dict(cfg)}, folder) if folder is not None else []
    return results, summary, files


def _run_smoke(name: str, overrides, out, n_seeds: int = 2):
    """A study through the runner at smoke scale with `overrides`, into `out`: (results, its folder)."""
    return run_study(name, "smoke", n_seeds, list(overrides), Runtime(), out), out / name


@pytest.fixture(scope="session")
def run_tiny():
    """`run_tiny(name, cfg, seeds, folder=None, runtime=None)`: see `_run_tiny`."""
    return _run_tiny


@pytest.fixture(scope="session")
def run_smoke():
    """`run_smoke(name, overrides, out, n_seeds=2)`: see `_run_smoke`."""
    return _run_smoke
