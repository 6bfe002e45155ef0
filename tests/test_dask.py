"""The dask backend: a LocalCluster of --workers processes, or an existing cluster at --scheduler,
gives the local backend's results; each task runs torch single-threaded."""

import json
import os
from pathlib import Path

import matplotlib.figure
import pytest
import torch

from dlstudies.cli import main
from dlstudies.executors import EXECUTORS

distributed = pytest.importorskip("distributed")

# Two one-seed units, so two workers both get one.
ARGS = ["run", "optimizers", "--scale", "smoke", "--seeds", "2", "--set", "max_epochs=3", "--set", "n_train=60",
        "--set", "seed_chunk=1"]


@pytest.fixture
def no_drawing(monkeypatch):
    """Rendering PNG and SVG costs seconds a run; these tests compare numbers, not pictures."""
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda self, *a, **k: None)


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as c:
        yield c


def run(out: Path, *extra: str) -> dict:
    """results.json of a run, without wall-clock times and the command (it names --out and --backend)."""
    assert main([*ARGS, *extra, "--out", str(out)]) == 0
    results = json.loads((out / "optimizers" / "results.json").read_text())
    return {k: v for k, v in results.items() if k not in {"elapsed_s", "compute_s", "command"}}


@pytest.fixture(scope="module")
def local_results(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(matplotlib.figure.Figure, "savefig", lambda self, *a, **k: None)
        return run(tmp_path_factory.mktemp("local"), "--workers", "1")


def test_existing_cluster_via_scheduler_gives_the_local_results(tmp_path, capsys, no_drawing, cluster, local_results):
    assert run(tmp_path, "--backend", "dask", "--scheduler", cluster.scheduler_address) == local_results
    assert "4 to run" in capsys.readouterr().err  # two one-seed blocks, each a rules and a separation unit


def _threads(_item):
    return torch.get_num_threads()


def _process_and_threads(_item):
    return os.getpid(), torch.get_num_threads()


def _set_threads(n: int) -> int:
    torch.set_num_threads(n)
    return torch.get_num_threads()


def test_without_scheduler_a_local_cluster_of_n_processes_runs_the_units():
    with EXECUTORS.get("dask")(workers=2) as execute:
        seen = dict(execute(_process_and_threads, list(range(6))))
    processes = {pid for pid, _ in seen.values()}
    assert sorted(seen) == list(range(6)) and {t for _, t in seen.values()} == {1}
    assert len(processes) <= 2 and os.getpid() not in processes


def test_each_task_runs_torch_single_threaded(cluster):
    # Whatever a worker's torch was left at (here 3 threads, by an earlier task), a unit runs on 1.
    with distributed.Client(cluster.scheduler_address) as client:
        workers = list(client.scheduler_info()["workers"])
        assert client.gather([client.submit(_set_threads, 3, workers=[w], pure=False) for w in workers]) == [3, 3]
    with EXECUTORS.get("dask")(scheduler=cluster.scheduler_address) as execute:
        threads = dict(execute(_threads, [0, 1, 2, 3]))
    assert threads == {0: 1, 1: 1, 2: 1, 3: 1}
