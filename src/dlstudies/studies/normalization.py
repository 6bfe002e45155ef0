"""normalization: does BatchNorm train report A's MLP faster, and does normalization over-fit?

    dlstudies run normalization         # ~45 s at default scale on 2 cores (10 seeds)

Report A (Task 2) put a normalization layer after each hidden linear layer of its 36-20-10-5 tanh
MLP (before tanh), trained with lr 0.001 and mini-batches, and stopped when the mean epoch loss
changed by less than 1e-5 or 1e-6 (or at 1000 epochs). It found BatchNorm faster to converge and
better "when trained for the same number of epochs", and asked whether normalization over-fits.
Literature: Ioffe & Szegedy (2015) report that BatchNorm reaches a given training loss (and
accuracy) in far fewer steps; Ba et al. (2016) propose LayerNorm, which needs no batch.

What is measured (METHOD.md §3): "faster" is time to a target — the first epoch whose mean
training loss is at most `target_loss`, and the first whose training accuracy is at least
`target_acc` (fixed settings, chosen from pilot runs so that every condition reaches them within
`max_epochs`) — and the area under the loss curve (`loss_auc`: the mean epoch loss over the whole
budget); samples seen are epochs × the training-set size, the same for every condition. Report
A's stop-rule epochs ("|Δ loss| < t") are kept in their own table and labelled as such: they
measure when a curve flattens, and BatchNorm's noisier loss delays them. Accuracies and
the train-test gap are read at equal epoch budgets for every condition (the gap of the claims at
`max_epochs`, the same for all), never at each condition's own stop epoch. Conditions are paired
by seed (same sample order; the linear layers of a seed start from the same weights).

One fit per normalization gives every budget and every stop threshold at once: each member trains
for `max_epochs` with nothing stopping it, and the thresholds are read off its loss history. This
is exact: a member stopped by |Δ loss| < t at epoch e is that same member at epoch e (members are
independent); the tests hold it to a fit that stops by the rule. Adam and batch size 32 are chosen
(report A does not say). BatchNorm cannot normalise a batch of one: a batch size of 1 is refused,
and when the training set would leave a last batch of one sample, that sample is dropped for every
condition (so all stay paired) rather than merged into the batch before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from dlstudies.analysis import stats
from dlstudies.analysis.claims import Claim, opening, sanity
from dlstudies.analysis.measures import effect_text, interval_text, value_text
from dlstudies.config import reals, require
from dlstudies.data import load_data
from dlstudies.data.base import Split, subsample
from dlstudies.engine import StopRule, TrainSpec
from dlstudies.models.builders import ACTIVATIONS, NORMS, mlp
from dlstudies.optim import OPTIMIZERS, OptSpec
from dlstudies.report import figures as fig
from dlstudies.studies.base import Study, StudyConfig, Unit, register
from dlstudies.studies.results import (cell, describe_conditions, epochs_to, group_runs, loss_auc, main_table, still_improving,
                                       stop_epoch)
from dlstudies.studies.training import fit_members, split_probe

NORMALIZATIONS = ("none", "batchnorm", "layernorm")
# Read at max_epochs (the equal budget of every condition), except the times to target.
METRICS = ("target_loss_epochs", "target_acc_epochs", "loss_auc", "train_acc", "test_acc", "gap")
STOP_METRICS = ("stop_rule_epochs", "final_loss", "train_acc", "val_acc", "test_acc", "gap")
ACCURACIES = ("train_acc", "val_acc", "test_acc", "gap")


@dataclass(frozen=True)
class Config(StudyConfig):
    data: str = "mnist1d36"
    hidden: tuple[int, ...] = (20, 10)
    activation: str = "tanh"
    norms: tuple[str, ...] = NORMALIZATIONS
    optimizer: str = "adam"
    lr: float = 0.001
    batch_size: int = 32
    thresholds: tuple[float, ...] = (1e-5, 1e-6)  # report A's stop rule, read off the fit
    max_epochs: int = 300  # every condition's equal budget
    budgets: tuple[int, ...] = (10, 50, 100)  # further equal budgets for the tables; above max_epochs left out
    # Time to target: fixed settings chosen from pilot runs on mnist1d36 (10 seeds, 500 epochs), where
    # no normalization took 102-160 epochs to loss 1.0 and 128-222 to 55% (BatchNorm 10-14 and 7-12).
    target_loss: float = field(default=1.0, metadata={"rule": reals(0, 1e3, lo_open=True)})
    target_acc: float = field(default=0.55, metadata={"rule": reals(0, 1, lo_open=True)})
    # An over-fitting gap within ±gap_margin of no normalization's is no practical difference.
    gap_margin: float = field(default=0.03, metadata={"rule": reals(0, 1, lo_open=True, hi_open=True)})
    n_train: int | None = None  # None: the whole training split
    seed_chunk: int = 10

    def validate(self):
        for norm in self.norms:
            NORMS.get(norm)
        ACTIVATIONS.get(self.activation)
        OPTIMIZERS.get(self.optimizer)
        require(len(self.norms) > 0, "norms must name at least one normalization")
        require(self.batch_size >= 2 or "batchnorm" not in self.norms,
                f"batchnorm needs batches of at least 2 samples to normalise, got batch_size={self.batch_size}")
        require(self.max_epochs >= 2, f"max_epochs must be >= 2, got {self.max_epochs}")
        require(len(self.thresholds) > 0, "thresholds must name at least one stop threshold")


PRESETS = {"smoke": Config(max_epochs=30, n_train=200, budgets=(10,), target_loss=1.5, target_acc=0.4),
           "default": Config(), "paper": Config(max_epochs=1000, budgets=(10, 50, 100, 300))}


def stop_condition(cfg: Config, norm: str, threshold: float) -> str:
    """'batchnorm', or 'batchnorm@1e-5' when several thresholds run."""
    return norm if len(cfg.thresholds) == 1 else f"{norm}@{f'{threshold:g}'.replace('e-0', 'e-')}"


def budgets(cfg: Config) -> list[int]:
    return sorted({b for b in cfg.budgets if b <= cfg.max_epochs} | {cfg.max_epochs})


def training_data(cfg: Config, data_dir: str | None):
    data = subsample(load_data(cfg.data, data_dir), cfg.n_train)
    if "batchnorm" in cfg.norms and len(data.train) % cfg.batch_size == 1:
        # The epoch's last batch would hold one sample, which BatchNorm cannot normalise.
        data = replace(data, train=Split(data.train.x[:-1], data.train.y[:-1]))
    return data


def fit_norm(cfg: Config, unit: Unit, data):
    """All seeds of one normalization, trained for max_epochs with nothing stopping them."""
    sizes = [data.input_shape[0], *cfg.hidden, data.n_classes]
    norm = NORMS.get(unit.param("norm"))
    builder = lambda: mlp(sizes, act=ACTIVATIONS.get(cfg.activation), norm=norm)  # noqa: E731
    spec = TrainSpec(StopRule(cfg.max_epochs), cfg.batch_size, probes=(split_probe(data),), device=unit.runtime.device)
    return fit_members(unit, builder, OptSpec(cfg.optimizer, cfg.lr), data.train.x, data.train.y, spec)


# ---- what one run measures ---------------------------------------------------------------------

def run_unit(unit: Unit) -> dict:
    cfg: Config = unit.config
    data = training_data(cfg, unit.runtime.data_dir)
    fit = fit_norm(cfg, unit, data)
    norm, seeds = unit.param("norm"), list(unit.seeds)
    return {"runs": [_run(cfg, fit, i, norm, seed) for i, seed in enumerate(seeds)],
            "stop_runs": [_stop_run(cfg, fit, i, norm, seed, t) for t in cfg.thresholds for i, seed in enumerate(seeds)]}


def _accuracies(fit, i: int, e: int, broken: bool) -> dict:
    """Train/val/test accuracy and the train-test gap after epoch index e (None for a diverged member)."""
    out = {k: float(fit.history[k][i, e]) for k in ("train_acc", "val_acc", "test_acc")}
    out["gap"] = out["train_acc"] - out["test_acc"]
    return dict.fromkeys(out) if broken else out


def _run(cfg: Config, fit, i: int, norm: str, seed: int) -> dict:
    """One seed at the equal budget: times to target, loss AUC, accuracies at every budget."""
    loss = fit.history["loss"][i, :fit.epochs[i]]
    diverged = bool(fit.diverged[i])
    at = {b: _accuracies(fit, i, b - 1, diverged) if b <= len(loss) else dict.fromkeys(ACCURACIES) for b in budgets(cfg)}
    final = at[cfg.max_epochs]
    metrics = {"target_loss_epochs": epochs_to(loss, cfg.target_loss),
               "target_acc_epochs": epochs_to(fit.history["train_acc"][i, :len(loss)], cfg.target_acc, below=False),
               "loss_auc": None if diverged else loss_auc(loss),
               **{k: final[k] for k in ("train_acc", "test_acc", "gap")}}
    e = len(loss) - 1
    return {"condition": norm, "seed": seed, "metrics": metrics,
            "at_budget": {str(b): {k: v[k] for k in ("test_acc", "gap")} for b, v in at.items()},
            "curves": {"loss": loss.tolist(),
                       **{k: fit.history[k][i, :len(loss)].tolist() for k in ("train_acc", "test_acc")}},
            "confusion": {s: fit.history[f"{s}_confusion"][i, e].tolist() for s in ("train", "test")},
            "still_improving": still_improving(loss), "diverged": diverged,
            "diverged_epoch": int(fit.diverged_epoch[i]) if diverged else None}


def _stop_run(cfg: Config, fit, i: int, norm: str, seed: int, threshold: float) -> dict:
    """Report A's reading: the member where its stop rule |Δ loss| < threshold would have ended it."""
    loss = fit.history["loss"][i, :fit.epochs[i]]
    e, converged = stop_epoch(loss, threshold)
    diverged = bool(fit.diverged[i]) and not converged
    metrics = {"stop_rule_epochs": e + 1, "final_loss": float(loss[e]), **_accuracies(fit, i, e, diverged)}
    return {"condition": stop_condition(cfg, norm, threshold), "seed": seed, "metrics": metrics,
            "converged": converged, "diverged": diverged,
            "diverged_epoch": int(fit.diverged_epoch[i]) if diverged else None}


# ---- claims, summary and answer ---------------------------------------------------------------

def _loss(cfg: Config) -> str:
    return value_text("loss", cfg.target_loss)


def _acc(cfg: Config) -> str:
    return value_text("train_acc", cfg.target_acc)


def claims(cfg: Config) -> list[Claim]:
    e, acc, m = cfg.max_epochs, _acc(cfg), effect_text("gap", cfg.gap_margin).lstrip("+")
    out = [Claim(f"BatchNorm reaches the target training loss ({_loss(cfg)}) in fewer epochs than no "
                 "normalization", "Ioffe & Szegedy 2015", "target_loss_epochs", "directional",
                 a="batchnorm", b="none", direction="lower"),
           Claim(f"BatchNorm reaches the target training accuracy ({acc}) in fewer epochs than no normalization",
                 "Ioffe & Szegedy 2015", "target_acc_epochs", "directional", a="batchnorm", b="none",
                 direction="lower"),
           Claim(f"LayerNorm reaches the target training loss ({_loss(cfg)}) in fewer epochs than no "
                 "normalization", "Ba et al. 2016", "target_loss_epochs", "directional", a="layernorm",
                 b="none", direction="lower"),
           Claim(f"Trained for the same number of epochs ({e}), BatchNorm reaches a higher test accuracy than no "
                 "normalization", "report A, Task 2", "test_acc", "directional", a="batchnorm", b="none")]
    for norm in NORMALIZATIONS[1:]:
        out += [Claim(f"{norm} over-fits: after {e} epochs its train-test accuracy gap is larger than without "
                      "normalization", "report A, Task 2 (its open question)", "gap", "directional", a=norm, b="none"),
                Claim(f"{norm} leaves the train-test accuracy gap after {e} epochs within ±{m} of no normalization's",
                      "report A, Task 2 (its open question)", "gap", "equivalence", a=norm, b="none",
                      margin=cfg.gap_margin)]
    return out


def summarize(cfg: Config, unit_results: list[dict], standard: dict) -> dict:
    conditions = standard["conditions"]
    stop_rule = describe_conditions(group_runs({"runs": u["stop_runs"]} for u in unit_results), STOP_METRICS)
    pairs = pairwise_rows(conditions, METRICS)
    title = (f"Per normalization, over seeds: epochs to training loss ≤ {_loss(cfg)} and to training "
             f"accuracy ≥ {_acc(cfg)}; loss AUC, accuracies and gap after {cfg.max_epochs} epochs")
    return {"table": main_table(conditions, METRICS, title), "stop_rule": stop_rule,
            "tables": [_budget_table(cfg, conditions),
                       _stop_rule_table(stop_rule),
                       _pairwise_table(pairs, f"All pairs of normalizations, paired by seed (exploratory; p "
                                       f"Holm-adjusted over the table's {len(pairs)} tests)")],
            "budgets": {"epochs": budgets(cfg)}, "sanity": [_targets_reached(cfg, conditions)],
            "captions": CAPTIONS}


def _stop_rule_table(stop_rule: dict) -> dict:
    table = main_table(stop_rule, STOP_METRICS, "Report A's stop rule |Δ loss| < threshold (when the curve flattens, "
                       "not speed): the epoch it ends on, what the model reads there, and in how many runs it fired")
    table["columns"].append("rule fired")
    for row, c in zip(table["rows"], stop_rule.values()):
        row.append(f"{sum(r['converged'] for r in c['runs'])} of {len(c['runs'])}")
    return table


def _targets_reached(cfg: Config, conditions: dict) -> dict:
    runs = [r for c in conditions.values() for r in c["runs"]]
    missed = {m: sum(r["metrics"][m] is None for r in runs) for m in ("target_loss_epochs", "target_acc_epochs")}
    return sanity("every run reaches both targets", not any(missed.values()),
                  f"of {len(runs)} runs, {missed['target_loss_epochs']} never reached training loss ≤ "
                  f"{_loss(cfg)} and {missed['target_acc_epochs']} never reached training accuracy ≥ "
                  f"{_acc(cfg)} in {cfg.max_epochs} epochs")


def pairwise_rows(conditions: dict, metrics) -> list[dict]:
    """Every pair of conditions on every metric (paired by seed), Holm-adjusted over all rows together."""
    by_seed = {m: {n: [r["metrics"][m] for r in c["runs"]] for n, c in conditions.items()} for m in metrics}
    rows = [row for m in metrics for row in stats.pairwise_table(m, by_seed[m])]
    for row, q in zip(rows, stats.holm([r["p_value"] for r in rows])):
        row["p_holm"] = q
    return rows


def _pairwise_table(rows: list[dict], title: str) -> dict:
    def p(v):
        return "n/a" if v is None else f"{v:.2g}"
    body = [[r["metric"], f"{r['a']} {'/' if r['log'] else '−'} {r['b']}", effect_text(r["metric"], r["effect"],
             r["log"]), interval_text(r["metric"], r["ci95"], True, r["log"]), p(r["p_value"]), p(r["p_holm"]), r["n"]]
            for r in rows]
    return {"title": title, "columns": ["metric", "contrast", "effect", "95% CI", "p (sign-flip)", "p (Holm)", "n"],
            "rows": body}


def _budget_table(cfg: Config, conditions: dict) -> dict:
    rows = []
    for name, c in conditions.items():
        for metric in ("test_acc", "gap"):
            cells = [cell(stats.describe([r["at_budget"][str(b)][metric] for r in c["runs"]], metric), metric)
                     for b in budgets(cfg)]
            rows.append([name, metric, *cells])
    return {"title": "Test accuracy and train-test gap after equal epoch budgets (no stop rule), mean [95% CI]",
            "columns": ["normalization", "metric", *[f"{b} epochs" for b in budgets(cfg)]], "rows": rows}


def check_of(results: dict, kind: str = "directional", **match) -> dict:
    """The evaluated claim of that kind whose fields match (metric=..., a=...)."""
    return next(c for c in results["checks"] if c["kind"] == kind and all(c.get(k) == v for k, v in match.items()))


def overfits(directional: dict | None, equivalence: dict | None) -> str:
    """'yes', 'no' or 'inconclusive' for one normalization: a larger gap that is not negligible, or
    a gap shown equivalent within the margin (or shown smaller)."""
    if directional is None or equivalence is None:
        return "inconclusive"
    if equivalence["verdict"] == "supported" or directional["verdict"] == "contradicted":
        return "no"
    return "yes" if directional["verdict"] == "supported" else "inconclusive"


def answer(cfg: Config, results: dict) -> str:
    loss, acc = (check_of(results, metric=m, a="batchnorm") for m in ("target_loss_epochs", "target_acc_epochs"))
    same = check_of(results, metric="test_acc", a="batchnorm")
    text = (f"{opening(loss['verdict'])} BatchNorm reached training loss {_loss(cfg)} in {effect_of(loss)} the "
            f"epochs of no normalization, and training accuracy {_acc(cfg)} in "
            f"{effect_of(acc)}; after {cfg.max_epochs} equal epochs its test accuracy differed by {effect_of(same)} "
            f"({same['verdict']}). Over-fitting: " + "; ".join(_overfit_text(results, n) for n in cfg.norms if n != "none"))
    return text + "." + _convergence_note(results) + " Report A's stop-rule epochs are in the tables, labelled as such."


def effect_of(check: dict) -> str:
    """An evaluated claim's effect with its interval, in the reader's units ('0.31x [0.25x, 0.38x]', '+8.0 pp [...]')."""
    log = check.get("scale") == "ratio"
    metric = check["metric"]
    return f"{effect_text(metric, check['effect'], log)} {interval_text(metric, check['ci95'], True, log)}"


def _overfit_text(results: dict, norm: str) -> str:
    d, q = check_of(results, metric="gap", a=norm), check_of(results, "equivalence", metric="gap", a=norm)
    if d is None or d["effect"] is None:
        return f"{norm} not measured"
    margin = effect_text("gap", q["margin"]).lstrip("+")
    return f"{overfits(d, q)} for {norm} (gap minus no normalization's {effect_of(d)}, margin ±{margin})"


def _convergence_note(results: dict) -> str:
    improving = {n: v["still_improving"] for n, v in results["convergence"].items() if v["still_improving"]}
    if not improving:
        return ""
    runs = ", ".join(f"{k} of {results['convergence'][n]['runs']} {n}" for n, k in improving.items())
    return f" Still improving at the budget (loss fell > 1% over its last 10% of epochs): {runs} runs."


def setup(cfg: Config) -> str:
    return (f"data {cfg.data}, MLP {'-'.join(map(str, ('in', *cfg.hidden, 'out')))} {cfg.activation}, normalization "
            f"before each hidden activation, {cfg.optimizer} lr {cfg.lr:g}, batch {cfg.batch_size}, {cfg.max_epochs} "
            f"epochs for every condition; stop-rule thresholds {', '.join(f'{t:g}' for t in cfg.thresholds)} read "
            "off the same fit")


# ---- figures ---------------------------------------------------------------------------------

CAPTIONS = {
    "loss_curves.png": "Training loss per normalization over the whole budget (mean and 95% band over seeds); dashed: "
                       "the target loss, dotted: where report A's stop rule fires (median over seeds).",
    "all_conditions.png": "All normalizations overlaid: the epoch each curve crosses the dashed target is its speed.",
    "overfitting.png": "The train-test gap after equal epoch budgets, and every run's train against test accuracy.",
    "equal_epochs.png": "Train and test accuracy per epoch: every condition compared at the same epochs.",
}


def figures(results: dict, folder) -> list[str]:
    conditions, cfg = results["conditions"], results["config"]
    epochs = results["budgets"]["epochs"]
    return (_loss_panels(conditions, results["stop_rule"], cfg, folder) + _overlay(conditions, cfg, folder)
            + fig.confusion_grid(conditions, folder) + _overfitting(conditions, epochs, folder)
            + _equal_epochs(conditions, epochs, folder))


def _loss_panels(conditions: dict, stop_rule: dict, cfg: dict, folder) -> list[str]:
    colors = fig.condition_colors(conditions)
    f, axes = fig.new_figure(ncols=len(conditions), size=(3.6 * len(conditions), 3.2), sharey=True)
    for ax, (name, c) in zip(np.atleast_1d(axes), conditions.items()):
        fig.curve_band(ax, [r["curves"]["loss"] for r in c["runs"]], label=name, color=colors[name], log_y=True)
        ax.axhline(cfg["target_loss"], color="0.3", lw=0.8, ls="--", label="target")
        mine = [(stop, s["summary"]["stop_rule_epochs"]["median"]) for stop, s in stop_rule.items()
                if stop.partition("@")[0] == name]
        for k, (stop, epoch) in enumerate((s, e) for s, e in mine if e is not None):
            ax.axvline(epoch, color="0.5", lw=0.9, ls=(0, (1, 1 + 2 * k)),
                       label=f"stop rule {stop.partition('@')[2]}".strip())
        ax.set(title=name, xlabel="epoch")
        ax.legend(fontsize=7)
    np.atleast_1d(axes)[0].set_ylabel("mean training loss (cross-entropy)")
    return fig.save(f, folder, "loss_curves")


def _overlay(conditions: dict, cfg: dict, folder) -> list[str]:
    f, ax = fig.new_figure(size=(6, 4))
    fig.condition_bands(ax, conditions, "loss", ylabel="mean training loss (cross-entropy)", log_y=True)
    ax.axhline(cfg["target_loss"], color="0.3", lw=0.8, ls="--", label=f"target {value_text('loss', cfg['target_loss'])}")
    ax.set(title="Training loss at equal epochs, mean and 95% band")
    ax.legend()
    return fig.save(f, folder, "all_conditions")


def _overfitting(conditions: dict, epochs: list[int], folder) -> list[str]:
    """The gap at every equal budget (mean, 95% CI), and every run's train against test accuracy at
    the last one (jittered a little and see-through, so runs at the same value stay countable)."""
    colors = fig.condition_colors(conditions)
    f, (left, right) = fig.new_figure(ncols=2, size=(11, 4.2))
    for name, c in conditions.items():
        gaps = [stats.describe([r["at_budget"][str(b)]["gap"] for r in c["runs"]], "gap") for b in epochs]
        fig.errorbar_x(left, epochs, gaps, label=name, color=colors[name], xlabel="epochs trained (equal for all)",
                       ylabel="train acc - test acc")
        runs = [r["metrics"] for r in c["runs"] if r["metrics"]["gap"] is not None]
        fig.scatter_runs(right, [m["train_acc"] for m in runs], [m["test_acc"] for m in runs], label=name,
                         color=colors[name])
    left.set(title="Train-test accuracy gap at equal budgets (mean, 95% CI)")
    left.legend(fontsize=7)
    lims = [min(right.get_xlim()[0], right.get_ylim()[0]), 1.0]
    right.plot(lims, lims, color="0.5", lw=0.8, ls="--", label="test = train")
    right.set(xlabel=f"train accuracy after {epochs[-1]} epochs", ylabel="test accuracy",
              title="One point per run: below the line = over-fitting")
    right.legend(fontsize=7)
    return fig.save(f, folder, "overfitting")


def _equal_epochs(conditions: dict, epochs: list[int], folder) -> list[str]:
    f, axes = fig.new_figure(ncols=2, size=(11, 4.0), sharey=True)
    for ax, key in zip(axes, ("train_acc", "test_acc")):
        fig.condition_bands(ax, conditions, key, log_y=False)
        for b in epochs:
            ax.axvline(b, color="0.6", lw=0.8, ls=":")
        what = key.replace("_", " ")
        ax.set(xlabel="epoch", ylabel=what, title=f"{what} at equal epochs (dotted: budgets)")
        ax.legend()
    return fig.save(f, folder, "equal_epochs")


STUDY = register(Study(
    "normalization", "Does BatchNorm train report A's MLP faster (fewer epochs to a target training loss), and does "
    "normalization over-fit?", PRESETS, run_unit, summarize, figures, runtime_s="~45 s",
    seeds={"smoke": 3, "default": 10, "paper": 10}, grid=lambda cfg: [(("norm", n),) for n in cfg.norms],
    metrics=METRICS, claims=claims, answer=answer, setup=setup))
