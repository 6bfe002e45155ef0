"""The normalization study: config errors, the BatchNorm batch-of-one guard, thresholds read off one
fit (held to a fit stopped by the rule), and a tiny end-to-end run through the runner and report."""

import json

import numpy as np
import pytest
import torch

from dlstudies.config import Runtime, apply_overrides
from dlstudies.engine import ENGINES, StopRule, TrainSpec
from dlstudies.errors import UsageError
from dlstudies.models.builders import NORMS, build_members, mlp
from dlstudies.optim import OptSpec
from dlstudies.report import render_report
from dlstudies.studies import normalization as study
from dlstudies.studies.base import Unit

TINY = ["max_epochs=12", "n_train=60", "budgets=5", "hidden=8,6", "batch_size=16", "lr=0.01"]


def _cfg(*pairs):
    return apply_overrides(study.PRESETS["smoke"], [*TINY, *pairs])


def test_batch_of_one_with_batchnorm_is_a_usage_error():
    with pytest.raises(UsageError, match="batchnorm needs batches of at least 2"):
        _cfg("batch_size=1")
    assert _cfg("batch_size=1", "norms=none,layernorm").batch_size == 1


def test_a_last_batch_of_one_sample_is_dropped_for_every_condition():
    data = study.training_data(_cfg("n_train=33", "batch_size=32"), None)
    assert len(data.train) == 32
    assert len(study.training_data(_cfg("n_train=33", "batch_size=32", "norms=none,layernorm"), None).train) == 33
    unit = Unit("normalization", _cfg("n_train=33", "batch_size=32", "max_epochs=2"), (0,), Runtime(),
                (("norm", "batchnorm"),))
    assert len(study.run_unit(unit)["runs"]) == 2  # trains without a batch of one


def test_condition_names_carry_the_threshold_only_when_several_run():
    assert study.condition(_cfg(), "batchnorm", 1e-5) == "batchnorm@1e-5"
    assert study.condition(_cfg("thresholds=1e-5"), "batchnorm", 1e-5) == "batchnorm"


@pytest.mark.parametrize("norm", ["none", "batchnorm", "layernorm"])
def test_thresholds_read_off_one_fit_equal_a_fit_stopped_by_the_rule(norm):
    cfg = _cfg("thresholds=0.02,0.005", "max_epochs=25")
    # float64: once a member stops, the others' optimizer step takes a masked path whose rounding differs
    unit = Unit("normalization", cfg, (0, 1, 2), Runtime(dtype="float64"), (("norm", norm),))
    runs = study.run_unit(unit)["runs"]
    data = study.training_data(cfg, None)
    for t in cfg.thresholds:
        mine = [r for r in runs if r["condition"] == study.condition(cfg, norm, t)]
        stopped = _fit_with_rule(cfg, unit, data, t)
        assert [r["metrics"]["epochs"] for r in mine] == stopped.epochs.tolist()
        assert [r["converged"] for r in mine] == stopped.converged.tolist()
        np.testing.assert_allclose([r["metrics"]["final_loss"] for r in mine], stopped.final("loss"), rtol=1e-10)
        np.testing.assert_allclose([r["metrics"]["test_acc"] for r in mine], stopped.final("test_acc"))
    assert any(r["converged"] for r in runs), "the test needs thresholds that fire"


def _fit_with_rule(cfg, unit, data, tolerance):
    sizes = [data.input_shape[0], *cfg.hidden, data.n_classes]
    members = build_members(lambda: mlp(sizes, norm=NORMS.get(unit.param("norm"))), list(unit.seeds), torch.float64)
    spec = TrainSpec(StopRule(cfg.max_epochs, tolerance), cfg.batch_size, probes=(study.split_probe(data),))
    return ENGINES.get("batched")(members, [OptSpec(cfg.optimizer, cfg.lr)] * len(members),
                                  data.train.x, data.train.y, spec, list(unit.seeds))


def test_reference_engine_gives_the_same_runs():
    # The reference engine fits members one by one; their per-epoch confusion histories are concatenated.
    unit = lambda engine: Unit("normalization", _cfg("max_epochs=6"), (0, 1), Runtime(engine=engine, dtype="float64"),  # noqa: E731
                               (("norm", "batchnorm"),))
    a, b = (study.run_unit(unit(e)) for e in ("batched", "reference"))
    for ra, rb in zip(a["runs"], b["runs"]):
        assert (ra["condition"], ra["seed"], ra["confusion"]) == (rb["condition"], rb["seed"], rb["confusion"])
        for k, v in ra["metrics"].items():
            np.testing.assert_allclose(v, rb["metrics"][k], rtol=1e-9, err_msg=k)
    np.testing.assert_allclose(a["budget_runs"][0]["curves"]["test_acc"], b["budget_runs"][0]["curves"]["test_acc"], rtol=1e-9)


def test_end_to_end_through_runner_and_report(tmp_path, run_smoke):
    # Two normalizations keep it fast (the figures dominate); layernorm runs in the threshold test above.
    results, _ = run_smoke("normalization", [*TINY, "norms=none,batchnorm"], tmp_path)
    assert set(results["conditions"]) == {f"{n}@{t}" for n in ("none", "batchnorm") for t in ("1e-5", "1e-6")}
    for key in ("answer", "checks", "comparisons", "tables", "conditions", "budgets"):
        assert results[key], key
    run = results["conditions"]["batchnorm@1e-5"]["runs"][0]
    assert set(run["metrics"]) == {"epochs", "final_loss", "train_acc", "val_acc", "test_acc", "gap"}
    assert np.asarray(run["confusion"]["test"]).sum() == 181  # digits36's test split
    assert results["budgets"]["epochs"] == [5, 12]
    assert any(c["source"] == "Ioffe & Szegedy 2015" for c in results["checks"])
    saved = json.loads((tmp_path / "normalization" / "results.json").read_text())
    assert saved["answer"] == results["answer"]
    assert all((tmp_path / "normalization" / f).is_file() for f in results["figures"])
    html = render_report(tmp_path).read_text()
    assert "overfitting.png" in html and "equal_epochs.png" in html and "Does normalization over-fit?" in html
