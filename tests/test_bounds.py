"""Declared bounds: every field of every study's Config has a rule that bounds it, every preset
keeps to the rules, and every hostile `--set` value ends cleanly — the run is accepted, or the CLI
exits 2 with one line; never a traceback. A few accepted extremes per study run to the end."""

import dataclasses
import json
import math
import typing

import matplotlib.figure
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hostile_inputs as hostile
from dlstudies.cli import main
from dlstudies.config import check_fields, rule_for
from dlstudies.errors import UsageError
from dlstudies.studies import STUDIES, load_studies

load_studies()
FIELDS = hostile.study_fields()
NAMES = sorted(STUDIES.names())


def _field(study: str, name: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(STUDIES.get(study).presets["smoke"]) if f.name == name)


@pytest.mark.parametrize("study, name", FIELDS, ids=[f"{s}.{n}" for s, n in FIELDS])
def test_every_field_of_every_study_has_a_rule_that_bounds_it(study, name):
    cls = type(STUDIES.get(study).presets["smoke"])
    rule = rule_for(cls, _field(study, name))
    assert rule is not None, f"{study}.{name} has no rule: add one to FIELD_RULES in dlstudies/config.py"
    valid, text = rule
    assert text.startswith(("must", "widths", "channels", "depths", "epoch", "batch", "fractions", "thresholds",
                            "flanks", "accuracy")), text
    kind = hostile.scalar_type(typing.get_type_hints(cls)[name])
    # Bounded on both sides and typed: neither a huge nor a hugely negative value, nor one of the
    # wrong type, passes.
    too_far = {int: [10**30, -10**30, 2.5, True], float: [1e30, -1e30, math.nan, math.inf, "1"],
               str: ["", "x" * 5000, "a\nb", 3], bool: [2, "yes", None]}[kind]
    assert not any(valid(v) for v in too_far), (study, name, text)


@pytest.mark.parametrize("study", NAMES)
def test_every_preset_keeps_to_the_declared_bounds(study):
    for scale, cfg in STUDIES.get(study).presets.items():
        assert check_fields(cfg) is cfg, (study, scale)


def test_a_config_built_in_code_is_held_to_the_same_bounds():
    cfg = STUDIES.get("optimizers").presets["smoke"]
    for changes, fragment in [({"lr": 1e300}, "lr must be > 0 and < 1000"), ({"hidden": (20, 10**9)}, "hidden widths"),
                              ({"max_epochs": 10**12}, "max_epochs must be"), ({"hidden": (1,) * 65}, "at most 64")]:
        with pytest.raises(UsageError, match=fragment):
            check_fields(dataclasses.replace(cfg, **changes))


@pytest.fixture
def validation_only():
    with hostile.validation_only():
        yield


@pytest.mark.parametrize("study", NAMES)
def test_every_hostile_value_of_every_field_ends_cleanly(study, tmp_path, validation_only):
    rejected = set()
    for s, key in FIELDS:
        if s != study:
            continue
        for text in hostile.hostile_values(hostile.field_hint(study, key)):
            outcome, err = hostile.try_setting(study, key, text, tmp_path / "out")
            assert outcome != "unclean", (key, text, err)
            if outcome == "rejected":
                rejected.add(key)
    fields = {f.name for f in dataclasses.fields(STUDIES.get(study).presets["smoke"])}
    assert rejected == fields, f"never rejected: {fields - rejected}"  # every field's bounds bite somewhere


texts = st.one_of(
    st.integers(-10**30, 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=20),
    st.lists(st.integers(-10**12, 10**12).map(str), max_size=70).map(",".join),
    st.lists(st.floats(allow_nan=True, allow_infinity=True).map(repr), max_size=5).map(",".join),
)


@pytest.mark.parametrize("study", NAMES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_value_of_any_field_is_accepted_or_one_clean_line(study, tmp_path, validation_only, data):
    key = data.draw(st.sampled_from([k for s, k in FIELDS if s == study]))
    text = data.draw(texts)
    outcome, err = hostile.try_setting(study, key, text, tmp_path / "out")
    assert outcome != "unclean", (key, text, err)


@pytest.mark.parametrize("argv, fragment", [
    (["--set", "lr=1e300"], "lr must be > 0 and < 1000, got 1e+300"),
    (["--seeds", "100000000"], "--seeds must be >= 1 and <= 1000"),
    (["--set", "hidden=100000000"], "hidden widths must all be >= 1 and <= 100,000"),
    (["--set", "hidden=20,,10"], "cannot read '20,,10' as comma-separated ints"),
    (["--workers", "100000"], "--workers must be <= 1024"),
])
def test_the_settings_that_once_ran_away_are_one_line_errors(argv, fragment, tmp_path, capsys, validation_only):
    out = tmp_path / "out"
    assert main(["run", "optimizers", "--scale", "smoke", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert hostile.clean(err) and fragment in err, err
    assert not out.exists()


# Accepted extremes of each study together, at sizes that keep a run to seconds: the largest
# learning rate the bounds allow (runs diverge: the study must still finish), the smallest
# widths, epochs and data.
EXTREMES = {
    "optimizers": ["lr=999.9", "hidden=1", "max_epochs=2", "n_train=20", "momentum=0", "tolerance=0"],
    "normalization": ["lr=999.9", "hidden=1,1", "max_epochs=3", "budgets=1", "n_train=20", "batch_size=2"],
    "pretraining": ["lr=999.9", "ae_lr=999.9", "encoder=1,1", "ae_max_epochs=1", "max_epochs=1", "n_train=30",
                    "fractions=1"],
    "function-fit": ["lr=999.9", "epochs=1", "n_train=2", "n_test=2", "curve_points=2", "plot_points=2"],
    "image-depth": ["lr=999.9", "epochs=1", "n_train=20", "n_test=20"],
    "weight-trajectory": ["lr=999.9", "epochs=2", "snapshot_every=1", "n_train=20"],
    "grad-norm": ["lr=999.9", "epochs=2", "hidden=1", "n_train=20", "batch_size=20"],
    "minimal-ratio": ["lr=999.9", "hidden=1", "epochs=1", "gn_steps=0", "restarts=1", "n_train=8"],
    "loss-surface": ["lr=999.9", "epochs=2", "grid=3", "hidden=1", "n_train=20", "radius=1000", "rise_radius=1000"],
    "random-labels": ["lr=999.9", "epochs=1", "channels=1", "hidden=1", "n_train=20", "n_test=20", "thresholds=0.95"],
    "params-generalization": ["lr=999.9", "epochs=1", "h1=1,2", "h2=1,1", "n_train=20", "n_test=20"],
    "interpolation": ["lr=999.9", "epochs=1", "channels=1", "hidden=1", "n_train=40", "n_test=20", "small_batch=1",
                      "bn_pair=false", "large_batch=2", "n_alphas=2", "alpha_min=-1000", "alpha_max=1000"],
    "sensitivity": ["lr=999.9", "epochs=1", "channels=1", "hidden=1", "n_train=20", "n_test=20", "batch_sizes=1,2",
                    "sharpness_steps=1", "epsilon=1000"],
}


def test_extremes_cover_every_study():
    assert set(EXTREMES) == set(NAMES)


@pytest.mark.parametrize("study", sorted(EXTREMES))
def test_accepted_extremes_run_to_the_end(study, tmp_path, monkeypatch):
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda self, *a, **k: None)  # numbers, not pictures
    sets = [a for s in EXTREMES[study] for a in ("--set", s)]
    out = tmp_path / "out"
    assert main(["run", study, "--scale", "smoke", "--seeds", "1", "--workers", "1", *sets, "--out", str(out)]) == 0
    results = json.loads((out / study / "results.json").read_text())  # strict JSON: finite numbers or null
    assert results["study"] == study and results["seeds"] == [0]
    assert (out / "report.html").exists()
