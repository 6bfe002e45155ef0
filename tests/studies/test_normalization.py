"""The normalization study: config errors, the BatchNorm batch-of-one guard, thresholds read off one
fit (held to a fit stopped by the rule), run records read off the curves they carry, and a tiny
end-to-end run through the runner."""

import json

import numpy as np
import pytest
import torch

from dlstudies.config import Runtime, apply_overrides
from dlstudies.engine import ENGINES, StopRule, TrainSpec
from dlstudies.errors import UsageError
from dlstudies.models.builders import NORMS, build_members, mlp
from dlstudies.optim import OptSpec
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
    out = study.run_unit(unit)  # trains without a batch of one
    assert len(out["runs"]) == 1 and len(out["stop_runs"]) == 2


def test_stop_rule_names_carry_the_threshold_only_when_several_run():
    assert study.stop_condition(_cfg(), "batchnorm", 1e-5) == "batchnorm@1e-5"
    assert study.stop_condition(_cfg("thresholds=1e-5"), "batchnorm", 1e-5) == "batchnorm"


def test_new_settings_are_bounded():
    for bad in ("target_acc=1.5", "target_loss=0", "gap_margin=0", "max_epochs=1"):
        with pytest.raises(UsageError):
            _cfg(bad)


@pytest.mark.parametrize("norm", ["none", "batchnorm", "layernorm"])
def test_thresholds_read_off_one_fit_equal_a_fit_stopped_by_the_rule(norm):
    cfg = _cfg("thresholds=0.02,0.005", "max_epochs=25")
    # float64: once a member stops, the others' optimizer step takes a masked path whose rounding differs
    unit = Unit("normalization", cfg, (0, 1, 2), Runtime(dtype="float64"), (("norm", norm),))
    runs = study.run_unit(unit)["stop_runs"]
    data = study.training_data(cfg, None)
    for t in cfg.thresholds:
        mine = [r for r in runs if r["condition"] == study.stop_condition(cfg, norm, t)]
        stopped = _fit_with_rule(cfg, unit, data, t)
        assert [r["metrics"]["stop_rule_epochs"] for r in mine] == stopped.epochs.tolist()
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
    for ra, rb in zip(a["runs"] + a["stop_runs"], b["runs"] + b["stop_runs"]):
        assert (ra["condition"], ra["seed"], ra.get("confusion")) == (rb["condition"], rb["seed"], rb.get("confusion"))
        for k, v in ra["metrics"].items():
            np.testing.assert_allclose(np.asarray(v, dtype=float), np.asarray(rb["metrics"][k], dtype=float), rtol=1e-9, err_msg=k)
    np.testing.assert_allclose(a["runs"][0]["curves"]["test_acc"], b["runs"][0]["curves"]["test_acc"], rtol=1e-9)


def test_a_run_reads_its_targets_and_budgets_off_its_own_curves():
    cfg = _cfg("data=digits36", "max_epochs=15", "budgets=4,9", "target_loss=1.2", "target_acc=0.5")  # reached quickly
    runs = study.run_unit(Unit("normalization", cfg, (0, 1), Runtime(), (("norm", "layernorm"),)))["runs"]
    for r in runs:
        loss, train, test = (np.array(r["curves"][k]) for k in ("loss", "train_acc", "test_acc"))
        assert len(loss) == cfg.max_epochs and r["metrics"]["loss_auc"] == pytest.approx(loss.mean())
        hit = np.flatnonzero(loss <= cfg.target_loss)
        assert r["metrics"]["target_loss_epochs"] == (hit[0] + 1 if len(hit) else None)
        hit = np.flatnonzero(train >= cfg.target_acc)
        assert r["metrics"]["target_acc_epochs"] == (hit[0] + 1 if len(hit) else None)
        for b in (4, 9, 15):
            assert r["at_budget"][str(b)]["gap"] == pytest.approx(train[b - 1] - test[b - 1])
        assert r["metrics"]["gap"] == pytest.approx(train[-1] - test[-1])
    assert any(r["metrics"]["target_loss_epochs"] for r in runs), "the test needs a target that is reached"


def test_conditions_of_a_seed_start_from_the_same_linear_weights():
    # The pairing the claims rest on: normalization layers draw no random numbers at construction.
    sizes = [36, 8, 6, 5]
    nets = {n: build_members(lambda: mlp(sizes, norm=NORMS.get(n)), [4])[0] for n in ("none", "batchnorm", "layernorm")}
    weights = {n: [m.weight for m in net if isinstance(m, torch.nn.Linear)] for n, net in nets.items()}
    for n in ("batchnorm", "layernorm"):
        assert all(torch.equal(a, b) for a, b in zip(weights[n], weights["none"]))


def test_end_to_end_through_runner_and_report(tmp_path, run_smoke):
    # Two normalizations keep it fast (the figures dominate); layernorm runs in the threshold test above.
    results, _ = run_smoke("normalization", [*TINY, "norms=none,batchnorm"], tmp_path)
    assert set(results["conditions"]) == {"none", "batchnorm"}
    assert set(results["stop_rule"]) == {f"{n}@{t}" for n in ("none", "batchnorm") for t in ("1e-5", "1e-6")}
    for key in ("answer", "checks", "tables", "table", "setup", "sanity", "convergence"):
        assert results[key], key
    run = results["conditions"]["batchnorm"]["runs"][0]
    assert set(run["metrics"]) == set(study.METRICS) and isinstance(run["still_improving"], bool)
    assert np.asarray(run["confusion"]["test"]).sum() == len(study.training_data(study.PRESETS["smoke"], None).test)
    assert results["budgets"]["epochs"] == [5, 12]
    assert {c["verdict"] for c in results["checks"]} == {"inconclusive"}  # 2 seeds decide nothing
    assert any(c["source"] == "Ioffe & Szegedy 2015" for c in results["checks"])
    assert results["answer"].startswith("Inconclusive —") and "Over-fitting:" in results["answer"]
    saved = json.loads((tmp_path / "normalization" / "results.json").read_text())
    assert saved["answer"] == results["answer"]
    assert {"overfitting.png", "equal_epochs.png", "all_conditions.png", "loss_curves.png"} <= set(results["figures"])
    assert all((tmp_path / "normalization" / f).is_file() for f in results["figures"])
