"""optimizers: which update rule trains report A's MLP fastest and best?

    dlstudies run optimizers            # ~1-2 min at default scale on 2 cores

Report A (Task 1) trained a 36-20-10-5 tanh MLP in pattern mode (batch size 1, reshuffled every
epoch) with five update rules at lr 0.01, stopping when the mean epoch loss changed by less than
1e-4. Every rule here starts from the same initial weights for a given seed (paired design), and
all rules and seeds train at once in one stack. Literature: Kingma & Ba (2015) found Adam to reach
lower training loss faster than SGD and adaptive rules before it; LeCun et al. (1998, "Efficient
BackProp") advise shuffling so that consecutive samples come from different classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dlstudies.analysis import stats
from dlstudies.config import Runtime, require
from dlstudies.data import load_data
from dlstudies.data.base import subsample
from dlstudies.engine import ENGINES, StopRule, TrainSpec
from dlstudies.engine.evaluate import accuracy_probe
from dlstudies.models.builders import ACTIVATIONS, build_members
from dlstudies.optim import OPTIMIZERS, OptSpec
from dlstudies.report import figures as fig
from dlstudies.studies.base import Study, Unit, register, seed_chunks
from dlstudies.studies.results import (
    add_summaries,
    compare,
    diverged_runs,
    fmt_ci,
    fmt_num,
    group_runs,
    median_diff_sentence,
    summary_table,
)
from dlstudies.studies.training import classifier_runs, image_mlp, member_dtype

RULES = ("delta", "generalized-delta", "adagrad", "rmsprop", "adam")
METRICS = ("epochs", "final_loss", "train_acc", "val_acc", "test_acc")


@dataclass(frozen=True)
class Config:
    data: str = "digits36"
    hidden: tuple[int, ...] = (20, 10)
    activation: str = "tanh"
    rules: tuple[str, ...] = RULES
    lr: float = 0.01
    momentum: float = 0.1  # generalized-delta only
    tolerance: float = 1e-4
    max_epochs: int = 1000
    batch_size: int = 1  # pattern mode
    n_train: int | None = None  # None: the whole training split
    seed_chunk: int = 10  # seeds per work unit; every rule of a chunk trains in one stack

    def __post_init__(self):
        for rule in self.rules:
            OPTIMIZERS.get(rule)
        ACTIVATIONS.get(self.activation)
        require(self.lr > 0, f"lr must be > 0, got {self.lr}")
        require(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}")
        require(self.tolerance >= 0, f"tolerance must be >= 0, got {self.tolerance}")
        require(self.max_epochs >= 1, f"max_epochs must be >= 1, got {self.max_epochs}")
        require(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        require(len(self.rules) > 0, "rules must name at least one optimizer")


PRESETS = {"smoke": Config(max_epochs=15, n_train=300), "default": Config(), "paper": Config()}


def units(cfg: Config, seeds: tuple[int, ...], runtime: Runtime) -> list[Unit]:
    return [Unit("optimizers", cfg, chunk, runtime) for chunk in seed_chunks(seeds, cfg.seed_chunk)]


def _setup(cfg: Config, unit: Unit):
    data = subsample(load_data(cfg.data, unit.runtime.data_dir), cfg.n_train)
    return data, member_dtype(unit), image_mlp(data, cfg.hidden, ACTIVATIONS.get(cfg.activation))


def run_unit(unit: Unit) -> dict:
    cfg: Config = unit.config
    data, dtype, builder = _setup(cfg, unit)
    seeds = list(unit.seeds)
    members = [m for _ in cfg.rules for m in build_members(builder, seeds, dtype)]  # same init per seed
    opts = [OptSpec(r, cfg.lr, cfg.momentum if r == "generalized-delta" else 0.0) for r in cfg.rules for _ in seeds]
    probes = (accuracy_probe("train_acc", data.train.x, data.train.y), accuracy_probe("val_acc", data.val.x, data.val.y))
    spec = TrainSpec(StopRule(cfg.max_epochs, cfg.tolerance), cfg.batch_size, probes=probes, device=unit.runtime.device)
    fit = ENGINES.get(unit.runtime.engine)(members, opts, data.train.x, data.train.y, spec, seeds * len(cfg.rules))
    runs = classifier_runs(fit, data, [(r, s) for r in cfg.rules for s in seeds])
    return {"runs": runs, "ordering": _ordering(cfg, unit, data, builder, dtype)}


def _ordering(cfg: Config, unit: Unit, data, builder, dtype) -> dict:
    """Report A, Figure 2: one epoch's per-sample loss with samples in class order vs shuffled."""
    seeds = list(unit.seeds)
    members = build_members(builder, seeds, dtype)
    opts = [OptSpec(cfg.rules[0], cfg.lr, cfg.momentum if cfg.rules[0] == "generalized-delta" else 0.0)] * len(seeds)
    traces = {}
    for order in ("class", "shuffle"):
        spec = TrainSpec(StopRule(1), 1, order=order, trace_epochs=1, device=unit.runtime.device)
        fit = ENGINES.get(unit.runtime.engine)(members, opts, data.train.x, data.train.y, spec, seeds)
        traces[order] = {str(s): fit.trace["loss"][i].tolist() for i, s in enumerate(seeds)}
    counts = torch.bincount(data.train.y, minlength=data.n_classes).tolist()
    return {"rule": cfg.rules[0], "traces": traces, "class_counts": counts}


def summarize(cfg: Config, unit_results: list[dict]) -> dict:
    conditions = add_summaries(group_runs(unit_results), METRICS)
    comparisons = (compare(conditions, "epochs", higher_is_better=False)
                   + compare(conditions, "final_loss", higher_is_better=False)
                   + compare(conditions, "test_acc", higher_is_better=True))
    ordering = _merge_ordering(unit_results)
    return {"conditions": conditions, "comparisons": comparisons, "ordering": ordering,
            "checks": _checks(conditions, ordering), "answer": _answer(conditions),
            "tables": [summary_table("Per rule, over seeds", conditions, METRICS, percent=METRICS[2:])],
            "diverged": diverged_runs(conditions)}


def _merge_ordering(unit_results: list[dict]) -> dict:
    merged = {"rule": unit_results[0]["ordering"]["rule"], "class_counts": unit_results[0]["ordering"]["class_counts"],
              "traces": {"class": {}, "shuffle": {}}}
    for r in unit_results:
        for order, by_seed in r["ordering"]["traces"].items():
            merged["traces"][order].update(by_seed)
    return merged


def _answer(conditions: dict) -> str:
    measured = {c: v for c, v in conditions.items() if v["summary"]["test_acc"]["mean"] is not None}
    if not measured:
        return "Every run diverged: no rule can be compared at these settings."
    best = max(measured, key=lambda c: measured[c]["summary"]["test_acc"]["mean"])
    s = conditions[best]["summary"]["test_acc"]
    text = f"{best} had the highest test accuracy ({fmt_ci(s, percent=True)} over {s['n']} seeds)"
    return text + "; " + _epochs_sentence(measured) + _diverged_clause(conditions) + "."


def _diverged_clause(conditions: dict) -> str:
    lost = {c: sum(bool(r.get("diverged")) for r in v["runs"]) for c, v in conditions.items()}
    parts = [f"{c} in {n} of {len(conditions[c]['runs'])} seeds" for c, n in lost.items() if n]
    return f"; diverged: {', '.join(parts)}" if parts else ""


def _epochs_sentence(conditions: dict) -> str:
    median = {c: conditions[c]["summary"]["epochs"]["median"] for c in conditions}
    fastest, slowest = min(median, key=median.get), max(median, key=median.get)
    if median[fastest] == median[slowest]:
        return f"every rule ran a median of {median[fastest]:.0f} epochs"
    cmp = compare(conditions, "epochs", False, [(fastest, slowest)])[0]
    return (f"{fastest} stopped in the fewest epochs, fewer than {slowest} in {cmp['wins'][fastest]} of {cmp['n']} "
            f"seeds; " + median_diff_sentence(cmp, "epochs"))


def _checks(conditions: dict, ordering: dict) -> list[dict]:
    checks = []
    if {"adam", "delta"} <= set(conditions):
        cmp = compare(conditions, "final_loss", False, [("adam", "delta")])[0]
        checks.append(stats.check(
            "Adam reaches a lower training loss than plain SGD (the delta rule) at the same learning rate",
            "Kingma & Ba 2015", cmp["n"] > 0 and cmp["wins"]["adam"] > cmp["wins"]["delta"],
            f"final loss adam - delta: mean {fmt_num(cmp['diff'])}, adam lower in {cmp['wins']['adam']} of "
            f"{cmp['n']} seeds where neither diverged"))
    return checks + [_ordering_check(ordering)]


def _ordering_check(ordering: dict) -> dict:
    # A trace that diverged holds None (NaN here); its seed cannot say anything about the swings.
    std = {order: {s: np.std(np.asarray(t, dtype=float)) for s, t in ordering["traces"][order].items()}
           for order in ("class", "shuffle")}
    gaps = np.array([std["class"][s] - std["shuffle"][s] for s in std["class"]])
    gaps = gaps[np.isfinite(gaps)]
    return stats.check(
        "Samples ordered by class make the per-sample loss swing as the model chases each class in turn; "
        "shuffling removes the swings",
        "LeCun et al. 1998 (Efficient BackProp); report A, Figure 2", bool(len(gaps) and np.mean(gaps > 0) > 0.5),
        f"within-epoch loss std, class order minus shuffled: larger in {int(np.sum(gaps > 0))} of {len(gaps)} seeds")


def figures(results: dict, folder) -> list[str]:
    conditions = results["conditions"]
    files = _loss_panels(conditions, folder) + _overlay(conditions, folder)
    files += fig.confusion_grid(conditions, folder, width=3.0) + _ordering_figure(results["ordering"], folder)
    return files


def _loss_panels(conditions: dict, folder) -> list[str]:
    colors = fig.condition_colors(conditions)
    f, axes = fig.new_figure(ncols=len(conditions), size=(3.2 * len(conditions), 3.0), sharey=True)
    for ax, (name, c) in zip(np.atleast_1d(axes), conditions.items()):
        fig.curve_band(ax, [r["curves"]["loss"] for r in c["runs"]], label=name, color=colors[name], log_y=True)
        ax.set(title=name, xlabel="epoch")
    np.atleast_1d(axes)[0].set_ylabel("mean training loss (cross-entropy)")
    return fig.save(f, folder, "loss_curves")


def _overlay(conditions: dict, folder) -> list[str]:
    f, ax = fig.new_figure(size=(6, 4))
    fig.condition_bands(ax, conditions, "loss", log_y=True)
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


STUDY = register(Study("optimizers", "Which update rule trains report A's 36-20-10-5 MLP fastest and to the best accuracy?",
                       PRESETS, run_unit, summarize, figures, units=units, runtime_s="~2 min"))
