"""sensitivity end to end at a tiny scale, its batch-size arms, and every claim on synthetic runs.

The analysis functions themselves are tested against oracles in tests/analysis/test_sensitivity.py
and tests/analysis/test_sharpness.py.
"""

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from dlstudies.analysis.claims import evaluate
from dlstudies.config import Runtime
from dlstudies.errors import UsageError
from dlstudies.studies import sensitivity as sv
from dlstudies.studies.results import summarize_study

TINY = replace(sv.PRESETS["smoke"], epochs=2, n_train=100, n_test=40)
SEEDS = (0, 1)
N = 100  # TINY's training samples


@pytest.fixture(scope="module")
def study(tmp_path_factory, run_tiny):
    return run_tiny("sensitivity", TINY, SEEDS, tmp_path_factory.mktemp("sensitivity"))[1:]


def test_every_arm_and_batch_size_is_a_condition_with_its_measures(study):
    summary, _ = study
    assert list(summary["conditions"]) == [f"batch-{b}/{arm}" for arm in TINY.arms for b in TINY.batch_sizes]
    for name, c in summary["conditions"].items():
        assert [r["seed"] for r in c["runs"]] == list(SEEDS)
        for r in c["runs"]:
            m = r["metrics"]
            assert m["sensitivity"] > 0 and m["jacobian_norm"] > 0 and m["sharpness"] >= 0
            assert m["batch_size"] == r["batch_size"] and name == f"batch-{r['batch_size']}/{r['arm']}"
            assert len(r["curves"]["loss"]) == m["epochs"] and m["train_steps"] == m["epochs"] * math.ceil(N / r["batch_size"])
            assert isinstance(r["still_improving"], bool) and r["diverged"] is False


def test_arms_train_as_their_recipes_say(study):
    conditions = study[0]["conditions"]
    m = {name: c["runs"][0]["metrics"] for name, c in conditions.items()}
    b_min, b_max = min(TINY.batch_sizes), max(TINY.batch_sizes)
    for b in TINY.batch_sizes:
        assert m[f"batch-{b}/equal-epochs"]["epochs"] == TINY.epochs
        assert m[f"batch-{b}/linear-lr"]["lr"] == pytest.approx(TINY.lr * min(b / b_min, TINY.max_lr_factor))
        matched = conditions[f"batch-{b}/matched-loss"]["runs"]
        for r in matched:  # stopped at the target, else ran to the step cap
            last = r["curves"]["train_loss"][-1]
            assert (last <= TINY.target_loss) == r["converged"]
            assert r["converged"] or r["metrics"]["train_steps"] >= TINY.max_steps
    steps = [m[f"batch-{b}/equal-steps"]["train_steps"] for b in TINY.batch_sizes]
    assert steps[-1] == TINY.epochs * math.ceil(N / b_max)
    # The same recipe is trained once and serves both arms: identical runs.
    assert conditions[f"batch-{b_min}/linear-lr"]["runs"] == [
        {**r, "condition": f"batch-{b_min}/linear-lr", "arm": "linear-lr"} for r in conditions[f"batch-{b_min}/equal-epochs"]["runs"]]


def test_recipes_equal_steps_linear_lr_cap_and_matched_loss_cap():
    cfg = sv.PRESETS["default"]
    got = {arm: {b: sv.ARMS.get(arm)(cfg, b, 1077) for b in cfg.batch_sizes} for arm in cfg.arms}
    assert [got["equal-steps"][b].epochs for b in (32, 64, 128, 256, 512)] == [6, 12, 23, 42, 70]
    assert [got["linear-lr"][b].lr for b in (32, 64, 128, 256, 512)] == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.4])
    assert got["matched-loss"][32].target == cfg.target_loss and got["matched-loss"][32].epochs == math.ceil(600 / 34)
    distinct = sv.recipes(cfg, 32, 1077)
    assert sorted(map(sorted, distinct.values())) == [["equal-epochs", "linear-lr"], ["equal-steps"], ["matched-loss"]]


def test_matched_loss_stops_at_max_steps_or_its_epoch_cap_whichever_comes_first():
    cfg = replace(sv.PRESETS["paper"], epochs=50, max_steps=20000, max_epochs_factor=2)
    epochs = {b: sv.ARMS.get("matched-loss")(cfg, b, 54000).epochs for b in (32, 256, 512)}
    assert epochs == {32: math.ceil(20000 / 1688), 256: math.ceil(20000 / 211), 512: 100}  # 190 epochs of steps at 512
    uncapped = replace(cfg, max_epochs_factor=None)
    assert sv.ARMS.get("matched-loss")(uncapped, 512, 54000).epochs == math.ceil(20000 / 106)


def _unit_runs(cfg, seeds=SEEDS) -> dict:
    """(condition, seed) -> run record, over every unit of cfg."""
    units = sv.units(cfg, seeds, Runtime())
    return {(r["condition"], r["seed"]): r for u in units for r in sv.run_unit(u)["runs"]}


def test_matched_loss_read_off_the_equal_epochs_fit_is_the_one_trained_alone():
    # epochs 6 and factor 1: the step caps (40 steps: 6, 10, 20 epochs) and the epoch cap both bind
    cfg = replace(TINY, epochs=6, max_epochs_factor=1, target_loss=2.305)  # reached by some runs
    assert {u.param("group") for u in sv.units(cfg, SEEDS, Runtime())} == {"fixed-budget"}
    assert sv.units(replace(cfg, arms=("matched-loss",)), SEEDS, Runtime())[0].param("group") == "matched-loss"
    read_off = _unit_runs(cfg)
    alone = _unit_runs(replace(cfg, arms=("matched-loss",)))
    runs = [(read_off[key], r) for key, r in alone.items()]
    assert len(runs) == len(SEEDS) * len(cfg.batch_sizes)
    assert {r["converged"] for _, r in runs} == {True, False}  # stopped at the target and at the caps
    for a, b in runs:
        assert a["metrics"]["epochs"] == b["metrics"]["epochs"] and a["converged"] == b["converged"]
        np.testing.assert_allclose(a["curves"]["train_loss"], b["curves"]["train_loss"], rtol=1e-5)
        for k, v in b["metrics"].items():
            assert a["metrics"][k] == pytest.approx(v, rel=1e-4, abs=1e-7), k


def test_matched_loss_trains_in_its_own_units_where_it_may_outlast_equal_epochs():
    assert {u.param("group") for u in sv.units(TINY, SEEDS, Runtime())} == {"fixed-budget", "matched-loss"}
    paper = sv.units(sv.PRESETS["paper"], tuple(range(10)), Runtime())
    assert {u.param("group") for u in paper} == {"fixed-budget"}
    assert {u.seeds for u in paper if "matched-loss" in u.param("arms")} == {(0, 1, 2)}


def test_a_target_recipe_is_read_off_a_fixed_one_at_its_lr_with_at_least_its_epochs():
    a, b = sv.Recipe(0.1, 5), sv.Recipe(0.1, 4, target=0.2)
    assert sv.hosts({a: [], b: []}) == {b: a}
    assert sv.hosts({sv.Recipe(0.1, 3): [], b: []}) == {}  # shorter: b may train past its end
    assert sv.hosts({sv.Recipe(0.2, 5): [], b: []}) == {}  # another lr: another trajectory


def test_sanity_records_hold_and_results_are_json_ready(study):
    summary, files = study
    json.dumps(summary, allow_nan=False)
    assert all(s["ok"] for s in summary["sanity"]), summary["sanity"]
    assert {"conditions", "checks", "answer", "table", "tables", "contrasts", "verdicts", "setup"} <= set(summary)
    assert len(summary["checks"]) == 3 * len(TINY.arms) + 1
    assert all(c["verdict"] == "inconclusive" and "n too small" in c["evidence"] for c in summary["checks"])
    assert summary["answer"].startswith("Inconclusive —")
    assert {"by_batch_size.png", "training_loss.png"} <= set(files)


# ---- every claim reaches all three verdicts on synthetic runs ------------------------------------

CFG = sv.PRESETS["default"]
RNG = np.random.default_rng(7)


def synthetic(claim, sign: int, n: int = 10) -> dict:
    """Runs whose metric moves with log batch size by `sign`, 10 seeds; sign 0: half the seeds
    rise and half fall (no trend over seeds)."""
    out = {}
    for name in claim.conditions:
        b = int(name.split("/")[0].split("-")[1])
        runs = []
        for seed in range(n):
            z = (sign or (-1) ** seed) * math.log2(b) + RNG.normal(0, 0.3)
            value = 0.5 + 0.05 * z if claim.metric.endswith("_acc") else math.exp(z)
            runs.append({"seed": seed, "metrics": {"batch_size": b, claim.metric: value}})
        out[name] = {"runs": runs}
    return {"conditions": out}


@pytest.mark.parametrize("index", range(len(sv.claims(CFG))))
def test_every_claim_can_be_supported_contradicted_and_inconclusive(index):
    claim = sv.claims(CFG)[index]
    assert claim.kind == "trend" and claim.x == "batch_size" and len(claim.conditions) == 5
    assert evaluate(claim, synthetic(claim, claim.sign))["verdict"] == "supported"
    assert evaluate(claim, synthetic(claim, -claim.sign))["verdict"] == "contradicted"
    assert evaluate(claim, synthetic(claim, 0))["verdict"] == "inconclusive"


def unit_results(sharp_sign: int, acc_sign: int, n: int = 10) -> list[dict]:
    """Synthetic unit results of every condition: the matched-loss arm's sharpness, Jacobian norm and
    test accuracy move with batch size as asked; every other arm is noise."""
    runs = []
    for arm in CFG.arms:
        for b in CFG.batch_sizes:
            for seed in range(n):
                k = math.log2(b) if arm == "matched-loss" else (-1) ** seed * math.log2(b)
                metrics = {m: 1.0 for m in sv.METRICS}
                s, a = (sharp_sign, acc_sign) if sharp_sign or acc_sign else ((-1) ** seed, (-1) ** seed)
                metrics.update(batch_size=b, train_loss=0.02 * math.exp(RNG.normal(0, 0.1)),
                               sharpness=math.exp(s * k + RNG.normal(0, 0.2)),
                               jacobian_norm=math.exp(s * k + RNG.normal(0, 0.2)),
                               test_acc=0.9 + a * 0.01 * k + RNG.normal(0, 0.002))
                runs.append({"condition": sv.condition(b, arm), "seed": seed, "arm": arm, "batch_size": b,
                             "metrics": metrics, "curves": {"loss": [1.0, 0.5]}, "still_improving": False,
                             "diverged": False, "converged": True})
    independence = {"batch_sizes": [500, 7], "max_abs_diff": 0.0, "scale": 1.0}
    return [{"runs": runs, "batch_independence": independence}]


@pytest.mark.parametrize("sharp, acc, opening", [(1, -1, "Yes —"), (-1, -1, "No —"), (0, 0, "Inconclusive —")])
def test_the_answer_opens_with_the_matched_loss_verdict(sharp, acc, opening):
    results = summarize_study(sv.STUDY, CFG, unit_results(sharp, acc))
    assert results["answer"].startswith(opening), results["answer"]
    assert "matched-loss arm" in results["answer"] and "at equal epochs" in results["answer"]
    assert "x [" in results["answer"] and " pp [" in results["answer"]  # ratios and percent points, with CIs
    assert "did not train" not in results["answer"]


def test_the_answer_names_runs_that_did_not_train():
    units = unit_results(1, -1)
    for r in units[0]["runs"]:
        if r["condition"] == "batch-512/linear-lr":
            r["curves"]["loss"] = [0.01, 0.01]  # ended at its first epoch's loss, above the final 0.02
    answer = summarize_study(sv.STUDY, CFG, units)["answer"]
    assert "did not train): batch-512/linear-lr 10" in answer


def test_config_is_validated():
    with pytest.raises(UsageError):
        replace(TINY, batch_sizes=(32, 32))
    with pytest.raises(UsageError):
        replace(TINY, batch_sizes=(32,))
    with pytest.raises(UsageError):
        replace(TINY, epsilon=0.0)
    with pytest.raises(UsageError):
        replace(TINY, arms=())
    with pytest.raises(UsageError):
        replace(TINY, arms=("equal-epochs", "equal-epochs"))
