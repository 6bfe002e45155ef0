"""The normalization study's claims on synthetic runs (each reaches supported, contradicted and
inconclusive), the over-fitting verdict that combines two of them, the answer's opening, the
Holm-adjusted pairwise table, and time to target on synthetic curves."""

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from dlstudies.analysis.claims import evaluate
from dlstudies.studies import normalization as study

CFG = study.PRESETS["default"]
rng = np.random.default_rng(3)
N = 10


def results(values: dict[str, dict[str, list]]) -> dict:
    """{"conditions": {norm: {"runs": [...]}}} from {norm: {metric: per-seed values}}."""
    return {"conditions": {norm: {"runs": [{"seed": i, "metrics": {m: v[i] for m, v in by.items()}} for i in range(N)]}
                           for norm, by in values.items()}}


def claim(metric: str, a: str, kind: str = "directional"):
    return next(c for c in study.claims(CFG) if c.metric == metric and c.a == a and c.kind == kind)


BASE_EPOCHS = rng.uniform(80, 160, N)


@pytest.mark.parametrize("metric", ["target_loss_epochs", "target_acc_epochs"])
@pytest.mark.parametrize("factor, verdict", [(0.4, "supported"), (2.5, "contradicted"), (1.0, "inconclusive")])
def test_ioffe_time_to_target_reaches_every_verdict(metric, factor, verdict):
    noise = rng.lognormal(0, 0.05 if factor != 1 else 0.4, N)
    res = results({"none": {metric: list(BASE_EPOCHS)}, "batchnorm": {metric: list(BASE_EPOCHS * factor * noise)}})
    c = evaluate(claim(metric, "batchnorm"), res)
    assert c["verdict"] == verdict and c["source"] == "Ioffe & Szegedy 2015"
    assert c["scale"] == "ratio" and "x [" in c["evidence"]  # a geometric-mean ratio, not epochs of difference


@pytest.mark.parametrize("factor, verdict", [(0.5, "supported"), (2.0, "contradicted"), (1.0, "inconclusive")])
def test_layernorm_time_to_target_reaches_every_verdict(factor, verdict):
    noise = rng.lognormal(0, 0.05 if factor != 1 else 0.4, N)
    res = results({"none": {"target_loss_epochs": list(BASE_EPOCHS)},
                   "layernorm": {"target_loss_epochs": list(BASE_EPOCHS * factor * noise)}})
    assert evaluate(claim("target_loss_epochs", "layernorm"), res)["verdict"] == verdict


BASE_ACC = rng.uniform(0.45, 0.6, N)


@pytest.mark.parametrize("shift, verdict", [(0.08, "supported"), (-0.08, "contradicted"), (0.0, "inconclusive")])
def test_report_a_equal_epochs_reaches_every_verdict(shift, verdict):
    spread = 0.01 if shift else 0.05
    res = results({"none": {"test_acc": list(BASE_ACC)},
                   "batchnorm": {"test_acc": list(np.clip(BASE_ACC + shift + rng.normal(0, spread, N), 0, 1))}})
    c = evaluate(claim("test_acc", "batchnorm"), res)
    assert c["verdict"] == verdict and c["source"] == "report A, Task 2" and " pp [" in c["evidence"]


BASE_GAP = rng.uniform(0.02, 0.06, N)


def _gaps(norm: str, shift: float, spread: float) -> dict:
    return results({"none": {"gap": list(BASE_GAP)}, norm: {"gap": list(BASE_GAP + shift + rng.normal(0, spread, N))}})


@pytest.mark.parametrize("norm", ["batchnorm", "layernorm"])
@pytest.mark.parametrize("shift, spread, verdict", [(0.1, 0.01, "supported"), (-0.1, 0.01, "contradicted"),
                                                    (0.0, 0.08, "inconclusive")])
def test_over_fitting_directional_reaches_every_verdict(norm, shift, spread, verdict):
    assert evaluate(claim("gap", norm), _gaps(norm, shift, spread))["verdict"] == verdict


@pytest.mark.parametrize("norm", ["batchnorm", "layernorm"])
@pytest.mark.parametrize("shift, spread, verdict", [(0.0, 0.005, "supported"), (0.15, 0.01, "contradicted"),
                                                    (0.02, 0.06, "inconclusive")])
def test_over_fitting_equivalence_reaches_every_verdict(norm, shift, spread, verdict):
    c = evaluate(claim("gap", norm, "equivalence"), _gaps(norm, shift, spread))
    assert c["verdict"] == verdict and c["margin"] == CFG.gap_margin


@pytest.mark.parametrize("directional, equivalence, expected", [
    ("supported", "inconclusive", "yes"), ("supported", "contradicted", "yes"),
    ("supported", "supported", "no"),  # larger, but by less than the margin: no practical over-fitting
    ("contradicted", "inconclusive", "no"), ("inconclusive", "supported", "no"),
    ("inconclusive", "inconclusive", "inconclusive"), ("inconclusive", "contradicted", "inconclusive")])
def test_over_fitting_verdict_combines_both_claims(directional, equivalence, expected):
    assert study.overfits({"verdict": directional}, {"verdict": equivalence}) == expected


def test_a_condition_not_run_leaves_its_claims_inconclusive():
    res = results({"none": {"gap": list(BASE_GAP)}})
    c = evaluate(claim("gap", "layernorm"), res)
    assert c["verdict"] == "inconclusive" and "not run here" in c["evidence"]


def _full_results(speedup: float) -> dict:
    metrics = {"target_loss_epochs": BASE_EPOCHS, "target_acc_epochs": BASE_EPOCHS * 0.8, "test_acc": BASE_ACC,
               "gap": BASE_GAP, "loss_auc": BASE_EPOCHS / 100, "train_acc": BASE_ACC + BASE_GAP}
    res = results({n: {m: list(v * (speedup if n != "none" and "epochs" in m else 1) * rng.lognormal(0, 0.02, N)
                           if "epochs" in m else v + (0 if n == "none" else rng.normal(0, 0.002, N)))
                           for m, v in metrics.items()} for n in study.NORMALIZATIONS})
    res["checks"] = [evaluate(c, res) for c in study.claims(CFG)]
    res["convergence"] = {n: {"runs": N, "still_improving": 0, "diverged": 0} for n in study.NORMALIZATIONS}
    return res


@pytest.mark.parametrize("speedup, opening", [(0.4, "Yes —"), (2.0, "No —")])
def test_answer_opens_with_the_verdict_and_answers_both_halves(speedup, opening):
    text = study.answer(CFG, _full_results(speedup))
    assert text.startswith(opening)
    assert "Over-fitting: no for batchnorm" in text and "no for layernorm" in text  # gaps equal within ±3 pp
    assert "stop-rule" in text


def test_pairwise_rows_are_holm_adjusted_over_the_whole_table():
    res = _full_results(0.5)
    rows = study.pairwise_rows(res["conditions"], study.METRICS)
    assert len(rows) == 3 * len(study.METRICS)
    expected = multipletests([r["p_value"] for r in rows], method="holm")[1]
    np.testing.assert_allclose([r["p_holm"] for r in rows], expected)
    table = study._pairwise_table(rows, "t")
    assert table["rows"][0][1] == "none / batchnorm" and table["rows"][0][2].endswith("x")  # epochs: a ratio


# ---- time to target, area under the curve ------------------------------------------------------

def _first_epoch_oracle(curve, target, below):
    for epoch, value in enumerate(curve, start=1):
        if value is not None and (value <= target if below else value >= target):
            return epoch
    return None


@pytest.mark.parametrize("seed", range(5))
def test_epochs_to_target_matches_a_plain_loop_on_random_curves(seed):
    g = np.random.default_rng(seed)
    loss = list(np.exp(-np.cumsum(g.uniform(0, 0.1, 50))) + g.normal(0, 0.02, 50))
    acc = list(np.clip(np.cumsum(g.uniform(0, 0.04, 50)), 0, 1))
    for target in (0.9, 0.5, 0.2, 0.05, -1.0):
        assert study.epochs_to(loss, target) == _first_epoch_oracle(loss, target, True)
    for target in (0.1, 0.5, 0.99, 2.0):
        assert study.epochs_to(acc, target, below=False) == _first_epoch_oracle(acc, target, False)


def test_epochs_to_target_edge_cases():
    assert study.epochs_to([1.0, 0.5, 0.5], 0.5) == 2  # reaching the target exactly counts
    assert study.epochs_to([0.1], 0.5) == 1
    assert study.epochs_to([None, 0.9, 0.4], 0.5) == 3 and study.epochs_to([], 0.5) is None


def test_loss_auc_is_the_mean_epoch_loss():
    assert study.loss_auc([1.0, 0.5, 0.25, 0.25]) == pytest.approx(0.5)
    assert study.loss_auc([1.0, float("nan")]) is None and study.loss_auc([]) is None
