"""normalization: does BatchNorm or LayerNorm train report A's MLP faster, and does it over-fit?

    dlstudies run normalization         # ~2 min at default scale on 2 cores

Report A (Task 2) put a normalization layer after each hidden linear layer of its 36-20-10-5 tanh
MLP (before tanh), trained with lr 0.001 and mini-batches, and stopped when the mean epoch loss
changed by less than 1e-5 or 1e-6 (or at 1000 epochs). It found BatchNorm faster to converge and
better "when trained for the same number of epochs", and asked whether normalization over-fits:
here the train-test accuracy gap answers that over seeds, paired (same initial weights and sample
order per seed). Literature: Ioffe & Szegedy (2015) report that BatchNorm reaches a given
training loss in far fewer steps; Ba et al. (2016) propose LayerNorm, which needs no batch.

One fit per normalization gives every stop threshold and every epoch budget at once: each member
trains for `max_epochs` with nothing stopping it, and the thresholds are read off its loss
history. This is exact, not an approximation: a member stopped by |Δ loss| < t at epoch e is that
same member at epoch e (same weights, same sample order, members independent of each other);
the tests hold it to a fit that stops by the rule. Optimizer Adam and batch size 32 are chosen
(report A does not say). BatchNorm cannot normalise a batch of one: a batch size of 1 is refused,
and when the training set would leave a last batch of one sample, that one sample is dropped for
every condition (so all stay paired) rather than merged into the batch before it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from dlstudies.analysis import stats
from dlstudies.config import Runtime, require
from dlstudies.data import load_data
from dlstudies.data.base import Split, subsample
from dlstudies.engine import StopRule, TrainSpec
from dlstudies.engine.evaluate import accuracy, confusion
from dlstudies.models.builders import ACTIVATIONS, NORMS, mlp
from dlstudies.optim import OPTIMIZERS, OptSpec
from dlstudies.report import figures as fig
from dlstudies.studies.base import Study, Unit, register, seed_chunks
from dlstudies.studies.results import (
    add_summaries,
    compare,
    diverged_runs,
    fmt_ci,
    fmt_diff,
    fmt_p,
    group_runs,
    median_diff_sentence,
    summary_table,
)
from dlstudies.studies.training import fit_members

NORMALIZATIONS = ("none", "batchnorm", "layernorm")
METRICS = ("epochs", "final_loss", "train_acc", "val_acc", "test_acc", "gap")
ACCURACIES = ("train_acc", "val_acc", "test_acc", "gap")


@dataclass(frozen=True)
class Config:
    data: str = "digits36"
    hidden: tuple[int, ...] = (20, 10)
    activation: str = "tanh"
    norms: tuple[str, ...] = NORMALIZATIONS
    optimizer: str = "adam"
    lr: float = 0.001
    batch_size: int = 32
    thresholds: tuple[float, ...] = (1e-5, 1e-6)
    max_epochs: int = 1000
    budgets: tuple[int, ...] = (10, 50, 200, 1000)  # equal epoch budgets; above max_epochs is left out
    n_train: int | None = None  # None: the whole training split
    seed_chunk: int = 10

    def __post_init__(self):
        for norm in self.norms:
            NORMS.get(norm)
        ACTIVATIONS.get(self.activation)
        OPTIMIZERS.get(self.optimizer)
        require(len(self.norms) > 0, "norms must name at least one normalization")
        require(self.batch_size >= 2 or "batchnorm" not in self.norms,
                f"batchnorm needs batches of at least 2 samples to normalise, got batch_size={self.batch_size}")
        require(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        require(self.lr > 0, f"lr must be > 0, got {self.lr}")
        require(len(self.thresholds) > 0 and all(t > 0 for t in self.thresholds),
                f"thresholds must be > 0, got {self.thresholds}")
        require(self.max_epochs >= 2, f"max_epochs must be >= 2, got {self.max_epochs}")
        require(all(b >= 1 for b in self.budgets), f"budgets must be >= 1 epoch, got {self.budgets}")
        require(self.n_train is None or self.n_train >= 2, f"n_train must be >= 2, got {self.n_train}")


PRESETS = {"smoke": Config(max_epochs=30, n_train=200, budgets=(10, 30)), "default": Config(), "paper": Config()}


def condition(cfg: Config, norm: str, threshold: float) -> str:
    """'batchnorm', or 'batchnorm@1e-5' when several thresholds run."""
    return norm if len(cfg.thresholds) == 1 else f"{norm}@{f'{threshold:g}'.replace('e-0', 'e-')}"


def budgets(cfg: Config) -> list[int]:
    return sorted({b for b in cfg.budgets if b <= cfg.max_epochs} | {cfg.max_epochs})


def units(cfg: Config, seeds: tuple[int, ...], runtime: Runtime) -> list[Unit]:
    # Each normalization changes the architecture, so each is its own stack (and unit).
    return [Unit("normalization", cfg, chunk, runtime, (("norm", norm),))
            for norm in cfg.norms for chunk in seed_chunks(seeds, cfg.seed_chunk)]


def training_data(cfg: Config, data_dir: str | None):
    data = subsample(load_data(cfg.data, data_dir), cfg.n_train)
    if "batchnorm" in cfg.norms and len(data.train) % cfg.batch_size == 1:
        # The epoch's last batch would hold one sample, which BatchNorm cannot normalise.
        data = replace(data, train=Split(data.train.x[:-1], data.train.y[:-1]))
    return data


def _split_probe(data):
    """Accuracy on every split, and train/test confusion, after every epoch (one forward per split)."""
    def probe(predict):
        out = {}
        for name, split in (("train", data.train), ("val", data.val), ("test", data.test)):
            outputs = predict(split.x)
            out[f"{name}_acc"] = accuracy(outputs, split.y)
            if name != "val":
                out[f"{name}_confusion"] = confusion(outputs, split.y, data.n_classes).double()
        return out
    return probe


def fit_norm(cfg: Config, unit: Unit, data):
    """All seeds of one normalization, trained for max_epochs with nothing stopping them."""
    sizes = [data.input_shape[0], *cfg.hidden, data.n_classes]
    norm = NORMS.get(unit.param("norm"))
    builder = lambda: mlp(sizes, act=ACTIVATIONS.get(cfg.activation), norm=norm)  # noqa: E731
    spec = TrainSpec(StopRule(cfg.max_epochs), cfg.batch_size, probes=(_split_probe(data),), device=unit.runtime.device)
    return fit_members(unit, builder, OptSpec(cfg.optimizer, cfg.lr), data.train.x, data.train.y, spec)


def stop_epoch(loss: np.ndarray, tolerance: float) -> tuple[int, bool]:
    """(index of the epoch the stop rule |Δ loss| < tolerance ends on, whether it fired)."""
    hit = StopRule(len(loss), tolerance).converged(torch.as_tensor(loss[:-1]), torch.as_tensor(loss[1:])).numpy()
    return (int(np.argmax(hit)) + 1, True) if hit.any() else (len(loss) - 1, False)


def run_unit(unit: Unit) -> dict:
    cfg: Config = unit.config
    data = training_data(cfg, unit.runtime.data_dir)
    fit = fit_norm(cfg, unit, data)
    norm, seeds = unit.param("norm"), list(unit.seeds)
    runs = [_run(cfg, fit, i, norm, seed, t) for t in cfg.thresholds for i, seed in enumerate(seeds)]
    return {"runs": runs, "budget_runs": [_budget_run(cfg, fit, i, norm, seed) for i, seed in enumerate(seeds)]}


def _run(cfg: Config, fit, i: int, norm: str, seed: int, threshold: float) -> dict:
    loss = fit.history["loss"][i, :fit.epochs[i]]
    e, converged = stop_epoch(loss, threshold)
    at = {k: fit.history[k][i, e] for k in fit.history}
    diverged = bool(fit.diverged[i]) and not converged
    metrics = {"epochs": e + 1, "final_loss": float(loss[e]),
               **{k: float(at[k]) for k in ("train_acc", "val_acc", "test_acc")}}
    metrics["gap"] = metrics["train_acc"] - metrics["test_acc"]
    if diverged:  # the outputs of a diverged member are not finite: its accuracies mean nothing
        metrics.update({k: None for k in ACCURACIES})
    return {"condition": condition(cfg, norm, threshold), "seed": seed, "metrics": metrics,
            "curves": {"loss": loss[:e + 1].tolist()},
            "confusion": {"train": at["train_confusion"].tolist(), "test": at["test_confusion"].tolist()},
            "converged": converged, "diverged": diverged,
            "diverged_epoch": int(fit.diverged_epoch[i]) if diverged else None}


def _budget_run(cfg: Config, fit, i: int, norm: str, seed: int) -> dict:
    """Accuracy after equal numbers of epochs, whatever the stop rule would have said."""
    curves = {k: fit.history[k][i].tolist() for k in ("train_acc", "test_acc")}
    acc = fit.history["test_acc"][i]
    at = [acc[b - 1] if b <= len(acc) else None for b in budgets(cfg)]  # None: every member diverged before b
    return {"norm": norm, "seed": seed, "test_acc": at, "curves": curves}


def summarize(cfg: Config, unit_results: list[dict]) -> dict:
    conditions = add_summaries(group_runs(unit_results), METRICS)
    by_norm = _merge_budgets(cfg, unit_results)
    comparisons = [c for t in cfg.thresholds for c in _threshold_comparisons(cfg, conditions, t)]
    comparisons += _budget_comparisons(cfg, by_norm)
    # gap is a difference of accuracies: its own table shows it signed, the summary table clips percentages
    tables = [summary_table("Per condition, over seeds", conditions, [m for m in METRICS if m != "gap"], ACCURACIES),
              _gap_table(conditions), _budget_table(cfg, by_norm)]
    return {"conditions": conditions, "comparisons": comparisons, "tables": tables,
            "budgets": {"epochs": budgets(cfg), "norms": by_norm},
            "checks": _checks(cfg, conditions, by_norm), "answer": _answer(cfg, conditions),
            "diverged": diverged_runs(conditions)}


def _merge_budgets(cfg: Config, unit_results: list[dict]) -> dict:
    runs = sorted((r for u in unit_results for r in u["budget_runs"]), key=lambda r: r["seed"])
    merged = {}
    for norm in cfg.norms:
        mine = [r for r in runs if r["norm"] == norm]
        at = np.array([r["test_acc"] for r in mine], dtype=float).T  # (budget, seed); None becomes NaN
        merged[norm] = {"seeds": [r["seed"] for r in mine], "test_acc": at.tolist(),
                        "summary": [stats.summary(col) for col in at],
                        "curves": {k: [r["curves"][k] for r in mine] for k in ("train_acc", "test_acc")}}
    return merged


def _threshold_comparisons(cfg: Config, conditions: dict, threshold: float) -> list[dict]:
    group = {condition(cfg, n, threshold): conditions[condition(cfg, n, threshold)] for n in cfg.norms}
    return (compare(group, "epochs", higher_is_better=False) + compare(group, "test_acc", higher_is_better=True)
            + compare(group, "gap", higher_is_better=False))


def _budget_comparisons(cfg: Config, by_norm: dict) -> list[dict]:
    if "none" not in by_norm:
        return []
    return [stats.paired_comparison(f"test_acc_at_{b}_epochs", n, by_norm[n]["test_acc"][j],
                                    "none", by_norm["none"]["test_acc"][j], higher_is_better=True)
            for j, b in enumerate(budgets(cfg)) for n in cfg.norms if n != "none"]


def _budget_table(cfg: Config, by_norm: dict) -> dict:
    rows = [[norm] + [fmt_ci(s, percent=True) for s in v["summary"]] for norm, v in by_norm.items()]
    return {"title": "Test accuracy after equal epoch budgets (no stop rule), mean [95% CI]",
            "columns": ["normalization"] + [f"{b} epochs" for b in budgets(cfg)], "rows": rows}


def _gap_table(conditions: dict) -> dict:
    rows = [[name, fmt_ci(c["summary"]["train_acc"], True), fmt_ci(c["summary"]["test_acc"], True),
             fmt_ci(c["summary"]["gap"], True, bounded=False)] for name, c in conditions.items()]
    return {"title": "Does normalization over-fit? Train-test accuracy gap per condition",
            "columns": ["condition", "train acc", "test acc", "gap = train - test (mean [95% CI])"], "rows": rows}


def _gap_verdict(cmp: dict) -> str:
    lo, hi = cmp["ci95"]
    if lo is not None and lo > 0:
        return "widened"
    return "narrowed" if hi is not None and hi < 0 else "did not measurably change"


def _answer(cfg: Config, conditions: dict) -> str:
    t = cfg.thresholds[0]
    base = condition(cfg, "none", t)
    others = [condition(cfg, n, t) for n in cfg.norms if n != "none"]
    if base not in conditions or not others:
        return "Needs 'none' and at least one normalization to compare."
    parts = []
    for name in others:
        cmp = compare(conditions, "gap", False, [(name, base)])[0]
        parts.append(f"{name} {_gap_verdict(cmp)} the train-test accuracy gap relative to {base} (difference, "
                     f"mean [95% CI]: {fmt_diff(cmp)}, p = {fmt_p(cmp['p_value'])}, "
                     f"{cmp['test']}, {cmp['n']} seeds)")
    return "; ".join(parts) + "."


def _checks(cfg: Config, conditions: dict, by_norm: dict) -> list[dict]:
    checks = []
    if not {"none", "batchnorm"} <= set(cfg.norms):
        return checks
    for t in cfg.thresholds:
        checks.append(_ioffe_check(conditions, condition(cfg, "batchnorm", t), condition(cfg, "none", t)))
    j = len(budgets(cfg)) - 1
    cmp = stats.paired_comparison("test_acc", "batchnorm", by_norm["batchnorm"]["test_acc"][j], "none",
                                  by_norm["none"]["test_acc"][j], higher_is_better=True)
    checks.append(stats.check(
        f"Trained for the same number of epochs ({budgets(cfg)[j]}), BatchNorm reaches a higher test accuracy "
        "than no normalization", "report A, Task 2", cmp["wins"]["batchnorm"] > cmp["wins"]["none"] and cmp["diff"] > 0,
        f"test accuracy batchnorm - none, mean [95% CI]: {fmt_diff(cmp)}, "
        f"p = {fmt_p(cmp['p_value'])}; higher in {cmp['wins']['batchnorm']} of {cmp['n']} seeds"))
    return checks + [_overfit_check(cfg, conditions, n) for n in cfg.norms if n != "none"]


def _ioffe_check(conditions: dict, bn: str, none: str) -> dict:
    cmp = compare(conditions, "epochs", False, [(bn, none)])[0]
    stopped = {c: sum(r["converged"] for r in conditions[c]["runs"]) for c in (bn, none)}
    return stats.check(
        f"BatchNorm reaches the stop threshold in fewer epochs than no normalization ({bn} vs {none})",
        "Ioffe & Szegedy 2015", cmp["wins"][bn] > cmp["wins"][none],
        f"{bn} stopped sooner in {cmp['wins'][bn]} of {cmp['n']} seeds, later in {cmp['wins'][none]}; "
        f"{median_diff_sentence(cmp, 'epochs')}; the rule fired for {stopped[bn]} and {stopped[none]} runs")


def _overfit_check(cfg: Config, conditions: dict, norm: str) -> dict:
    t = cfg.thresholds[0]
    cmp = compare(conditions, "gap", False, [(condition(cfg, norm, t), condition(cfg, "none", t))])[0]
    lo = cmp["ci95"][0]
    return stats.check(
        f"{norm} over-fits: its train-test accuracy gap is larger than without normalization",
        "report A, Task 2 (its open question)", lo is not None and lo > 0,
        f"gap {cmp['a']} - {cmp['b']}, mean [95% CI]: {fmt_diff(cmp)}, "
        f"p = {fmt_p(cmp['p_value'])} ({cmp['test']}); larger in {cmp['wins'][cmp['b']]} of {cmp['n']} seeds")


def figures(results: dict, folder) -> list[str]:
    conditions, cfg = results["conditions"], results["config"]
    files = _loss_panels(conditions, cfg, folder) + _overlay(conditions, cfg, folder) + fig.confusion_grid(conditions, folder)
    return files + _overfitting(conditions, cfg, folder) + _equal_epochs(results["budgets"], cfg, folder)


def _grid(cfg: dict) -> list[list[str]]:
    """Condition names, one row per threshold, one column per normalization."""
    c = Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})
    return [[condition(c, n, t) for n in c.norms] for t in c.thresholds]


def _colors(cfg: dict) -> dict[str, str]:
    """One colour per normalization, the same at every threshold and in every figure."""
    return fig.condition_colors(cfg["norms"])


def _color(cfg: dict, name: str) -> str:
    return _colors(cfg)[name.split("@")[0]]


def _loss_panels(conditions: dict, cfg: dict, folder) -> list[str]:
    grid = _grid(cfg)
    f, axes = fig.new_figure(ncols=len(grid[0]), nrows=len(grid), size=(3.4 * len(grid[0]), 3.0 * len(grid)),
                             sharey=True)
    for ax, name in zip(np.atleast_1d(axes), [n for row in grid for n in row]):
        fig.curve_band(ax, [r["curves"]["loss"] for r in conditions[name]["runs"]], label=name,
                       color=_color(cfg, name), log_y=True)
        ax.set(title=name, xlabel="epoch")
    for ax in np.atleast_1d(axes)[:: len(grid[0])]:
        ax.set_ylabel("mean training loss (cross-entropy)")
    return fig.save(f, folder, "loss_curves")


def _overlay(conditions: dict, cfg: dict, folder) -> list[str]:
    grid = _grid(cfg)
    f, axes = fig.new_figure(ncols=len(grid), size=(5.0 * len(grid), 3.8))
    for ax, row in zip(np.atleast_1d(axes), grid):
        for name in row:
            fig.curve_band(ax, [r["curves"]["loss"] for r in conditions[name]["runs"]], label=name,
                           color=_color(cfg, name), log_y=True)
        ax.set(xlabel="epoch", ylabel="mean training loss (cross-entropy)", title="Until the stop rule, mean and 95% band")
        ax.legend()
    return fig.save(f, folder, "all_conditions")


def _overfitting(conditions: dict, cfg: dict, folder) -> list[str]:
    """The train-test gap per condition (mean, 95% CI), and every run's train against test accuracy
    (jittered a little and see-through: many runs sit at train accuracy 1.0)."""
    f, (left, right) = fig.new_figure(ncols=2, size=(11, 4.2))
    names = list(conditions)
    fig.bar_ci(left, names, [conditions[n]["summary"]["gap"] for n in names], ylabel="train acc - test acc",
               colors=[_color(cfg, n) for n in names])
    left.set(title="Train-test accuracy gap (mean, 95% CI over seeds)")
    markers = dict(zip([row[0].split("@")[-1] for row in _grid(cfg)], "o^sDv"))
    for name in names:
        runs = [r["metrics"] for r in conditions[name]["runs"] if r["metrics"]["gap"] is not None]
        fig.scatter_runs(right, [m["train_acc"] for m in runs], [m["test_acc"] for m in runs], label=name,
                         color=_color(cfg, name), marker=markers.get(name.split("@")[-1], "o"))
    lims = [min(right.get_xlim()[0], right.get_ylim()[0]), 1.0]
    right.plot(lims, lims, color="0.5", lw=0.8, ls="--", label="test = train")
    right.set(xlabel="train accuracy", ylabel="test accuracy", title="One point per run: below the line = over-fitting")
    right.legend(fontsize=7)
    return fig.save(f, folder, "overfitting")


def _equal_epochs(budget: dict, cfg: dict, folder) -> list[str]:
    f, axes = fig.new_figure(ncols=2, size=(11, 4.0), sharey=True)
    for ax, key in zip(axes, ("train_acc", "test_acc")):
        for norm, v in budget["norms"].items():
            fig.curve_band(ax, v["curves"][key], label=norm, log_y=False, color=_colors(cfg).get(norm))
        for b in budget["epochs"]:
            ax.axvline(b, color="0.6", lw=0.8, ls=":")
        ax.set_xscale("log")  # the conditions differ in the first tens of epochs, then all sit near 100%
        ax.set(xlabel="epoch", ylabel=key.replace("_", " "), title=f"{key.replace('_', ' ')} at equal epochs (dotted: budgets)")
        ax.legend()
    return fig.save(f, folder, "equal_epochs")


STUDY = register(Study("normalization", "Does BatchNorm or LayerNorm train report A's MLP faster, and does it over-fit?",
                       PRESETS, run_unit, summarize, figures, units=units, runtime_s="~2 min"))
