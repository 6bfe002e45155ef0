"""grad-norm end to end at a tiny scale: per-iteration traces, checks, figures, determinism."""

import json

import numpy as np
import pytest

from dlstudies.config import Runtime
from dlstudies.errors import UsageError
from dlstudies.studies import STUDIES, Unit, load_studies
from dlstudies.studies.grad_norm import Config

TINY = ["epochs=2", "n_train=64", "batch_size=16"]  # 4 iterations per epoch


@pytest.fixture(scope="module")
def results(tmp_path_factory, run_smoke):
    return run_smoke("grad-norm", TINY, tmp_path_factory.mktemp("gn"))


def test_records_loss_and_grad_norm_every_iteration(results):
    res, _ = results
    runs = res["conditions"]["adam"]["runs"]
    assert [r["seed"] for r in runs] == [0, 1]
    for run in runs:
        loss, norm = np.array(run["curves"]["loss"]), np.array(run["curves"]["grad_norm"])
        assert loss.shape == norm.shape == (2 * 4,)
        assert np.all(np.isfinite(loss)) and np.all(norm > 0)
        # The epoch means the metrics use are the means of that epoch's iterations.
        assert run["metrics"]["gn_first_epoch"] == pytest.approx(norm[:4].mean())
        assert run["metrics"]["final_loss"] == pytest.approx(loss[4:].mean())
    assert res["steps_per_epoch"] == 4


def test_results_have_the_shared_parts_and_figures(results):
    res, folder = results
    assert set(res) >= {"conditions", "comparisons", "checks", "answer", "tables"}
    assert res["conditions"]["adam"]["summary"]["gn_peak"]["n"] == 2
    assert all(isinstance(c["passed"], bool) and c["source"] for c in res["checks"])
    assert "gradient norm" in res["answer"]
    assert json.loads((folder / "results.json").read_text())["study"] == "grad-norm"
    for name in res["figures"]:
        assert (folder / name).stat().st_size > 1000


def test_two_runs_of_a_unit_are_identical():
    load_studies()
    study = STUDIES.get("grad-norm")
    cfg = Config(epochs=2, n_train=48, batch_size=16)
    unit = Unit("grad-norm", cfg, (3,), Runtime())
    assert study.run_unit(unit) == study.run_unit(unit)


def test_config_is_validated():
    with pytest.raises(UsageError):
        Config(epochs=1)
    with pytest.raises(UsageError):
        Config(optimizer="nope")
