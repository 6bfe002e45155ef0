"""The pretraining study's claims on synthetic runs (each reaches supported, contradicted and
inconclusive), the per-seed benefit table the interaction claim reads, the answer's opening, and
validation early stopping held to a plain training-loop oracle."""

import numpy as np
import pytest

from dlstudies.analysis.claims import evaluate
from dlstudies.studies import pretraining as study

CFG = study.PRESETS["default"]
N = 10
rng = np.random.default_rng(5)
CONTROL = {f: rng.uniform(0.3, 0.5, N) + 0.1 * f for f in CFG.fractions}


def results(benefit: dict[float, float], spread: float = 0.005, epochs_factor: float = 1.0) -> dict:
    """Conditions pretrained@f / control@f with per-seed test accuracy control + benefit[f] + noise."""
    conditions = {}
    for f in CFG.fractions:
        for kind in study.CONDITIONS:
            acc = CONTROL[f] + (benefit[f] + rng.normal(0, spread, N) if kind == "pretrained" else 0)
            epochs = 100 * (epochs_factor if kind == "pretrained" else 1) * rng.lognormal(0, 0.05, N)
            conditions[study.condition(kind, f)] = {"runs": [
                {"seed": i, "metrics": {"test_acc": float(np.clip(acc[i], 0, 1)), "best_val_epochs": float(epochs[i])},
                 "converged": True, "still_improving": False} for i in range(N)]}
    res = {"conditions": conditions, "benefit": study._benefits(CFG, conditions)}
    res["checks"] = [evaluate(c, res) for c in study.claims(CFG)]
    return res


def check(res: dict, **match) -> dict:
    return study.check_of(res, **match)


@pytest.mark.parametrize("fraction", CFG.fractions)
@pytest.mark.parametrize("benefit, spread, verdict", [(0.05, 0.005, "supported"), (-0.05, 0.005, "contradicted"),
                                                      (0.0, 0.05, "inconclusive")])
def test_erhan_benefit_per_fraction_reaches_every_verdict(fraction, benefit, spread, verdict):
    res = results({f: benefit for f in CFG.fractions}, spread)
    c = check(res, metric="test_acc", a=study.condition("pretrained", fraction))
    assert c["verdict"] == verdict and c["source"].startswith("Erhan et al. 2010") and c["n"] == N


@pytest.mark.parametrize("scarce, full, spread, verdict", [(0.08, 0.0, 0.005, "supported"),
                                                           (0.0, 0.08, 0.005, "contradicted"),
                                                           (0.02, 0.02, 0.05, "inconclusive")])
def test_erhan_interaction_reaches_every_verdict(scarce, full, spread, verdict):
    res = results({0.1: scarce, 0.25: (scarce + full) / 2, 1.0: full}, spread)
    c = check(res, metric=study.BENEFIT)
    assert c["verdict"] == verdict and c["a"] == "benefit@0.1" and c["b"] == "benefit@1.0"
    assert " pp [" in c["evidence"]  # a difference of accuracy differences, in percent points


def test_interaction_is_computed_on_per_seed_benefits():
    res = results({0.1: 0.06, 0.25: 0.03, 1.0: 0.01})
    by = {name: [r["metrics"][study.BENEFIT] for r in b["runs"]] for name, b in res["benefit"].items()}
    pre, ctl = ([r["metrics"]["test_acc"] for r in res["conditions"][study.condition(k, 0.1)]["runs"]]
                for k in study.CONDITIONS)
    np.testing.assert_allclose(by["benefit@0.1"], np.subtract(pre, ctl))
    c = check(res, metric=study.BENEFIT)
    assert c["effect"] == pytest.approx(np.mean(np.subtract(by["benefit@0.1"], by["benefit@1.0"])))


def test_a_missing_arm_leaves_its_seed_out_of_the_benefit():
    res = results({f: 0.05 for f in CFG.fractions})
    res["conditions"]["control@0.1"]["runs"][2]["metrics"]["test_acc"] = None
    benefit = study._benefits(CFG, res["conditions"])["benefit@0.1"]["runs"]
    assert benefit[2]["metrics"][study.BENEFIT] is None and benefit[3]["metrics"][study.BENEFIT] is not None


@pytest.mark.parametrize("factor, verdict", [(0.5, "supported"), (2.0, "contradicted"), (1.0, "inconclusive")])
def test_report_a_fewer_epochs_reaches_every_verdict(factor, verdict):
    res = results({f: 0.0 for f in CFG.fractions}, epochs_factor=factor)
    if factor == 1.0:  # no effect: make the per-seed ratios scatter around 1
        for r in res["conditions"]["pretrained@1.0"]["runs"]:
            r["metrics"]["best_val_epochs"] *= float(rng.lognormal(0, 0.5))
        res["checks"] = [evaluate(c, res) for c in study.claims(CFG)]
    c = check(res, metric="best_val_epochs")
    assert c["verdict"] == verdict and c["scale"] == "ratio"


@pytest.mark.parametrize("verdicts, expected", [
    (("supported", "inconclusive", "inconclusive"), "supported"), (("supported", "supported", "contradicted"), "inconclusive"),
    (("contradicted", "inconclusive", "contradicted"), "contradicted"), (("inconclusive",) * 3, "inconclusive")])
def test_helps_combines_the_fractions(verdicts, expected):
    assert study.helps([{"verdict": v} for v in verdicts]) == expected


@pytest.mark.parametrize("benefit, opening", [(0.06, "Yes —"), (-0.06, "No —"), (0.0, "Inconclusive —")])
def test_answer_opens_with_the_verdict(benefit, opening):
    res = results({f: benefit for f in CFG.fractions}, 0.005 if benefit else 0.05)
    text = study.answer(CFG, res)
    assert text.startswith(opening) and "more with scarce labels:" in text
    assert "Every run's early stopping fired" in text


# ---- validation early stopping -------------------------------------------------------------------

def _early_stop_oracle(val_loss, patience):
    """A training loop as Keras writes it: a counter of epochs without improvement."""
    best, best_epoch, waited = np.inf, 0, 0
    for epoch, v in enumerate(val_loss):
        if v < best:
            best, best_epoch, waited = v, epoch, 0
        else:
            waited += 1
            if waited >= patience:
                return best_epoch, epoch, True
    return best_epoch, len(val_loss) - 1, False


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("patience", [1, 3, 10])
def test_early_stop_matches_a_patience_counter(seed, patience):
    g = np.random.default_rng(seed)
    curve = list(1 / (1 + np.arange(60) * g.uniform(0.01, 0.2)) + 0.001 * np.arange(60) ** 1.2 * g.uniform(0, 1)
                 + g.normal(0, 0.01, 60))
    assert study.early_stop(curve, patience) == _early_stop_oracle(curve, patience)


def test_early_stop_on_plain_shapes():
    assert study.early_stop([3, 2, 1], 2) == (2, 2, False)  # still improving at the budget
    assert study.early_stop([1, 2, 3, 4], 2) == (0, 2, True)
    assert study.early_stop([1, 1, 1], 2) == (0, 2, True)  # equal is no improvement
    assert study.early_stop([None, 2, 1, 5, 5], 2) == (2, 4, True)  # a missing value never is the best
