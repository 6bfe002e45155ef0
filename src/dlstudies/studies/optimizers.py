"""optimizers: which update rule brings report A's MLP to a fixed training loss first, and which
ends most accurate?

    dlstudies run optimizers            # ~2.5 min at default scale on 2 cores

Report A (Task 1) trained a 36-20-10-5 tanh MLP in pattern mode (batch size 1, reshuffled every
epoch) with five update rules at lr 0.01, stopping when the mean epoch loss changed by less than
1e-4. Every rule here starts from the same initial weights for a given seed (paired design), and
all rules and seeds train at once in one stack. Literature: Kingma & Ba (2015) found Adam to reach
a lower training loss faster than SGD; LeCun et al. (1998, "Efficient BackProp") advise shuffling
so that consecutive samples come from different classes.

What is measured (METHOD.md §3): speed is time to a target — the epochs (and samples seen) until
the mean epoch training loss first reaches `target_loss`, a fixed setting chosen from pilot runs
so that every rule reaches it — and the area under the loss curve (`loss_auc`, the mean epoch loss
over the budget). Every member trains for `max_epochs` with nothing stopping it; report A's stop
rule (|Δ loss| < `tolerance`) is read off each loss history (exact: members are independent) and
its epochs, loss and accuracies are kept beside the equal-budget numbers, labelled as report A's
measure: they tell when a curve flattens, not how fast it falls. `converged` says the stop rule
fired within the budget, `still_improving` that the last 10% of epochs still lowered the loss.

Separation runs (`separation_epochs`, 0 turns them off) are a work unit of their own: each seed
trains again from its initial weights moved by a relative `separation_scale` (1e-7) in a random
direction, with the same sample order, in float64 (float32 cannot hold a 1e-7 relative change),
beside an unmoved twin; the distance between the two runs' parameters per epoch and its fitted
growth factor per epoch (`separation_rate`) say how far one seed's numbers are a property of the
rule rather than of that seed's particular trajectory (report A saw "highly different accuracies"
between runs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.stats import gmean

from dlstudies.analysis.claims import Claim, opening, sanity
from dlstudies.analysis.measures import effect_text, interval_text, sig, value_text
from dlstudies.analysis.separation import growth_factor, perturbed, relative_distances
from dlstudies.config import MAX_EPOCHS, ints, reals, require
from dlstudies.data import load_data
from dlstudies.data.base import subsample
from dlstudies.engine import ENGINES, StopRule, TrainSpec
from dlstudies.models.builders import ACTIVATIONS, build_members
from dlstudies.optim import OPTIMIZERS, OptSpec
from dlstudies.report import figures as fig
from dlstudies.studies.base import Study, StudyConfig, Unit, register
from dlstudies.studies.results import (describe_conditions, epochs_to, group_runs, loss_auc, main_table, p_text,
                                       pairwise_display, stop_epoch, still_improving)
from dlstudies.studies.training import divergence, image_mlp, member_dtype, split_probe

RULES = ("delta", "generalized-delta", "adagrad", "rmsprop", "adam")
# Read at max_epochs, the equal budget of every rule (the times to target before it).
METRICS = ("target_loss_epochs", "target_loss_samples", "loss_auc", "final_loss", "train_acc", "val_acc", "test_acc")
# Report A's reading: at the epoch its stop rule |Δ loss| < tolerance ends each run.
STOP_METRICS = ("stop_rule_epochs", "stop_rule_loss", "stop_rule_train_acc", "stop_rule_test_acc")
SEPARATION_METRICS = ("separation_rate", "separation_distance")
SPLITS = ("train", "val", "test")  # split_probe records each one's accuracy per epoch


@dataclass(frozen=True)
class Config(StudyConfig):
    data: str = "mnist1d36"
    hidden: tuple[int, ...] = (20, 10)
    activation: str = "tanh"
    rules: tuple[str, ...] = RULES
    lr: float = 0.01
    momentum: float = 0.1  # generalized-delta only
    tolerance: float = 1e-4  # report A's stop rule, read off each run's loss history
    max_epochs: int = 200  # every rule's equal budget (report A: at most 1000; see README's timings)
    batch_size: int = 1  # pattern mode
    n_train: int | None = None  # None: the whole training split
    seed_chunk: int = 10  # seeds per work unit; every rule of a block trains in one stack
    # Time to target: a fixed setting chosen from pilot runs on mnist1d36 (2 seeds, 1000 epochs): every
    # rule passes 1.25 within 34 epochs, while Adam at this lr never gets below 1.14 (ln 5 = 1.61 at the start).
    target_loss: float = field(default=1.25, metadata={"rule": reals(0, 1e3, lo_open=True)})
    separation_epochs: int = field(default=30, metadata={"rule": ints(0, MAX_EPOCHS)})  # 0: no separation runs
    separation_scale: float = field(default=1e-7, metadata={"rule": reals(0, 1, lo_open=True, hi_open=True)})

    def validate(self):
        for rule in self.rules:
            OPTIMIZERS.get(rule)
        ACTIVATIONS.get(self.activation)
        require(len(self.rules) > 0, "rules must name at least one optimizer")
        require(self.max_epochs >= 2, f"max_epochs must be >= 2, got {self.max_epochs}")


PRESETS = {"smoke": Config(max_epochs=15, n_train=300, target_loss=1.55, separation_epochs=3),
           "default": Config(), "paper": Config(max_epochs=1000)}


def grid(cfg: Config) -> list[tuple]:
    return [(("part", "rules"),)] + ([(("part", "separation"),)] if cfg.separation_epochs else [])


def _setup(cfg: Config, unit: Unit, dtype: torch.dtype | None = None):
    data = subsample(load_data(cfg.data, unit.runtime.data_dir), cfg.n_train)
    return data, dtype or member_dtype(unit), image_mlp(data, cfg.hidden, ACTIVATIONS.get(cfg.activation))


def _opts(cfg: Config, seeds: list[int]) -> list[OptSpec]:
    return [OptSpec(r, cfg.lr, cfg.momentum if r == "generalized-delta" else 0.0) for r in cfg.rules for _ in seeds]


def run_unit(unit: Unit) -> dict:
    return PARTS[unit.param("part", "rules")](unit)


# ---- the rules: one fit of every rule and seed for the whole budget ----------------------------

def _rules_unit(unit: Unit) -> dict:
    cfg: Config = unit.config
    data, dtype, builder = _setup(cfg, unit)
    seeds = list(unit.seeds)
    members = [m for _ in cfg.rules for m in build_members(builder, seeds, dtype)]  # same init per seed
    spec = TrainSpec(StopRule(cfg.max_epochs), cfg.batch_size, probes=(split_probe(data),), device=unit.runtime.device)
    fit = ENGINES.get(unit.runtime.engine)(members, _opts(cfg, seeds), data.train.x, data.train.y, spec,
                                           seeds * len(cfg.rules))
    names = [(r, s) for r in cfg.rules for s in seeds]
    runs = [_run(cfg, fit, i, rule, seed, len(data.train)) for i, (rule, seed) in enumerate(names)]
    return {"runs": runs, "ordering": _ordering(cfg, unit, data, builder, dtype)}


def _run(cfg: Config, fit, i: int, rule: str, seed: int, n_train: int) -> dict:
    loss = fit.history["loss"][i, :fit.epochs[i]]
    diverged, last = bool(fit.diverged[i]), int(fit.epochs[i]) - 1
    e, converged = stop_epoch(loss, cfg.tolerance)
    to_target = epochs_to(loss, cfg.target_loss)
    metrics = {"target_loss_epochs": to_target, "target_loss_samples": None if to_target is None else to_target * n_train,
               "loss_auc": None if diverged else loss_auc(loss), "final_loss": float(loss[-1]),
               **{f"{s}_acc": float(fit.history[f"{s}_acc"][i, last]) for s in SPLITS},
               "stop_rule_epochs": e + 1, "stop_rule_loss": float(loss[e]),
               **{f"stop_rule_{s}_acc": float(fit.history[f"{s}_acc"][i, e]) for s in ("train", "test")}}
    if diverged:  # the weights are broken: they measure nothing (the run is counted as diverged)
        metrics = dict.fromkeys(metrics)
    return {"condition": rule, "seed": seed, "metrics": metrics,
            "curves": {"loss": loss.tolist(), **{f"{s}_acc": fit.history[f"{s}_acc"][i, :len(loss)].tolist() for s in SPLITS}},
            "confusion": {s: fit.history[f"{s}_confusion"][i, last].tolist() for s in ("train", "test")},
            "converged": converged and not diverged, "still_improving": still_improving(loss), **divergence(fit, i)}


def _ordering(cfg: Config, unit: Unit, data, builder, dtype) -> dict:
    """Report A, Figure 2: one epoch's per-sample loss with samples in class order vs shuffled."""
    seeds = list(unit.seeds)
    members = build_members(builder, seeds, dtype)
    opts = _opts(cfg, seeds)[:len(seeds)]  # the first rule's
    traces = {}
    for order in ("class", "shuffle"):
        spec = TrainSpec(StopRule(1), 1, order=order, trace_epochs=1, device=unit.runtime.device)
        fit = ENGINES.get(unit.runtime.engine)(members, opts, data.train.x, data.train.y, spec, seeds)
        traces[order] = {str(s): fit.trace["loss"][i].tolist() for i, s in enumerate(seeds)}
    counts = torch.bincount(data.train.y, minlength=data.n_classes).tolist()
    return {"rule": cfg.rules[0], "traces": traces, "class_counts": counts}


# ---- separation: the same seeds from initial weights 1e-7 apart --------------------------------

def _separation_unit(unit: Unit) -> dict:
    cfg: Config = unit.config
    data, dtype, builder = _setup(cfg, unit, torch.float64)  # 1e-7 relative is below float32's resolution
    seeds = list(unit.seeds)
    members = [m for _ in cfg.rules for m in build_members(builder, seeds, dtype)]
    twins = perturbed(members, seeds * len(cfg.rules), cfg.separation_scale)
    spec = TrainSpec(StopRule(cfg.separation_epochs), cfg.batch_size, snapshot_every=1, device=unit.runtime.device)
    fit = ENGINES.get(unit.runtime.engine)(members + twins, _opts(cfg, seeds) * 2, data.train.x, data.train.y, spec,
                                           seeds * len(cfg.rules) * 2)
    half = len(members)
    dist = relative_distances(fit.snapshots[:half], fit.snapshots[half:])
    names = [(r, s) for r in cfg.rules for s in seeds]
    return {"runs": [], "separation": [
        {"condition": rule, "seed": seed, "distance": dist[i].tolist(),
         "metrics": {"separation_rate": growth_factor(dist[i]), "separation_distance": _final(dist[i])},
         "diverged": bool(fit.diverged[i] or fit.diverged[half + i])} for i, (rule, seed) in enumerate(names)]}


def _final(d: np.ndarray) -> float | None:
    return float(d[-1]) if np.isfinite(d[-1]) else None


PARTS = {"rules": _rules_unit, "separation": _separation_unit}


# ---- summary: the standard one, plus report A's reading, pairwise tables, ordering, separation ---

def summarize(cfg: Config, unit_results: list[dict], standard: dict) -> dict:
    conditions = standard["conditions"]
    ordering = _merge_ordering(unit_results)
    separation = _separation_table(unit_results)
    tables = [main_table(conditions, STOP_METRICS, "Report A's measure: each run read at the epoch its stop rule "
                         f"|Δ loss| < {sig(cfg.tolerance)} fires (or at the budget)"),
              *[pairwise_display(conditions, m, "rules") for m in ("target_loss_epochs", "test_acc")],
              main_table(ordering["table"], ("within_epoch_loss_std",), f"One epoch of {ordering['rule']}, per seed: "
                         "standard deviation of the per-sample loss")]
    if separation:
        tables.append(main_table(separation, SEPARATION_METRICS, f"Separation: runs from initial weights "
                                 f"{sig(cfg.separation_scale)} apart (relative), over {cfg.separation_epochs} epochs"))
    return {"table": main_table(conditions, METRICS, f"Per rule, over seeds, at the equal budget of {cfg.max_epochs} "
                                f"epochs (times to the target loss {sig(cfg.target_loss)} before it)"),
            "tables": tables, "ordering": ordering, "ordering_std": ordering["table"], "separation": separation,
            "sanity": _sanity(cfg, separation), "captions": CAPTIONS}


def _merge_ordering(unit_results: list[dict]) -> dict:
    first = next(r["ordering"] for r in unit_results if "ordering" in r)
    merged = {"rule": first["rule"], "class_counts": first["class_counts"], "traces": {"class": {}, "shuffle": {}}}
    for r in unit_results:
        for order, by_seed in r.get("ordering", {}).get("traces", {}).items():
            merged["traces"][order].update(by_seed)
    # A trace that diverged holds None (NaN here); its seed says nothing about the swings.
    std = lambda t: float(np.std(np.asarray([np.nan if v is None else v for v in t], dtype=float)))  # noqa: E731
    merged["table"] = describe_conditions({order: {"runs": [
        {"seed": int(s), "metrics": {"within_epoch_loss_std": std(t)}} for s, t in sorted(by_seed.items(), key=lambda kv: int(kv[0]))]}
        for order, by_seed in merged["traces"].items()}, ("within_epoch_loss_std",))
    return merged


ALL_RULES = "all rules"
SEPARATED = 0.01  # relative distance beyond which two runs of a seed count as separated


def _separation_table(unit_results: list[dict]) -> dict:
    """{rule: {"runs": [...]}} of the separation runs, plus "all rules": per seed, the geometric
    mean over rules of the growth factor (one number per seed, so n counts seeds)."""
    table = group_runs({"runs": r["separation"]} for r in unit_results if "separation" in r)
    if not table:
        return {}
    by_seed: dict[int, list] = {}
    for c in table.values():
        for r in c["runs"]:
            by_seed.setdefault(r["seed"], []).append(r["metrics"]["separation_rate"])
    table[ALL_RULES] = {"runs": [{"seed": s, "metrics": {"separation_rate": _geo(v), "separation_distance": None}}
                                 for s, v in sorted(by_seed.items())]}
    return describe_conditions(table, SEPARATION_METRICS)


def _geo(values: list) -> float | None:
    x = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    return float(gmean(x)) if len(x) and np.all(np.isfinite(x) & (x > 0)) else None


def _sanity(cfg: Config, separation: dict) -> list[dict]:
    starts = [r["distance"][0] for name, c in separation.items() if name != ALL_RULES for r in c["runs"]]
    if not starts:
        return []
    ok = bool(np.allclose(starts, cfg.separation_scale, rtol=1e-6))
    return [sanity("separation runs start at the set distance", ok,
                   f"initial relative distance {sig(min(starts))} to {sig(max(starts))}, set {sig(cfg.separation_scale)}")]


# ---- claims and answer ---------------------------------------------------------------------------

def claims(cfg: Config) -> list[Claim]:
    out = [Claim("Adam reaches a given training loss in fewer epochs than plain SGD (the delta rule) at the same "
                 "learning rate", "Kingma & Ba 2015", "target_loss_epochs", "directional", a="adam", b="delta",
                 direction="lower"),
           Claim("Samples in class order make the per-sample loss swing within an epoch as the model chases each "
                 "class in turn; shuffling removes the swings", "LeCun et al. 1998 (Efficient BackProp); report A, "
                 "Task 1, Figure 2", "within_epoch_loss_std", "directional", a="class", b="shuffle",
                 direction="higher", table="ordering_std")]
    if cfg.separation_epochs:
        out.append(Claim("The models are very sensitive to their initial weights: a tiny change of them grows "
                         "during training", "report A, Task 1", "separation_rate", "threshold", a=ALL_RULES,
                         threshold=1.0, direction="higher", table="separation"))
    return out


def answer(cfg: Config, results: dict) -> str:
    main = results["checks"][0]
    head = f"{opening(main['verdict'], yes_no=False)} {_main_sentence(cfg, main)}"
    parts = [head, _unreached_sentence(results["conditions"]),
             _best_sentence(results, "target_loss_epochs", "reached the target loss first", "epochs"),
             _best_sentence(results, "test_acc", f"was most accurate on test data after {cfg.max_epochs} epochs", ""),
             _convergence_sentence(results), _separation_sentence(cfg, results.get("separation") or {})]
    return " ".join(p for p in parts if p)


def _main_sentence(cfg: Config, check: dict) -> str:
    if check["effect"] is None:
        return f"Adam against the delta rule on epochs to the training loss {sig(cfg.target_loss)}: {check['evidence']}."
    m = "target_loss_epochs"
    return (f"Adam reached the training loss {sig(cfg.target_loss)} in {effect_text(m, check['effect'])} the epochs of "
            f"the delta rule {interval_text(m, check['ci95'], effect=True)} (geometric mean over {check['n']} seeds, "
            f"sign-flip p = {p_text(check['p_value'])}; Kingma & Ba 2015 found Adam faster than SGD).")


def _unreached_sentence(conditions: dict) -> str:
    """Runs that never reached the target (and did not diverge): their time is missing, not long."""
    never = {c: sum(r["metrics"]["target_loss_epochs"] is None and not r.get("diverged") for r in v["runs"])
             for c, v in conditions.items()}
    parts = [f"{c} {k} of {len(conditions[c]['runs'])}" for c, k in never.items() if k]
    return (f"Runs that never reached the target loss within the budget (left out of its times): {', '.join(parts)}."
            if parts else "")


def _ranked(conditions: dict, metric: str) -> list[str]:
    measured = [c for c, v in conditions.items() if v["summary"][metric]["value"] is not None]
    lower = metric != "test_acc"
    return sorted(measured, key=lambda c: conditions[c]["summary"][metric]["value"] * (1 if lower else -1))


def _best_sentence(results: dict, metric: str, what: str, unit: str) -> str:
    conditions = results["conditions"]
    order = _ranked(conditions, metric)
    if len(order) < 2:
        return ""
    best, second = order[:2]
    row = _pair_row(results, metric, best, second)
    value = value_text(metric, conditions[best]["summary"][metric]["value"])
    return (f"{best} {what} ({value}{' ' + unit if unit else ''}); against the runner-up {second}: "
            f"{effect_text(metric, row['effect'], row['log'])} {interval_text(metric, row['ci95'], effect=True, log=row['log'])}"
            f", Holm-adjusted p = {p_text(row['p_holm'])}.")


def _pair_row(results: dict, metric: str, a: str, b: str) -> dict:
    """The all-pairs row of a vs b, turned round when the table holds b vs a."""
    table = next(t for t in results["tables"] if t.get("pairs") and t["pairs"][0]["metric"] == metric)
    row = next(r for r in table["pairs"] if {r["a"], r["b"]} == {a, b})
    if row["a"] == a or row["effect"] is None:
        return row
    flip = (lambda v: None if v is None else 1 / v) if row["log"] else (lambda v: None if v is None else -v)
    return {**row, "effect": flip(row["effect"]), "ci95": [flip(row["ci95"][1]), flip(row["ci95"][0])]}


def _convergence_sentence(results: dict) -> str:
    conv = results["convergence"]
    runs = sum(c["runs"] for c in conv.values())
    still = [f"{c} {v['still_improving']} of {v['runs']}" for c, v in conv.items() if v["still_improving"]]
    lost = [f"{c} {v['diverged']} of {v['runs']}" for c, v in conv.items() if v["diverged"]]
    text = (f"Runs still improving at the budget's end (the loss fell > 1% over its last 10%): {', '.join(still)}; "
            "their accuracies are the budget's, not the rules' limits." if still else
            f"None of the {runs} runs was still improving at the budget's end.")
    return text + (f" Diverged: {', '.join(lost)}." if lost else "")


def _separation_sentence(cfg: Config, separation: dict) -> str:
    rules = {c: v["summary"] for c, v in separation.items() if c != ALL_RULES}
    if not rules or all(s["separation_rate"]["value"] is None for s in rules.values()):
        return ""
    rates = ", ".join(f"{c} {effect_text('separation_rate', s['separation_rate']['value'])}" for c, s in rules.items())
    apart = [c for c, s in rules.items() if (s["separation_distance"]["value"] or 0) > SEPARATED]
    kept = [c for c in rules if c not in apart]
    text = (f"Two runs of a seed from initial weights {sig(cfg.separation_scale)} apart drift apart per epoch by "
            f"{rates} (geometric means over seeds).")
    if apart:
        text += (f" Within {cfg.separation_epochs} epochs {', '.join(apart)} end more than {SEPARATED:.0%} of the "
                 "weights' norm apart: there one seed's numbers are one draw of a chaotic trajectory and only the "
                 "spread over seeds says what the rule does")
    if kept:
        text += (f"{';' if apart else ''} {', '.join(kept)} stay within {SEPARATED:.0%}: a seed's numbers follow from "
                 "its initial weights, and runs differ because their initial weights do")
    return text + "."


def setup(cfg: Config) -> str:
    hidden = "-".join(map(str, cfg.hidden))
    return (f"data {cfg.data}, MLP with hidden layers {hidden} ({cfg.activation}), lr {sig(cfg.lr)}, pattern mode (batch {cfg.batch_size}), "
            f"{cfg.max_epochs} epochs for every rule; target loss {sig(cfg.target_loss)}; report A's stop rule "
            f"|Δ loss| < {sig(cfg.tolerance)} read off each run; separation {cfg.separation_epochs} epochs")


# ---- figures -------------------------------------------------------------------------------------

CAPTIONS = {
    "loss_curves.png": "Mean training loss per epoch for each rule (mean and 95% band over seeds).",
    "all_rules.png": "All rules overlaid; the dashed line is the target loss that times to target are read at.",
    "ordering.png": "One epoch's per-sample loss with samples in class order vs shuffled: in class order the loss "
                    "jumps at each class boundary (dotted) as the model chases the new class.",
    "separation.png": "Distance between two runs of the same seed whose initial weights differ by 1e-7 (relative), "
                      "per epoch and rule, on a log scale: a straight rise is exponential separation.",
}


def figures(results: dict, folder) -> list[str]:
    conditions = results["conditions"]
    target = (results.get("config") or {}).get("target_loss")
    files = _loss_panels(conditions, folder) + _overlay(conditions, folder, target)
    files += fig.confusion_grid(conditions, folder, width=3.0) + _ordering_figure(results["ordering"], folder)
    return files + (_separation_figure(results["separation"], folder) if results.get("separation") else [])


def _loss_panels(conditions: dict, folder) -> list[str]:
    colors = fig.condition_colors(conditions)
    f, axes = fig.panels(len(conditions), sharey=True)
    for i, (ax, (name, c)) in enumerate(zip(axes, conditions.items())):
        fig.curve_band(ax, [r["curves"]["loss"] for r in c["runs"]], label=name, color=colors[name], log_y=True)
        ax.set(title=name, xlabel="epoch")
        if i % fig.PANELS_PER_ROW == 0:
            ax.set_ylabel("mean training loss (cross-entropy)")
    return fig.save(f, folder, "loss_curves")


def _overlay(conditions: dict, folder, target: float | None) -> list[str]:
    f, ax = fig.new_figure(size=(6, 4))
    fig.condition_bands(ax, conditions, "loss", log_y=True)
    if target is not None:
        ax.axhline(target, color="0.3", lw=0.9, ls="--", label=f"target loss {sig(target)}")
    ax.set(xlabel="epoch", ylabel="mean training loss (cross-entropy)", title="All rules, mean and 95% band over seeds")
    ax.legend()
    return fig.save(f, folder, "all_rules")


def _ordering_figure(ordering: dict, folder) -> list[str]:
    f, ax = fig.new_figure(size=(8, 3.5))
    for order, label in (("class", "samples in class order"), ("shuffle", "shuffled")):
        fig.curve_band(ax, list(ordering["traces"][order].values()), label=label)
    for edge in np.cumsum(ordering["class_counts"])[:-1]:
        ax.axvline(edge, color="0.6", lw=0.8, ls=":")
    ax.set(xlabel="sample within the first epoch", ylabel="per-sample loss",
           title=f"One epoch of {ordering['rule']}: class order vs shuffled (dotted: class boundaries)")
    ax.legend()
    return fig.save(f, folder, "ordering")


def _separation_figure(separation: dict, folder) -> list[str]:
    per_rule = {name: c for name, c in separation.items() if name != ALL_RULES}
    f, ax = fig.new_figure(size=(6, 4))
    colors = fig.condition_colors(per_rule)
    for name, c in per_rule.items():
        curves = [r["distance"] for r in c["runs"]]
        fig.curve_band(ax, curves, label=name, color=colors[name], x=np.arange(len(curves[0])), log_y=True)
    ax.set(xlabel="epoch", ylabel="‖θ − θ'‖ / ‖θ(0)‖", title="Two runs of a seed, initial weights 1e-7 apart")
    ax.legend()
    return fig.save(f, folder, "separation")


STUDY = register(Study(
    "optimizers", "Which update rule brings report A's 36-20-10-5 MLP to a fixed training loss first, and which "
    "ends most accurate?", PRESETS, run_unit, summarize, figures, runtime_s="~2.5 min",
    seeds={"smoke": 3, "default": 10, "paper": 10}, grid=grid, metrics=METRICS + STOP_METRICS, claims=claims,
    answer=answer, setup=setup))
