"""The report: one self-contained page and a Markdown summary, rendered from results.json alone."""

import base64
import json
import re

import pytest

from dlstudies.errors import UsageError
from dlstudies.report import render_report
from dlstudies.report.html import number_format, sig3

# A 1x1 PNG: the report must embed whatever the study saved, byte for byte.
TINY_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def _summary(mean):
    return {"mean": mean, "std": 0.01, "ci95": [mean - 0.02, mean + 0.02], "n": 3, "median": mean}


def _results(study, question, answer, **extra):
    runs = [{"seed": s, "metrics": {"test_acc": 0.4 + s / 100}} for s in range(3)]
    return {"study": study, "question": question, "answer": answer, "scale": "smoke", "seeds": [0, 1, 2],
            "command": f"dlstudies run {study} --scale smoke --out out", "config": {"lr": 0.01, "epochs": 5},
            "conditions": {"adam": {"runs": runs, "summary": {"test_acc": _summary(0.43), "epochs": _summary(64.0)}},
                           "delta": {"runs": runs, "summary": {"test_acc": _summary(0.41)}}},
            "comparisons": [{"metric": "test_acc", "a": "adam", "b": "delta", "diff": 0.0123, "median_diff": 0.01,
                             "ci95": [-0.02, 0.04], "p_value": 0.5, "test": "wilcoxon", "n": 3,
                             "wins": {"adam": 2, "delta": 1, "ties": 0}}],
            "checks": [], "figures": [], "elapsed_s": 12.34,
            "environment": {"dlstudies": "0.1.0", "torch": "2.13.0", "threads": 1}, **extra}


@pytest.fixture
def out_dir(tmp_path):
    a = tmp_path / "optimizers"
    a.mkdir()
    (a / "loss_curves.png").write_bytes(TINY_PNG)
    (a / "loss_curves.svg").write_text("<svg/>")
    diverged = _results("optimizers", "Which update rule <converges> fastest?", "Adam, by 12 epochs (p = 0.03).",
                        figures=["loss_curves.png", "loss_curves.svg"],
                        checks=[{"claim": "Adam converges in fewer epochs than SGD", "source": "Kingma & Ba 2015",
                                 "passed": True, "evidence": "64 vs 120 epochs"},
                                {"claim": "Momentum helps", "source": "Rumelhart 1986", "passed": False,
                                 "evidence": "no difference | p = 0.8"}],
                        tables=[{"title": "Summary table", "columns": ["rule", "epochs"], "rows": [["adam", 64.0]]}])
    diverged["conditions"]["delta"]["runs"][1].update(diverged=True, diverged_epoch=7)
    (a / "results.json").write_text(json.dumps(diverged))
    b = tmp_path / "normalization"
    b.mkdir()
    (b / "results.json").write_text(json.dumps(_results("normalization", "Does BatchNorm help?", "Yes, +2 points.")))
    return tmp_path


def test_report_is_self_contained_and_complete(out_dir):
    path = render_report(out_dir)
    html = path.read_text()
    assert path == out_dir / "report.html"
    for text in ["Which update rule &lt;converges&gt; fastest?", "Adam, by 12 epochs (p = 0.03).",
                 "Does BatchNorm help?", "Yes, +2 points.", "dlstudies run optimizers --scale smoke --out out",
                 "Summary table", "Kingma &amp; Ba 2015", "64 vs 120 epochs", "Diverged runs", "&#34;lr&#34;: 0.01"]:
        assert text in html, text
    assert f"data:image/png;base64,{base64.b64encode(TINY_PNG).decode()}" in html
    assert html.count("<img ") == 1  # the SVG twin of the PNG is not embedded twice
    assert all(src.startswith("data:") for src in re.findall(r'src="([^"]*)"', html))
    assert "<script" not in html and "http" not in html


def test_report_tables(out_dir):
    html = render_report(out_dir).read_text()
    checks = html[html.index('class="checks"'):]
    checks = checks[: checks.index("</table>")]
    assert checks.count('class="supported"') == 1 and checks.count('class="contradicted"') == 1
    assert "43.0%" in html and "[41.0%, 45.0%]" in html  # accuracies as percentages
    assert "1.23%" in html and "adam 2, delta 1, ties 0" in html  # the paired comparison
    assert "12.3 s" in html


def test_summary_markdown_has_one_row_per_study(out_dir):
    render_report(out_dir)
    lines = (out_dir / "summary.md").read_text().strip().splitlines()
    assert len(lines) == 2 + 2
    # STUDIES.md order (optimizers before normalization), not alphabetical
    assert lines[2].startswith("| optimizers | Which update rule")
    assert lines[3].startswith("| normalization | Does BatchNorm help? | Yes, +2 points. |")
    assert "1 / 1 / 0" in lines[2]  # supported / contradicted / inconclusive
    assert not [p for p in out_dir.iterdir() if p.name.endswith(".tmp")]


def test_empty_dir_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no results in"):
        render_report(tmp_path)


def test_bad_json_is_a_usage_error(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "results.json").write_text("{")
    with pytest.raises(UsageError, match="not valid JSON"):
        render_report(tmp_path)


@pytest.mark.parametrize("x, text", [(None, "—"), (0.0, "0"), (1.2345, "1.23"), (64.0, "64.0"), (1234.5, "1234"),
                                     (0.000123, "1.23e-04"), (12, "12"), (float("nan"), "—"), ("adam", "adam")])
def test_sig3(x, text):
    assert sig3(x) == text


def test_number_format_by_metric_name():
    assert number_format("test_acc")(0.5) == "50.0%" and number_format("val_accuracy")(1.0) == "100%"
    assert number_format("final_loss")(0.5) == "0.500" and number_format("accumulated")(0.5) == "0.500"
