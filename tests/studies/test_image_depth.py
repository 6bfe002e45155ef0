"""image-depth end to end at a tiny scale on digits; equal counts also at fashion-mnist's size."""

import json
from dataclasses import replace

import pytest

from dlstudies.errors import UsageError
from dlstudies.models import count_params
from dlstudies.models.widths import MATCH_TOLERANCE, match_error
from dlstudies.studies import image_depth as idp

TINY = replace(idp.PRESETS["smoke"], epochs=2, n_train=60, n_test=60)
SEEDS = (0, 1)


@pytest.fixture(scope="module")
def study(tmp_path_factory, run_tiny):
    return run_tiny("image-depth", TINY, SEEDS, tmp_path_factory.mktemp("image-depth"))[1:]


def test_conditions_record_counts_accuracies_and_curves(study):
    summary, _ = study
    assert list(summary["conditions"]) == ["cnn/shallow", "cnn/deep", "mlp/shallow", "mlp/deep"]
    for c in summary["conditions"].values():
        for r in c["runs"]:
            assert 0 <= r["metrics"]["train_acc"] <= 1 and 0 <= r["metrics"]["test_acc"] <= 1
            assert all(len(r["curves"][k]) == TINY.epochs for k in ("loss", "train_acc", "test_acc"))


def test_shallow_and_deep_have_equal_counts_and_differ_in_depth(study):
    summary, _ = study
    models = summary["models"]
    for family in ("cnn", "mlp"):
        shallow, deep = models[f"{family}/shallow"], models[f"{family}/deep"]
        assert match_error([shallow["n_params"], deep["n_params"]]) <= MATCH_TOLERANCE
        assert deep["layers"] > shallow["layers"]


def test_results_are_json_ready_with_checks_and_figures(study):
    summary, files = study
    json.dumps(summary, allow_nan=False)
    assert {"conditions", "comparisons", "checks", "answer", "tables"} <= set(summary)
    assert {c["a"] for c in summary["comparisons"]} == {"cnn/deep", "mlp/deep"}
    assert {"training_curves.png", "test_accuracy.png"} <= set(files)


@pytest.mark.parametrize("family", ["cnn", "mlp"])
def test_counts_match_on_fashion_mnist_sized_images(family):
    solved = idp.solve_family(idp.PRESETS["default"], family, (1, 28, 28), 10)
    built = [count_params(idp.FAMILIES.get(family).build((1, 28, 28), w, 10)) for w in solved.values()]
    assert built == [w.n_params for w in solved.values()]
    assert match_error(built) <= MATCH_TOLERANCE


def test_config_is_validated():
    with pytest.raises(UsageError):
        replace(TINY, families=("rnn",))
    with pytest.raises(UsageError):
        replace(TINY, mlp_depths=(4, 1))
