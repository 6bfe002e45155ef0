"""One self-contained report.html (and summary.md) rendered from an output folder's results.json files.

The report only renders saved data: it never trains and never redraws; figures are the files a
study wrote, embedded as data URIs so the page can be mailed or archived as one file.
"""

from __future__ import annotations

import base64
import json
import math
import re
from importlib import resources
from pathlib import Path

import jinja2

import dlstudies
from dlstudies.errors import UsageError
from dlstudies.report.captions import caption
from dlstudies.store import write_atomic
from dlstudies.studies import ORDER

MIME = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
MISSING = "—"
# Metrics whose values are fractions in [0, 1] read better as percentages.
PERCENT_METRIC = re.compile(r"(^|_)acc(uracy)?(_|$)")


# ---- numbers -------------------------------------------------------------------------------

def sig3(x) -> str:
    """A number to 3 significant digits, without exponent between 1e-3 and 1e6; text passes through."""
    if x is None or isinstance(x, str):
        return MISSING if x is None else x
    if isinstance(x, (bool, int)):
        return str(x)
    x = float(x)
    if not math.isfinite(x):
        return MISSING
    if x == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(x)))
    return f"{x:.{max(0, 2 - magnitude)}f}" if -3 <= magnitude < 6 else f"{x:.2e}"


def percent(x) -> str:
    return MISSING if x is None else sig3(100.0 * float(x)) + "%"


def number_format(metric: str):
    """The formatter for a metric's values (and differences): percent for accuracies."""
    return percent if PERCENT_METRIC.search(metric) else sig3


def p_value(p) -> str:
    return MISSING if p is None else ("< 0.001" if p < 1e-3 else f"{p:.3g}")


def elapsed(seconds) -> str:
    if seconds is None:
        return MISSING
    minutes, s = divmod(float(seconds), 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {s:02.0f} s" if minutes else f"{s:.1f} s"


def _ci(fmt, ci) -> str:
    lo, hi = (ci or [None, None])[:2]
    return f"[{fmt(lo)}, {fmt(hi)}]"


# ---- one study's view ----------------------------------------------------------------------

def _figure_names(names: list[str]) -> list[str]:
    """The figures to embed: an SVG twin of a listed PNG is left out (same picture twice)."""
    pngs = {Path(n).with_suffix("") for n in names if Path(n).suffix == ".png"}
    return [n for n in names if not (Path(n).suffix == ".svg" and Path(n).with_suffix("") in pngs)]


def _figure(folder: Path, name: str, study: str, captions: dict | None) -> dict:
    path = folder / name
    mime = MIME.get(path.suffix.lower())
    found = {"name": name, "caption": caption(study, name, captions), "uri": None}
    if mime is None or not path.is_file():
        return found
    return {**found, "uri": f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"}


def _cell(fmt, s: dict) -> str:
    """'mean [lo, hi]': the mean with its own interval; a bare number where the interval is a point
    (a parameter count, a depth: the same in every seed)."""
    mean, (lo, hi) = s.get("mean"), (s.get("ci95") or [None, None])[:2]
    if mean is None or lo is None or hi is None or fmt(lo) == fmt(hi) == fmt(mean):
        return str(int(mean)) if isinstance(mean, float) and mean.is_integer() and fmt is sig3 else fmt(mean)
    if fmt is percent:  # a fraction's interval stays inside [0, 1]
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    return f"{fmt(mean)} {_ci(fmt, [lo, hi])}"


def summary_table(conditions: dict) -> dict | None:
    """One condition x metric table of means with their 95% CIs, from conditions[*].summary."""
    metrics = list(dict.fromkeys(m for c in conditions.values() for m in c.get("summary", {})))
    if not metrics:
        return None
    rows = [[name] + [_cell(number_format(m), c["summary"][m]) if m in c.get("summary", {}) else MISSING for m in metrics]
            for name, c in conditions.items()]
    return {"title": "Per condition: mean [95% CI] over seeds", "columns": ["condition", *metrics], "rows": rows}


def per_seed_table(conditions: dict) -> dict | None:
    """Every run's own numbers: condition, seed, metrics, and whether it converged or diverged."""
    runs = [(name, r) for name, c in conditions.items() for r in c.get("runs", [])]
    metrics = list(dict.fromkeys(m for _, r in runs for m in r.get("metrics", {})))
    if not runs or not metrics:
        return None
    flags = [f for f in ("converged", "diverged") if any(f in r for _, r in runs)]
    rows = [[name, r.get("seed", MISSING)] + [number_format(m)(r["metrics"].get(m)) for m in metrics]
            + [_flag(r.get(f)) for f in flags] for name, r in runs]
    return {"title": "Per seed", "columns": ["condition", "seed", *metrics, *flags], "rows": rows}


NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?")


def _numbers(t: dict) -> set[float]:
    """The numbers a table shows, to three significant digits (its first column names the rows)."""
    cells = [str(v) for row in t.get("rows", []) for v in row[1:]]
    return {float(f"{float(x):.3g}") for cell in cells for x in NUMBER.findall(cell)}


def open_and_collapsed(r: dict, conditions: dict) -> tuple[dict | None, list[dict]]:
    """(the table shown open, the tables collapsed below it) with every number on the page once: the
    study's `table` opens; without one, a condition x metric table from the summaries opens unless the
    study's own tables already show all its numbers (then the first of those opens); any table whose
    numbers all appear in a table before it is left out."""
    own = ([_table(r["table"])] if r.get("table") else []) + [_table(t) for t in r.get("tables", [])]
    summary = None if r.get("table") else summary_table(conditions)
    if summary is not None and own and _numbers(summary) <= set().union(*map(_numbers, own)):
        summary = None
    shown, seen = [], set()
    for t in ([summary] if summary else []) + own:
        numbers = _numbers(t)
        if shown and numbers and numbers <= seen:
            continue
        shown.append(t)
        seen |= numbers
    shown = [_upright(t) for t in shown]
    return (shown[0] if shown else None), shown[1:]


def _upright(t: dict, most: int = 4) -> dict:
    """A table of one row and more than `most` numbers as one row per column: a study of one condition
    reads down its metrics instead of scrolling sideways."""
    rows, columns = t.get("rows", []), t.get("columns", [])
    if len(rows) != 1 or len(columns) <= most + 1 or len(rows[0]) != len(columns):
        return t
    return {**t, "columns": ["metric", f"{columns[0]} {rows[0][0]}"], "rows": [[c, v] for c, v in zip(columns[1:], rows[0][1:])]}


def _flag(value) -> str:
    return MISSING if value is None else ("yes" if value else "no")


def _table(t: dict) -> dict:
    return {"title": t.get("title", ""), "columns": t.get("columns", []),
            "rows": [[sig3(v) for v in row] for row in t.get("rows", [])]}


def _comparison(c: dict) -> dict:
    fmt = number_format(c.get("metric", ""))
    wins = ", ".join(f"{k} {v}" for k, v in (c.get("wins") or {}).items())
    return {"metric": c.get("metric", ""), "a": c.get("a", ""), "b": c.get("b", ""),
            "diff": fmt(c.get("diff")), "ci": _ci(fmt, c.get("ci95")), "p": p_value(c.get("p_value")),
            "test": c.get("test", MISSING), "n": c.get("n", MISSING), "wins": wins or MISSING}


def _diverged(conditions: dict) -> list[dict]:
    return [{"condition": name, "seed": run.get("seed", MISSING), "epoch": run.get("diverged_epoch", MISSING)}
            for name, c in conditions.items() for run in c.get("runs", []) if run.get("diverged")]


VERDICTS = ("supported", "contradicted", "inconclusive")


def _check(c: dict) -> dict:
    """A check in three colours with its effect and interval; an older check's `passed` reads as
    supported or contradicted. The page shows its evidence, which states the effect, interval and test
    in the claim's own units (2.84x, -0.9 pp); the effect and test apart only for a check without one."""
    verdict = c.get("verdict") or ("supported" if c.get("passed") else "contradicted")
    verdict = verdict if verdict in VERDICTS else "inconclusive"
    fmt = number_format(c.get("metric", "") or "")
    effect = " ".join(x for x in (fmt(c.get("effect")) if c.get("effect") is not None else "",
                                  _ci(fmt, c.get("ci95")) if c.get("ci95") else "") if x)
    test = ", ".join(x for x in (c.get("test"), f"p {p_value(c.get('p_value'))}" if c.get("p_value") is not None else "",
                                 f"n = {c['n']}" if c.get("n") is not None else "") if x)
    return {**_claim(c), "result": verdict, "css": verdict, "effect_text": effect, "test_text": test}


def _claim(c: dict) -> dict:
    return {"claim": c.get("claim", ""), "source": c.get("source", ""), "evidence": c.get("evidence", "")}


def _sanity(c: dict) -> dict:
    return {"name": c.get("name", ""), "ok": bool(c.get("ok")), "evidence": c.get("evidence", "")}


def checks_summary(checks: list[dict]) -> str:
    """'3 / 1 / 0': how many checks are supported / contradicted / inconclusive."""
    if not checks:
        return MISSING
    results = [_check(c)["result"] for c in checks]
    return " / ".join(str(results.count(v)) for v in VERDICTS)


def setup_line(r: dict) -> str:
    """The study's one-line setup, or one pieced together from its config (data, budget, seeds)."""
    if r.get("setup"):
        return str(r["setup"])
    cfg = r.get("config", {})
    parts = [f"data {cfg['data']}" if cfg.get("data") else "",
             f"{cfg['optimizer']}" + (f" lr {cfg['lr']:g}" if cfg.get("lr") else "") if cfg.get("optimizer") else "",
             f"up to {cfg['max_epochs']} epochs" if cfg.get("max_epochs") else "",
             f"batch {cfg['batch_size']}" if cfg.get("batch_size") else "",
             f"{len(r.get('seeds', []))} seeds" if r.get("seeds") else ""]
    return " · ".join(p for p in parts if p)


def study_view(folder: Path, r: dict) -> dict:
    """Everything the template shows for one study, formatted; tolerant of missing optional fields."""
    conditions, checks = r.get("conditions", {}), r.get("checks", [])
    study_id = str(r.get("study", folder.name))
    main, more = open_and_collapsed(r, conditions)
    return {"id": study_id, "anchor": re.sub(r"[^a-z0-9-]", "-", study_id.lower()),
            "question": r.get("question", ""), "answer": r.get("answer", ""), "scale": r.get("scale"),
            "setup": setup_line(r), "seeds": ", ".join(map(str, r.get("seeds", []))),
            "figures": [_figure(folder, n, study_id, r.get("captions")) for n in _figure_names(r.get("figures", []))],
            "main_table": main, "tables": more, "per_seed": per_seed_table(conditions),
            "comparisons": [_comparison(c) for c in r.get("comparisons", [])],
            "checks": [_check(c) for c in checks], "checks_passed": checks_summary(checks),
            "sanity": [_sanity(c) for c in r.get("sanity", [])], "diverged": _diverged(conditions),
            "command": r.get("command"), "config": json.dumps(r.get("config", {}), indent=2, sort_keys=True),
            "environment": r.get("environment", {}), "elapsed": elapsed(r.get("elapsed_s"))}


# ---- the folder ----------------------------------------------------------------------------

def load_results(out_dir) -> list[tuple[Path, dict]]:
    """(study folder, results) for every out_dir/*/results.json, in the order of STUDIES.md."""
    rank = {name: i for i, name in enumerate(ORDER)}
    files = sorted(Path(out_dir).glob("*/results.json"), key=lambda f: (rank.get(f.parent.name, len(rank)), f.parent.name))
    if not files:
        raise UsageError(f"no results in '{out_dir}'; run `dlstudies run STUDY --out {out_dir}` first")
    return [(f.parent, _read_json(f)) for f in files]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UsageError(f"'{path}' is not valid JSON ({e}); rerun its study") from e


def _template() -> jinja2.Template:
    text = resources.files("dlstudies.report").joinpath("templates/report.html").read_text(encoding="utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    return env.from_string(text)


def _md_cell(text) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def summary_markdown(studies: list[dict]) -> str:
    """The report's top table in Markdown: one row per study."""
    lines = ["| study | question | answer | supported / contradicted / inconclusive |", "|---|---|---|---|"]
    lines += [f"| {_md_cell(s['id'])} | {_md_cell(s['question'])} | {_md_cell(s['answer'])} "
              f"| {_md_cell(s['checks_passed'])} |" for s in studies]
    return "\n".join(lines) + "\n"


def _page(results: list[tuple[Path, dict]]) -> tuple[str, list[dict]]:
    """(the report page, the study views) of (study folder, results) pairs."""
    studies = [study_view(folder, r) for folder, r in results]
    total = sum(float(r.get("elapsed_s") or 0.0) for _, r in results)
    return _template().render(studies=studies, version=dlstudies.__version__, total_elapsed=elapsed(total)), studies


def study_sections(results: list[tuple[Path, dict]]) -> list[str]:
    """Each study's <section> of the report page, as the page shows it (for Jupyter's inline view)."""
    return re.findall(r"<section\b.*?</section>", _page(results)[0], flags=re.S)


def render_report(out_dir) -> Path:
    """Write out_dir/report.html and out_dir/summary.md from the studies' results; return the html path."""
    out_dir = Path(out_dir)
    html, studies = _page(load_results(out_dir))
    write_atomic(out_dir / "report.html", html)
    write_atomic(out_dir / "summary.md", summary_markdown(studies))
    return out_dir / "report.html"
