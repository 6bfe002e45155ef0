"""image-depth: its claims on synthetic runs in all three verdicts, equal counts as sanity records, the
convergence flag, the 28x28 paper setting, and a tiny end-to-end run on digits."""

import json
from dataclasses import replace

import numpy as np
import pytest

from dlstudies.analysis.claims import evaluate
from dlstudies.errors import UsageError
from dlstudies.models import count_params
from dlstudies.models.widths import MATCH_TOLERANCE, match_error
from dlstudies.studies import image_depth as idp
from dlstudies.studies.results import best_still_improving

TINY = replace(idp.PRESETS["smoke"], epochs=2, n_train=60, n_test=60)
SEEDS = (0, 1)
rng = np.random.default_rng(9)


@pytest.fixture(autouse=True)
def fixed_draws():
    """Every test draws the same synthetic runs whichever tests run before it (-k, -x, xdist)."""
    global rng
    rng = np.random.default_rng(9)


@pytest.mark.parametrize("shift, verdict", [(0.03, "supported"), (-0.03, "contradicted"), (0.0, "inconclusive")])
@pytest.mark.parametrize("family", ["cnn", "mlp"])
def test_deeper_is_more_accurate_reaches_every_verdict(family, shift, verdict):
    shallow = rng.uniform(0.90, 0.95, 10)
    deep = np.clip(shallow + shift + rng.normal(0, 0.005 if shift else 0.02, 10), 0, 1)
    res = {"conditions": {f"{family}/{m}": {"runs": [{"seed": i, "metrics": {"test_acc": float(v)}}
                                                     for i, v in enumerate(vals)]}
                          for m, vals in (("shallow", shallow), ("deep", deep))}}
    claim = next(c for c in idp.claims(idp.PRESETS["default"]) if c.a == f"{family}/deep")
    assert evaluate(claim, res)["verdict"] == verdict


def test_unequal_counts_fail_their_sanity_record():
    models = {"cnn/shallow": {"n_params": 1000}, "cnn/deep": {"n_params": 1100}}
    assert not idp._equal_counts("cnn", models)["ok"]
    assert idp._equal_counts("cnn", {**models, "cnn/deep": {"n_params": 1005}})["ok"]


@pytest.fixture(scope="module")
def study(tmp_path_factory, run_tiny):
    return run_tiny("image-depth", TINY, SEEDS, tmp_path_factory.mktemp("image-depth"))[1:]


def test_conditions_record_accuracies_curves_and_the_convergence_flag(study):
    summary, _ = study
    assert list(summary["conditions"]) == ["cnn/shallow", "cnn/deep", "mlp/shallow", "mlp/deep"]
    for c in summary["conditions"].values():
        for r in c["runs"]:
            assert 0 <= r["metrics"]["train_acc"] <= 1 and 0 <= r["metrics"]["test_acc"] <= 1
            assert all(len(r["curves"][k]) == TINY.epochs for k in idp.CURVES)
            assert r["still_improving"] == best_still_improving(r["curves"]["val_loss"])


def test_shallow_and_deep_have_equal_counts_and_differ_in_depth(study):
    summary, _ = study
    models = summary["models"]
    for family in ("cnn", "mlp"):
        shallow, deep = models[f"{family}/shallow"], models[f"{family}/deep"]
        assert match_error([shallow["n_params"], deep["n_params"]]) <= MATCH_TOLERANCE
        assert deep["layers"] > shallow["layers"]
    assert [s["ok"] for s in summary["sanity"]] == [True, True]


def test_results_are_json_ready_with_verdicts_answer_and_figures(study):
    summary, files = study
    json.dumps(summary, allow_nan=False)
    assert [(c["a"], c["b"]) for c in summary["checks"]] == [("cnn/deep", "cnn/shallow"), ("mlp/deep", "mlp/shallow")]
    assert summary["answer"].startswith("Inconclusive —")  # two seeds: n too small
    assert {"training_curves.png", "test_accuracy.png"} <= set(files)


@pytest.mark.parametrize("family", ["cnn", "mlp"])
def test_counts_match_on_28x28_images(family):
    solved = idp.solve_family(idp.PRESETS["paper"], family, (1, 28, 28), 10)
    built = [count_params(idp.FAMILIES.get(family).build((1, 28, 28), w, 10)) for w in solved.values()]
    assert built == [w.n_params for w in solved.values()]
    assert match_error(built) <= MATCH_TOLERANCE


def test_paper_scale_runs_on_28x28_images_and_default_trains_longer_than_report_b():
    assert idp.PRESETS["paper"].data == "fashion-mnist" and idp.PRESETS["paper"].epochs == 10
    assert idp.PRESETS["default"].epochs == idp.EPOCHS_DEFAULT > 10


@pytest.mark.parametrize("change", [{"families": ("rnn",)}, {"mlp_depths": (4, 1)}, {"cnn_deep": (8,)}])
def test_config_is_validated(change):
    with pytest.raises(UsageError):
        replace(TINY, **change)
