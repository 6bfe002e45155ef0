"""Claims as data, judged by one evaluator (METHOD.md §1).

A study declares what the literature (or a report) claims as `Claim` records; `evaluate` turns a
claim and the study's runs into a verdict — supported, contradicted or inconclusive — with the
effect, its 95% CI, the test, p, n and one line of evidence in the reader's units.

Runs are read from a table of results.json: `{condition: {"runs": [{"seed", "metrics", ...}]}}`
(the key `results[claim.table]`, by default the study's "conditions"). Runs pair by seed. A run
without a finite value (diverged, or not measured) is counted and named in the evidence, never
silently dropped; a verdict resting on fewer than `min_n` finite seeds is inconclusive
("n too small"): exact paired tests cannot reach p < 0.05 with few seeds (2/2^5 = 0.0625).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
import numpy as np

from dlstudies.analysis import stats
from dlstudies.analysis.measures import effect_text, interval_text, value_text
from dlstudies.registry import Registry

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE)
MIN_N = 8
KINDS: Registry = Registry("claim kind")


@dataclass(frozen=True)
class Claim:
    """One claim: `kind` is directional (a vs b), threshold (a's metric vs `threshold`), trend
    (the metric against `x` across conditions, per seed) or equivalence (a - b, or a alone,
    within ±`margin`). `direction` is the claimed side: "higher" or "lower"."""

    claim: str
    source: str
    metric: str
    kind: str
    a: str = ""
    b: str = ""
    direction: str = "higher"
    threshold: float | None = None
    margin: float | None = None
    x: str = ""
    conditions: tuple[str, ...] = ()
    table: str = "conditions"
    min_n: int = MIN_N

    def __post_init__(self):
        KINDS.get(self.kind)
        if self.direction not in ("higher", "lower"):
            raise ValueError(f"direction must be 'higher' or 'lower', got {self.direction!r}")

    @property
    def sign(self) -> int:
        return 1 if self.direction == "higher" else -1


def evaluate(claim: Claim, results: dict) -> dict:
    """The claim's record for results.json's "checks": the claim itself, then what was measured."""
    table = results.get(claim.table) or {}
    missing = [c for c in (claim.a, claim.b, *claim.conditions) if c and c not in table]
    head = {k: v for k, v in asdict(claim).items() if k in ("claim", "source", "metric", "kind", "direction",
                                                             "threshold", "margin", "a", "b", "x")}
    if missing:
        return {**head, **_undecided(f"not run here: {', '.join(missing)}")}
    return {**head, **KINDS.get(claim.kind)(claim, table)}


def evaluate_all(claims, results: dict) -> list[dict]:
    return [evaluate(c, results) for c in claims]


def counts(checks: list[dict]) -> dict:
    """{"supported": k, "contradicted": k, "inconclusive": k} over a study's checks."""
    return {v: sum(c.get("verdict") == v for c in checks) for v in VERDICTS}


def _undecided(why: str, **measured) -> dict:
    base = {"verdict": INCONCLUSIVE, "effect": None, "ci95": [None, None], "test": "none", "p_value": None,
            "n": 0, "n_missing": 0, "evidence": why}
    return {**base, **measured}


def _by_seed(table: dict, condition: str, metric: str) -> dict:
    return {r["seed"]: r["metrics"].get(metric) for r in table[condition]["runs"]}


def aligned(table: dict, a: str, b: str, metric: str) -> tuple[list, list, int]:
    """Values of a and b on the seeds both ran, and how many of those pairs lack a finite value."""
    va, vb = _by_seed(table, a, metric), _by_seed(table, b, metric)
    seeds = sorted(set(va) & set(vb))
    x, y = [va[s] for s in seeds], [vb[s] for s in seeds]
    finite = len(stats._pairs(x, y)[0])
    return x, y, len(seeds) - finite


def _side(ci, sign: int, at: float = 0.0, reach: bool = False) -> str:
    """Which side of `at` the interval lies wholly on, relative to the claimed sign. With `reach`
    (a threshold claim: "at least 0.95"), an interval that touches the threshold from the claimed
    side supports it: a memorised training set sits at accuracy 1.0 exactly."""
    lo, hi = ci
    if lo is None or hi is None:
        return INCONCLUSIVE
    if sign > 0 and (lo >= at if reach else lo > at) or sign < 0 and (hi <= at if reach else hi < at):
        return SUPPORTED
    if (hi < at if sign > 0 else lo > at):
        return CONTRADICTED
    return INCONCLUSIVE


def _small(n: int, claim: Claim, verdict: str) -> tuple[str, str]:
    if n < claim.min_n:
        return INCONCLUSIVE, f" — inconclusive (n too small: {n} < {claim.min_n} finite seeds)"
    return verdict, (" — the interval holds no effect either way: inconclusive" if verdict == INCONCLUSIVE else "")


def _missing_note(n_missing: int) -> str:
    return f"; {n_missing} run(s) without a finite value (diverged or not measured) excluded" if n_missing else ""


@KINDS.register("directional")
def _directional(claim: Claim, table: dict) -> dict:
    x, y, n_missing = aligned(table, claim.a, claim.b, claim.metric)
    e = stats.paired_effect(x, y, claim.metric)
    at = 1.0 if e["log"] else 0.0
    verdict, note = _small(e["n"], claim, _side(e["ci95"], claim.sign, at))
    op = "/" if e["log"] else "−"
    evidence = (f"{claim.metric}, {claim.a} {op} {claim.b}: {effect_text(claim.metric, e['effect'], e['log'])} "
                f"{interval_text(claim.metric, e['ci95'], effect=True, log=e['log'])}, {e['test']} "
                f"p = {_p(e['p_value'])}, n = {e['n']}{_missing_note(n_missing)}{note}")
    return {"verdict": verdict, "effect": e["effect"], "ci95": e["ci95"], "test": e["test"], "p_value": e["p_value"],
            "n": e["n"], "n_missing": n_missing, "scale": "ratio" if e["log"] else "difference", "evidence": evidence}


@KINDS.register("threshold")
def _threshold(claim: Claim, table: dict) -> dict:
    values = list(_by_seed(table, claim.a, claim.metric).values())
    s = stats.describe(values, claim.metric)
    verdict, note = _small(s["n"], claim, _side(s["ci95"], claim.sign, claim.threshold, reach=True))
    rel = "≥" if claim.sign > 0 else "≤"
    evidence = (f"{claim.metric} of {claim.a}: {s['statistic']} {value_text(claim.metric, s['value'])} "
                f"{interval_text(claim.metric, s['ci95'])} ({s['interval']}) against the claimed "
                f"{rel} {value_text(claim.metric, claim.threshold)}, n = {s['n']}{_missing_note(s['n_missing'])}{note}")
    return {"verdict": verdict, "effect": s["value"], "ci95": s["ci95"], "test": f"{s['interval']} interval",
            "p_value": None, "n": s["n"], "n_missing": s["n_missing"], "evidence": evidence}


@KINDS.register("trend")
def _trend(claim: Claim, table: dict) -> dict:
    names = claim.conditions or tuple(table)
    points: dict[int, list] = {}
    n_missing = 0
    for name in names:
        for r in table[name]["runs"]:
            x, y = r["metrics"].get(claim.x), r["metrics"].get(claim.metric)
            if _finite(x) and _finite(y):
                points.setdefault(r["seed"], []).append((float(x), float(y)))
            else:
                n_missing += 1
    rhos = stats.rank_trends(points) if points else np.array([])
    rho = rhos[np.isfinite(rhos)]
    ci = stats.bootstrap_ci(rho)
    p = stats.sign_flip_test(rho)
    verdict, note = _small(len(rho), claim, _side(ci, claim.sign))
    evidence = (f"Spearman ρ of {claim.metric} with {claim.x}, per seed over {len(names)} conditions: mean "
                f"{_rho(np.mean(rho) if len(rho) else None)} [{_rho(ci[0])}, {_rho(ci[1])}] (bootstrap), "
                f"sign-flip p = {_p(p)}, n = {len(rho)} seeds{_missing_note(n_missing)}{note}")
    return {"verdict": verdict, "effect": stats._plain(np.mean(rho)) if len(rho) else None, "ci95": ci,
            "test": "per-seed Spearman, sign-flip", "p_value": p, "n": int(len(rho)), "n_missing": n_missing,
            "evidence": evidence}


@KINDS.register("equivalence")
def _equivalence(claim: Claim, table: dict) -> dict:
    if claim.b:
        x, y, n_missing = aligned(table, claim.a, claim.b, claim.metric)
        a_x, b_x = stats._pairs(x, y)
        d, what = a_x - b_x, f"{claim.a} − {claim.b}"
    else:
        values = list(_by_seed(table, claim.a, claim.metric).values())
        d, what = stats._finite(values), claim.a
        n_missing = len(values) - len(d)
    t = stats.tost(d, claim.margin)
    verdict = INCONCLUSIVE
    if t["ci90"][0] is not None and -claim.margin < t["ci90"][0] and t["ci90"][1] < claim.margin:
        verdict = SUPPORTED
    elif t["ci95"][0] is not None and (t["ci95"][0] > claim.margin or t["ci95"][1] < -claim.margin):
        verdict = CONTRADICTED
    verdict, note = _small(len(d), claim, verdict)
    m = claim.metric
    evidence = (f"{m}, {what}: {effect_text(m, float(np.mean(d)) if len(d) else None, False)}, 90% CI "
                f"{interval_text(m, t['ci90'], effect=True, log=False)} against ±{effect_text(m, claim.margin, False).lstrip('+')}"
                f" (TOST p = {_p(t['p_value'])}), n = {len(d)}{_missing_note(n_missing)}{note}")
    return {"verdict": verdict, "effect": stats._plain(np.mean(d)) if len(d) else None, "ci95": t["ci95"],
            "ci90": t["ci90"], "test": "TOST (paired t)" if claim.b else "TOST (t)", "p_value": t["p_value"],
            "n": int(len(d)), "n_missing": n_missing, "evidence": evidence}


@KINDS.register("correlation")
def _correlation(claim: Claim, table: dict) -> dict:
    """Spearman's rho of the metric with run metric `x` across the runs of condition a, each run an
    independent draw (its own seed); bootstrap CI over runs, permutation p (scipy)."""
    pairs = [(r["metrics"].get(claim.x), r["metrics"].get(claim.metric)) for r in table[claim.a]["runs"]]
    kept = np.array([(float(u), float(v)) for u, v in pairs if _finite(u) and _finite(v)]).reshape(-1, 2)
    n, n_missing = len(kept), len(pairs) - len(kept)
    rho, ci, p = stats.rank_correlation(kept[:, 0], kept[:, 1])
    verdict, note = _small(n, claim, _side(ci, claim.sign))
    evidence = (f"Spearman ρ of {claim.metric} with {claim.x} over {n} runs of {claim.a}: {_rho(rho)} "
                f"[{_rho(ci[0])}, {_rho(ci[1])}] (bootstrap), permutation p = {_p(p)}{_missing_note(n_missing)}{note}")
    return {"verdict": verdict, "effect": rho, "ci95": ci, "test": "Spearman, permutation", "p_value": p, "n": n,
            "n_missing": n_missing, "evidence": evidence}


def _finite(v) -> bool:
    return v is not None and np.isfinite(float(v))


def _p(p) -> str:
    return "n/a" if p is None else ("< 0.001" if p < 1e-3 else f"{p:.2g}")


def _rho(r) -> str:
    return "n/a" if r is None else f"{r:+.2f}"


# ---- what a study's answer opens with --------------------------------------------------------

OPENINGS = {SUPPORTED: "Yes", CONTRADICTED: "No", INCONCLUSIVE: "Inconclusive"}
CLAIM_OPENINGS = {SUPPORTED: "Supported", CONTRADICTED: "Contradicted", INCONCLUSIVE: "Inconclusive"}


def opening(verdict: str, yes_no: bool = True) -> str:
    """'Yes —' / 'No —' / 'Inconclusive —' for a yes/no question, else 'Supported —' etc."""
    return f"{(OPENINGS if yes_no else CLAIM_OPENINGS)[verdict]} —"


def sanity(name: str, ok: bool, evidence: str) -> dict:
    """An internal invariant (equal parameter counts, eigenvalue count = P): not a claim, no source."""
    return {"name": str(name), "ok": bool(ok), "evidence": str(evidence)}

