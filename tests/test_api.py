"""The Python API: dlstudies.run / dlstudies.load and the Results tables, figures and inline HTML."""

import json
import re
import math

import matplotlib.figure
import numpy as np
import pandas as pd
import pytest

import dlstudies
import dlstudies.runner
from dlstudies.errors import UsageError
from dlstudies.tables import read_table

TINY = {"max_epochs": 3, "n_train": 60}  # a run of seconds: the smoke preset cut short


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The README's first call, at smoke scale with two seeds: (Results, output folder)."""
    out = tmp_path_factory.mktemp("api") / "demo"
    return dlstudies.run("optimizers", scale="smoke", seeds=2, out=str(out)), out


@pytest.fixture
def no_drawing(monkeypatch):
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda self, *a, **k: None)


def _json(out, study="optimizers"):
    return json.loads((out / study / "results.json").read_text())


def test_runs_frame_holds_every_scalar_metric_of_every_run(demo):
    r, out = demo
    saved = _json(out)
    expected = [(c, run["seed"], m, v, run.get("converged"), run["diverged"])
                for c, cond in saved["conditions"].items() for run in cond["runs"] for m, v in run["metrics"].items()]
    assert list(r.runs.columns) == ["study", "condition", "seed", "metric", "value", "converged", "diverged"]
    assert r.runs.shape == (len(expected), 7) and set(r.runs.study) == {"optimizers"}
    got = list(r.runs[["condition", "seed", "metric", "value", "converged", "diverged"]].itertuples(index=False, name=None))
    for row, want in zip(got, expected):
        assert row[:3] == want[:3] and row[4:] == want[4:]
        assert (math.isnan(row[3]) and want[3] is None) or row[3] == pytest.approx(want[3], rel=0, abs=0)
    assert sorted(set(r.runs.seed)) == [0, 1]


def test_claims_frame_has_one_row_per_check(demo):
    r, out = demo
    checks = _json(out)["checks"]
    assert r.claims.claim.tolist() == [c["claim"] for c in checks]
    assert r.claims.source.tolist() == [c["source"] for c in checks]
    assert len(r.claims.verdict.tolist()) == len(checks)


def test_load_rebuilds_the_same_frames_from_the_folder_or_the_study_folder(demo):
    r, out = demo
    for path in (out, out / "optimizers", str(out)):
        loaded = dlstudies.load(path)
        pd.testing.assert_frame_equal(loaded.runs, r.runs)
        pd.testing.assert_frame_equal(loaded.claims, r.claims)
        assert loaded.runs.equals(r.runs) and loaded.studies == ["optimizers"]


def test_csv_files_beside_results_json_are_the_same_tables(demo):
    r, out = demo
    pd.testing.assert_frame_equal(read_table(out / "optimizers" / "runs.csv", "runs"), r.runs)
    pd.testing.assert_frame_equal(read_table(out / "optimizers" / "claims.csv", "claims"), r.claims)


def test_results_json_records_the_engine_path_of_every_unit(demo):
    _, out = demo
    units = [json.loads(p.read_text()) for p in (out / "optimizers" / "units").glob("*.json")]
    assert units and all(u["engine_path"] == "kernel" for u in units)  # report A's MLP takes the compiled kernel
    assert _json(out)["engine_paths"] == {"kernel": len(units)}


def test_curves_are_long_format_and_match_results_json(demo):
    r, out = demo
    loss = r.curves("loss")
    assert list(loss.columns) == ["study", "condition", "seed", "step", "value"]
    run = _json(out)["conditions"]["adam"]["runs"][1]
    mine = loss[(loss.condition == "adam") & (loss.seed == run["seed"])]
    assert mine.step.tolist() == list(range(len(run["curves"]["loss"])))
    assert mine.value.tolist() == run["curves"]["loss"]
    with pytest.raises(UsageError, match="unknown curve 'nope'; valid: loss"):
        r.curves("nope")


def test_figure_is_drawn_again_as_a_matplotlib_figure(demo):
    r, _ = demo
    fig = r.figure("loss_curves")
    assert isinstance(fig, matplotlib.figure.Figure) and fig.axes and fig.axes[0].lines
    assert isinstance(r.figure("optimizers/all_rules.png"), matplotlib.figure.Figure)
    with pytest.raises(UsageError, match="unknown figure 'nope'; valid: optimizers/loss_curves"):
        r.figure("nope")


def test_repr_html_is_the_studys_report_section(demo):
    r, _ = demo
    html = r._repr_html_()
    assert html.startswith('<section id="optimizers">') and html.endswith("</section>")
    assert r.answers["optimizers"].split("(")[0] in html and "data:image/png;base64," in html
    assert "<body" not in html  # only the section: a page's style would restyle the notebook


def test_second_run_resumes_every_unit(demo, monkeypatch, no_drawing):
    r, out = demo
    monkeypatch.setattr(dlstudies.runner, "execute_unit", lambda unit: pytest.fail("a stored unit trained again"))
    again = dlstudies.run(["optimizers"], scale="smoke", seeds=2, out=out)
    pd.testing.assert_frame_equal(again.runs, r.runs)


def test_seed_ids_and_an_overrides_dict(tmp_path, no_drawing):
    r = dlstudies.run("optimizers", scale="smoke", seeds=np.array([3, 5]), out=tmp_path, overrides={**TINY, "rules": ("delta", "adam")})
    saved = _json(tmp_path)
    assert saved["seeds"] == [3, 5] and saved["config"]["max_epochs"] == 3 and saved["config"]["rules"] == ["delta", "adam"]
    assert sorted(set(r.runs.seed)) == [3, 5] and set(r.runs.condition) == {"delta", "adam"}
    assert saved["command"].startswith("dlstudies.run('optimizers', scale='smoke', seeds=(3, 5)")


@pytest.mark.parametrize("kwargs, message", [
    ({"seeds": 0}, "--seeds must be >= 1, got 0"),
    ({"seeds": [1, 1]}, "a list of distinct seed ids >= 0, got [1, 1]"),
    ({"seeds": "two"}, "seeds must be a count >= 1 or a list"),
    ({"seeds": [0, -1]}, "a list of distinct seed ids >= 0"),
    ({"seeds": []}, "a list of distinct seed ids >= 0, got []"),
    ({"overrides": {"nope": 1}}, "unknown --set key 'nope' for optimizers; valid keys:"),
    ({"overrides": "lr=1"}, "overrides must be a dict"),
    ({"engine": "fast"}, "unknown engine 'fast'; valid: batched, reference"),
    ({"device": "tpu"}, "unknown device 'tpu'; valid: cpu, cuda"),
    ({"scale": "huge"}, "unknown scale 'huge'; valid: smoke, default, paper"),
])
def test_bad_input_is_a_usage_error_before_anything_is_written(tmp_path, kwargs, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        dlstudies.run("optimizers", out=tmp_path / "out", **{"scale": "smoke", **kwargs})
    assert not (tmp_path / "out").exists()


def test_several_studies_in_order_and_claims_in_the_new_record_form(demo, tmp_path):
    # A second study's results.json written by hand, with checks as verdict records: both read in
    # the order of STUDIES.md, whatever the folder names' order.
    import shutil
    _, out = demo
    shutil.copytree(out / "optimizers", tmp_path / "optimizers")
    claim = {"claim": "random labels are memorised", "source": "Zhang et al. 2017", "kind": "threshold",
             "metric": "train_acc", "verdict": "supported", "effect": 0.99, "ci95": [0.98, 1.0], "test": "t",
             "p_value": None, "n": 10, "evidence": "train acc 99%", "passed": True}
    run = {"seed": 4, "metrics": {"train_acc": 0.99, "note": "text is not a metric"}, "curves": {}, "diverged": False}
    (tmp_path / "random-labels").mkdir()
    (tmp_path / "random-labels" / "results.json").write_text(json.dumps(
        {"study": "random-labels", "answer": "Yes", "conditions": {"random": {"runs": [run]}}, "checks": [claim]}))
    both = dlstudies.load(tmp_path)
    assert both.studies == ["optimizers", "random-labels"]
    last = both.claims.iloc[-1]
    assert (last.study, last.verdict, last.kind, last.metric, last.effect, last.ci_low, last.ci_high, last.n) == \
           ("random-labels", "supported", "threshold", "train_acc", 0.99, 0.98, 1.0, 10)
    assert math.isnan(last.p_value)
    tail = both.runs[both.runs.study == "random-labels"]
    assert tail.metric.tolist() == ["train_acc"] and tail.converged.isna().all() and tail.seed.tolist() == [4]
    assert both["random-labels"].studies == ["random-labels"]
    assert both._repr_html_().count("<section") == 2


def test_load_of_a_folder_without_results_says_so(tmp_path):
    with pytest.raises(UsageError, match="no results in"):
        dlstudies.load(tmp_path)
    with pytest.raises(UsageError, match="no such folder"):
        dlstudies.load(tmp_path / "missing")
