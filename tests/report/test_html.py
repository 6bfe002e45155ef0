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
                        tables=[{"title": "Summary table", "columns": ["rule", "epochs"], "rows": [["adam", 120.0]]}])
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


def _one_study(tmp_path, **extra):
    folder = tmp_path / "optimizers"
    folder.mkdir(parents=True)
    (folder / "loss_curves.png").write_bytes(TINY_PNG)
    (folder / "results.json").write_text(json.dumps(_results("optimizers", "Q?", "Yes — adam. More.", **extra)))
    return render_report(tmp_path).read_text()


def test_verdicts_in_three_colours_with_counts_and_sanity_small(tmp_path):
    checks = [{"claim": c, "source": "S", "kind": "direction", "metric": "test_acc", "verdict": v, "effect": 0.031,
               "ci95": [0.01, 0.05], "test": "sign-flip permutation", "p_value": 0.03, "n": 5,
               "evidence": "" if c == "four" else f"test_acc, a − b: +3.1 pp [+1.0 pp, +5.0 pp] ({c})"}
              for c, v in (("one", "supported"), ("two", "contradicted"), ("three", "inconclusive"), ("four", "supported"))]
    html = _one_study(tmp_path, checks=checks, sanity=[{"name": "rows sum to one", "ok": True, "evidence": "ok"}])
    table = html[html.index('class="checks"'):]
    table = table[: table.index("</table>")]
    for verdict, k in (("supported", 2), ("contradicted", 1), ("inconclusive", 1)):
        assert table.count(f'<td class="{verdict}">{verdict}</td>') == k
    assert table.count("+3.1 pp [+1.0 pp, +5.0 pp]") == 3  # the evidence states the effect once per check
    assert table.count("3.10% [1.00%, 5.00%]") == 1 and "p 0.03" in table  # the check without evidence
    assert "2 / 1 / 1" in html and "supported / contradicted / inconclusive" in html
    assert 'class="sanity"' in html and "rows sum to one" in html


def test_one_main_table_open_and_the_rest_collapsed(tmp_path):
    main = {"title": "Per rule", "columns": ["rule", "test accuracy"], "rows": [["adam", "97% [95%, 99%]"]]}
    other = {"title": "Extra numbers", "columns": ["x"], "rows": [[1.5]]}
    html = _one_study(tmp_path, table=main, tables=[other], setup="digits36 · MLP 36-20-10-5 · adam 1e-3 · 30 epochs · 3 seeds")
    section = html[html.index('<section id="optimizers">'):]
    assert section.index("digits36 · MLP 36-20-10-5") < section.index("Question.")  # the setup under the title
    first_details = section.index("<details")
    assert section.index("Per rule") < first_details  # the main table is open
    for collapsed in ("Extra numbers", "Per seed", "Paired comparisons"):
        assert section.index(collapsed) > first_details, collapsed
    assert section.count("<caption>Per rule</caption>") == 1


def test_without_a_main_table_one_condition_by_metric_table_from_the_summaries(tmp_path):
    html = _one_study(tmp_path)
    main = html[html.index('class="main"'):]
    main = main[: main.index("</table>")]
    assert "<th>test_acc</th>" in main and "<th>epochs</th>" in main
    assert "43.0% [41.0%, 45.0%]" in main
    assert '<td class="num">64</td>' in main  # 64 ± 0.02: the interval vanishes at three digits


def test_a_point_interval_shows_the_number_alone():
    from dlstudies.report.html import summary_table

    table = summary_table({"a": {"summary": {"n_params": {"mean": 571, "ci95": [571, 571]},
                                             "test_acc": {"mean": 0.99, "ci95": [0.97, 1.02]}}}})
    assert table["rows"] == [["a", "571", "99.0% [97.0%, 100%]"]]  # and a fraction's interval stops at 100%


def test_every_figure_gets_a_caption_that_is_not_its_file_name(tmp_path):
    html = _one_study(tmp_path, figures=["loss_curves.png"])
    caption = re.search(r"<figcaption>(.*?)</figcaption>", html, re.S).group(1)
    assert "loss_curves" not in caption and "shared log scale" in caption
    given = _one_study(tmp_path / "b", figures=["loss_curves.png"], captions={"loss_curves.png": "What the study says."})
    assert "<figcaption>What the study says.</figcaption>" in given


def test_about_names_report_a_and_report_b(tmp_path):
    html = _one_study(tmp_path)
    about = html[html.index('id="about"'):]
    about = about[: about.index("</p>")]
    assert "Report A" in about and "36-feature, 5-class" in about
    assert "Report B" in about and "1-D functions and MNIST" in about


def _numbers_on_the_page(html: str) -> list[str]:
    """Every 'mean [low, high]' cell of the open and collapsed tables (per-seed numbers aside)."""
    html = html[: html.index('class="per-seed"')] if 'class="per-seed"' in html else html
    return re.findall(r'<td class="num">([^<\[]+ \[[^<]*\])</td>', html)


def test_every_number_once_when_the_study_declares_no_table(tmp_path):
    """The study's own per-condition table repeats the summaries: it opens, and no second table repeats it."""
    own = {"title": "Per rule, over seeds", "columns": ["rule", "test_acc", "epochs"],
           "rows": [["adam", "43.0% [41.0%, 45.0%]", "64"], ["delta", "41.0% [39.0%, 43.0%]", "—"]]}
    extra = {"title": "Wall time", "columns": ["rule", "seconds"], "rows": [["adam", "12.5"]]}
    html = _one_study(tmp_path, tables=[own, own, extra])
    cells = _numbers_on_the_page(html)
    assert sorted(cells) == ["41.0% [39.0%, 43.0%]", "43.0% [41.0%, 45.0%]"]  # each once
    section = html[html.index('<section id="optimizers">'):]
    assert section.count("Per rule, over seeds") == 1 and "Wall time" in section
    assert section.index("Per rule, over seeds") < section.index("<details")  # the study's table is the open one
    assert "Per condition: mean [95% CI]" not in section  # no table built from the summaries beside it


def test_a_collapsed_table_that_repeats_the_open_one_is_left_out(tmp_path):
    repeat = {"title": "Same numbers again", "columns": ["rule", "test accuracy"], "rows": [["adam", "43.0% [41.0%, 45.0%]"]]}
    html = _one_study(tmp_path, tables=[repeat])
    assert "Same numbers again" not in html and _numbers_on_the_page(html).count("43.0% [41.0%, 45.0%]") == 1


def test_a_wide_table_of_one_condition_reads_down_its_metrics(tmp_path):
    wide = {"title": "One model", "columns": ["condition", *(f"m{i}" for i in range(8))],
            "rows": [["adam", *(f"{i}.5 [{i}.0, {i + 1}.0]" for i in range(8))]]}
    html = _one_study(tmp_path, table=wide)
    main = html[html.index('class="main"'):]
    main = main[: main.index("</table>")]
    assert "<th>metric</th><th>condition adam</th>" in main and main.count("<tr>") == 9
    assert '<td class="name">m3</td><td class="num">3.5 [3.0, 4.0]</td>' in main
