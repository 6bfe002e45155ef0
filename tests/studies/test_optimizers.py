"""The optimizers study's model takes the fused engine path (it is most of the suite's time), and
image data reaches it flattened."""

import torch

from dlstudies.config import Runtime, apply_overrides
from dlstudies.engine.fused import why_not
from dlstudies.engine.schedule import StopRule
from dlstudies.engine.spec import TrainSpec
from dlstudies.models import StackedNet, build_members
from dlstudies.studies import STUDIES, load_studies
from dlstudies.studies.optimizers import _setup


def _net(overrides):
    load_studies()
    study = STUDIES.get("optimizers")
    cfg = apply_overrides(study.presets["smoke"], overrides)
    unit = study.work_units(cfg, (0, 1), Runtime())[0]
    data, dtype, builder = _setup(cfg, unit)
    return data, StackedNet(build_members(builder, [0, 1], dtype))


def test_feature_vectors_take_the_fused_path():
    data, net = _net([])
    assert why_not(net, data.train.x, data.train.y, TrainSpec(StopRule(1))) is None


def test_images_are_flattened_for_the_mlp():
    data, net = _net(["data=digits"])
    out = net.forward(data.train.x[:4].expand(2, *data.train.x[:4].shape))
    assert out.shape == (2, 4, 10) and torch.isfinite(out).all()


# ---- claims on synthetic runs: every claim reaches every verdict ----------------------------------

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from dlstudies.analysis.claims import evaluate  # noqa: E402
from dlstudies.studies import optimizers as opt  # noqa: E402

rng = np.random.default_rng(0)


def _table(values: dict[str, list], metric: str) -> dict:
    return {name: {"runs": [{"seed": i, "metrics": {metric: v}} for i, v in enumerate(vals)]}
            for name, vals in values.items()}


def _claim(cfg, metric):
    return next(c for c in opt.claims(cfg) if c.metric == metric)


BASE_EPOCHS = rng.uniform(40, 80, 10)


@pytest.mark.parametrize("factor, verdict", [(0.5, "supported"), (2.0, "contradicted"), (1.0, "inconclusive")])
def test_adam_faster_claim_reaches_every_verdict(factor, verdict):
    noise = rng.lognormal(0, 0.02, 10) if factor != 1.0 else rng.lognormal(0, 0.3, 10)
    results = {"conditions": _table({"adam": list(BASE_EPOCHS * factor * noise), "delta": list(BASE_EPOCHS)},
                                    "target_loss_epochs")}
    check = evaluate(_claim(opt.Config(), "target_loss_epochs"), results)
    assert check["verdict"] == verdict and check["scale"] == "ratio"


def test_adam_faster_claim_is_inconclusive_on_few_seeds_and_counts_unreached_targets():
    results = {"conditions": _table({"adam": [20.0] * 5, "delta": [60.0] * 5}, "target_loss_epochs")}
    assert "n too small" in evaluate(_claim(opt.Config(), "target_loss_epochs"), results)["evidence"]
    results = {"conditions": _table({"adam": [20.0] * 9 + [None], "delta": [60.0 + i for i in range(10)]},
                                    "target_loss_epochs")}
    check = evaluate(_claim(opt.Config(), "target_loss_epochs"), results)
    assert check["n"] == 9 and check["n_missing"] == 1 and check["verdict"] == "supported"


@pytest.mark.parametrize("shift, verdict", [(0.3, "supported"), (-0.3, "contradicted"), (0.0, "inconclusive")])
def test_ordering_claim_reaches_every_verdict(shift, verdict):
    shuffled = rng.uniform(0.4, 0.6, 10)
    noise = rng.normal(0, 0.01 if shift else 0.2, 10)
    results = {"ordering_std": _table({"class": list(shuffled + shift + noise), "shuffle": list(shuffled)},
                                      "within_epoch_loss_std")}
    assert evaluate(_claim(opt.Config(), "within_epoch_loss_std"), results)["verdict"] == verdict


@pytest.mark.parametrize("centre, spread, verdict", [(3.0, 0.1, "supported"), (0.8, 0.05, "contradicted"),
                                                     (1.0, 0.3, "inconclusive")])
def test_sensitivity_claim_reaches_every_verdict(centre, spread, verdict):
    rates = centre * rng.lognormal(0, spread, 10)
    results = {"separation": _table({opt.ALL_RULES: list(rates)}, "separation_rate")}
    assert evaluate(_claim(opt.Config(), "separation_rate"), results)["verdict"] == verdict


def test_no_separation_claim_without_separation_runs():
    cfg = opt.Config(separation_epochs=0)
    assert [c.metric for c in opt.claims(cfg)] == ["target_loss_epochs", "within_epoch_loss_std"]
    assert opt.grid(cfg) == [(("part", "rules"),)]


# ---- one tiny run end to end, and the answer on synthetic unit results ---------------------------

from dlstudies.studies.results import summarize_study  # noqa: E402

TINY = ["n_train=60", "max_epochs=6", "separation_epochs=3", "rules=delta,adam", "target_loss=1.7"]  # ln 5 = 1.61 at the start: reached at once


def test_tiny_run_records_every_measure(run_tiny, tmp_path):
    cfg = apply_overrides(opt.PRESETS["smoke"], TINY)
    units, results, files = run_tiny("optimizers", cfg, [0, 1], tmp_path)
    assert [u.get("separation") is not None for u in units] == [False, True]
    run = results["conditions"]["adam"]["runs"][0]
    assert set(opt.METRICS + opt.STOP_METRICS) <= set(run["metrics"])
    assert {"converged", "still_improving", "diverged"} <= set(run) and len(run["curves"]["loss"]) == 6
    assert run["metrics"]["target_loss_samples"] == run["metrics"]["target_loss_epochs"] * 60
    assert np.asarray(run["confusion"]["test"]).sum() == 500  # mnist1d36's test split
    assert [c["verdict"] for c in results["checks"]] == ["inconclusive"] * 3  # two seeds decide nothing
    assert results["answer"].startswith("Inconclusive —") and all(s["ok"] for s in results["sanity"])
    sep = results["separation"]["adam"]["runs"][0]
    assert len(sep["distance"]) == 4 and sep["distance"][0] == pytest.approx(1e-7, rel=1e-6)
    assert any("Holm-adjusted" in t["title"] for t in results["tables"])
    assert {"separation.png", "all_rules.png", "ordering.png"} <= set(files)


def _unit_results(epochs: dict[str, list[int]], acc: dict[str, list[float]]):
    """Unit results of a rules unit and a separation unit, made by hand: each run's metrics are set
    directly (epochs to target, accuracies); its loss curve is only drawn."""
    runs = []
    for rule, per_seed in epochs.items():
        for seed, e in enumerate(per_seed):
            loss = list(np.maximum(2.0 - np.arange(1, 41) / (e or 80), 0.99))
            metrics = {"target_loss_epochs": e, "target_loss_samples": None if e is None else e * 100,
                       "loss_auc": float(np.mean(loss)), "final_loss": loss[-1], "train_acc": acc[rule][seed] + 0.05, "val_acc": acc[rule][seed],
                       "test_acc": acc[rule][seed], "stop_rule_epochs": (e or 38) + 2, "stop_rule_loss": 0.99,
                       "stop_rule_train_acc": 0.5, "stop_rule_test_acc": 0.5}
            runs.append({"condition": rule, "seed": seed, "metrics": metrics, "curves": {"loss": loss},
                         "confusion": {"train": np.eye(5).tolist(), "test": np.eye(5).tolist()},
                         "converged": True, "still_improving": False, "diverged": False})
    ordering = {"rule": "delta", "class_counts": [2] * 5,
                "traces": {o: {str(s): list(rng.normal(1, w, 10)) for s in range(10)} for o, w in (("class", 1), ("shuffle", 0.1))}}
    sep = [{"condition": r, "seed": s, "distance": list(1e-7 * 2.0 ** np.arange(4)),
            "metrics": {"separation_rate": 2.0 * (1 + 0.01 * s), "separation_distance": 8e-7}, "diverged": False}
           for r in epochs for s in range(10)]
    return [{"runs": runs, "ordering": ordering}, {"runs": [], "separation": sep}]


def test_answer_names_the_best_rule_against_the_runner_up():
    base = rng.uniform(30, 40, 10)
    epochs = {"delta": list((base * 3).round()), "adam": list((base * 0.8).round()),
              "rmsprop": list(base.round()), "adagrad": list((base * 5).round())}
    acc = {"delta": list(0.5 + rng.normal(0, 0.01, 10)), "adam": list(0.62 + rng.normal(0, 0.01, 10)),
           "rmsprop": list(0.6 + rng.normal(0, 0.01, 10)), "adagrad": list(0.45 + rng.normal(0, 0.01, 10))}
    cfg = opt.Config(rules=tuple(epochs), separation_epochs=3)
    results = summarize_study(STUDIES.get("optimizers"), cfg, _unit_results(epochs, acc))
    answer = results["answer"]
    assert answer.startswith("Supported — Adam reached the training loss 1.25 in 0.26")  # 0.8 / 3
    assert "adam reached the target loss first" in answer and "against the runner-up rmsprop: 0.79" in answer
    assert "adam was most accurate" in answer and "runner-up rmsprop: +" in answer
    assert "runner-up adagrad" not in answer and "runner-up delta" not in answer  # never the slowest
    assert [c["verdict"] for c in results["checks"]] == ["supported"] * 3
    assert "stay within 1%" in answer  # 8e-7 apart: a seed's numbers follow from its initial weights
    pairs = next(t for t in results["tables"] if t.get("pairs") and t["pairs"][0]["metric"] == "test_acc")
    assert len(pairs["rows"]) == 6 and "Holm-adjusted" in pairs["title"]


def test_answer_counts_runs_that_never_reached_the_target():
    epochs = {"delta": [5] * 10, "adam": [15] * 8 + [None, None]}
    acc = {"delta": [0.6] * 10, "adam": [0.4] * 10}
    cfg = opt.Config(rules=tuple(epochs), separation_epochs=3)
    results = summarize_study(STUDIES.get("optimizers"), cfg, _unit_results(epochs, acc))
    assert "never reached the target loss within the budget (left out of its times): adam 2 of 10." in results["answer"]
    assert results["checks"][0]["n"] == 8 and results["checks"][0]["n_missing"] == 2
