"""sensitivity: do larger batches give sharper, more input-sensitive models that generalize worse? (B10)

    dlstudies run sensitivity            # ~2 min at default scale on 2 cores

Report B (part 2 of "flatness vs generalization") trained its CNN with batch sizes 32, 64, 128, 256
and 512 for 50 epochs and plotted train/test loss, accuracy and "sensitivity" against batch size.
Here every batch size starts from the same initial weights for a seed (paired design), and each
model gets
- sensitivity: the mean over the test set of ‖∂ℓ(f(x_i), y_i)/∂x_i‖_F, the input gradient of each
  sample's own loss (`dlstudies.analysis.sensitivity`). Taken from the gradient of the batch-mean
  loss instead, it falls like 1/(evaluation batch size), a trap of public solutions of this
  exercise; a check here recomputes it with another evaluation batching and requires the same values;
- the input-output Jacobian norm of the softmax (Novak et al. 2018);
- sharpness (Keskar et al. 2017, metric 2.1 with ε = 1e-3): the largest relative rise of the
  training loss in the box |δθ_i| ≤ ε(|θ_i| + 1), found by projected ascent from a random point of
  the box (`dlstudies.analysis.sharpness`).
Checks, each judged by the per-seed Spearman correlation with batch size (its mean and 95% CI over
seeds) beside a paired comparison of the smallest and the largest batch: test accuracy falls and
sharpness rises (Keskar et al. 2017); the Jacobian norm rises (Novak et al. 2018: full-batch training
gives less robust functions); and report B's own claim that sensitivity falls with batch size.
A confound to keep in view: at a fixed epoch budget a larger batch also ends at a higher training
loss (fewer steps); the trend table shows it beside the others.

Training (chosen, report B is silent): as `interpolation` (B9), SGD with Nesterov momentum 0.9, the
same CNN; at default the 8x8 `digits`, lr 0.05, 70 epochs, by when every batch size is past 99%
training accuracy (measured; see interpolation's docstring for why that matters).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dlstudies.analysis import sensitivity as input_sensitivity
from dlstudies.analysis import sharpness, stats
from dlstudies.config import Runtime, require
from dlstudies.optim import OPTIMIZERS
from dlstudies.report import figures as fig
from dlstudies.studies.base import Study, Unit, register, seed_chunks
from dlstudies.studies.image_nets import check_net, load_split_data, train_stack
from dlstudies.studies.results import (
    add_summaries,
    compare,
    fmt_num,
    group_runs,
    summary_table,
)
from dlstudies.studies.training import split_metrics

# The sharpness ascent starts at a random point of the box, from its own stream per seed.
SHARPNESS_STREAM = 4_000_037
# A second evaluation batching for the batch-independence check (odd, so batches are ragged), on
# the first CHECK_SAMPLES test samples: a check, not a measurement, so it stays cheap at paper scale.
CHECK_BATCH, CHECK_SAMPLES = 7, 256
BATCH_INDEPENDENCE_RTOL = 1e-4
METRICS = ("train_loss", "test_loss", "train_acc", "test_acc", "gap_acc", "sensitivity", "jacobian_norm",
           "sharpness")


@dataclass(frozen=True)
class Config:
    data: str = "digits"
    model: str = "cnn"
    channels: tuple[int, ...] = (8, 32)
    hidden: tuple[int, ...] = (256, 128)
    norm: str = "none"
    batch_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)
    optimizer: str = "nesterov"
    lr: float = 0.05
    momentum: float = 0.9
    epochs: int = 70
    epsilon: float = 1e-3  # Keskar et al.'s box size
    sharpness_steps: int = 10
    sharpness_n: int | None = None  # training samples the sharpness is measured on; None: all
    n_train: int | None = None
    n_test: int | None = None
    eval_batch: int = 500  # bounds memory only
    seed_chunk: int = 10

    def __post_init__(self):
        check_net(self)
        OPTIMIZERS.get(self.optimizer)
        require(len(self.batch_sizes) >= 2 and all(b >= 1 for b in self.batch_sizes),
                "batch_sizes needs at least two sizes, each >= 1")
        require(len(set(self.batch_sizes)) == len(self.batch_sizes), "batch_sizes must differ")
        require(self.lr > 0 and 0 <= self.momentum < 1, "need lr > 0 and momentum in [0, 1)")
        require(self.epochs >= 1 and self.sharpness_steps >= 1, "need epochs >= 1 and sharpness_steps >= 1")
        require(self.epsilon > 0 and self.eval_batch >= 1, "need epsilon > 0 and eval_batch >= 1")


PRESETS = {
    "smoke": Config(channels=(4, 8), hidden=(32, 16), batch_sizes=(16, 32, 64), epochs=2, sharpness_steps=2,
                    n_train=200, n_test=60),
    "default": Config(sharpness_steps=5),
    "paper": Config(data="fashion-mnist", lr=0.01, epochs=50, sharpness_n=10000),
}


def units(cfg: Config, seeds: tuple[int, ...], runtime: Runtime) -> list[Unit]:
    return [Unit("sensitivity", cfg, chunk, runtime, (("batch_size", b),))
            for b in cfg.batch_sizes for chunk in seed_chunks(seeds, cfg.seed_chunk)]


def run_unit(unit: Unit) -> dict:
    cfg: Config = unit.config
    batch = unit.param("batch_size")
    data = load_split_data(cfg, unit.runtime)
    fit = train_stack(cfg, unit, data, batch)
    own = split_metrics(fit.models, data)
    device = unit.runtime.device
    test = (data.test.x.to(device), data.test.y.to(device))
    train = tuple(t[:cfg.sharpness_n].to(device) for t in (data.train.x, data.train.y))
    runs = [_run(cfg, batch, seed, model, {k: float(v[i]) for k, v in own.items()}, test, train,
                 fit.history["loss"][i]) for i, (seed, model) in enumerate(zip(unit.seeds, fit.models))]
    return {"runs": runs, "batch_independence": _batch_independence(cfg, fit.models[0], test)}


def _run(cfg: Config, batch: int, seed: int, model, metrics: dict, test, train, loss_curve) -> dict:
    sens = input_sensitivity(model, F.cross_entropy, *test, batch_size=cfg.eval_batch)
    gen = torch.Generator().manual_seed(SHARPNESS_STREAM + seed)
    sharp = sharpness(model, F.cross_entropy, *train, epsilon=cfg.epsilon, steps=cfg.sharpness_steps,
                      generator=gen, batch_size=cfg.eval_batch)
    metrics.update(gap_acc=metrics["train_acc"] - metrics["test_acc"], sensitivity=sens.mean,
                   jacobian_norm=sens.jacobian_norm, sharpness=sharp.value)
    return {"condition": f"batch-{batch}", "seed": seed, "batch_size": batch, "metrics": metrics,
            "curves": {"loss": loss_curve.tolist()}}


def _batch_independence(cfg: Config, model, test) -> dict:
    """Sensitivity per sample must not depend on how the evaluation set is batched."""
    x, y = (t[:CHECK_SAMPLES] for t in test)
    a = input_sensitivity(model, F.cross_entropy, x, y, batch_size=cfg.eval_batch).per_sample
    b = input_sensitivity(model, F.cross_entropy, x, y, batch_size=CHECK_BATCH).per_sample
    return {"batch_sizes": [cfg.eval_batch, CHECK_BATCH], "max_abs_diff": float(np.max(np.abs(a - b))),
            "scale": float(np.max(np.abs(a)))}


# ---- summary -----------------------------------------------------------------------------------

def summarize(cfg: Config, unit_results: list[dict]) -> dict:
    conditions = add_summaries(group_runs(unit_results), METRICS)
    names = [f"batch-{b}" for b in sorted(cfg.batch_sizes)]
    conditions = {n: conditions[n] for n in names}  # ordered by batch size
    x = {n: b for n, b in zip(names, sorted(cfg.batch_sizes))}
    trends = {m: stats.trend(conditions, x, m) for m in ("test_acc", "sharpness", "sensitivity", "jacobian_norm",
                                                    "gap_acc", "train_loss")}
    pairs = [(names[0], names[-1])]
    comparisons = [compare(conditions, m, hib, pairs)[0] for m, hib in
                   (("test_acc", True), ("sharpness", False), ("jacobian_norm", False), ("sensitivity", False),
                    ("train_loss", False))]
    independence = [r["batch_independence"] for r in unit_results]
    return {"conditions": conditions, "trends": trends, "comparisons": comparisons,
            "batch_independence": independence, "checks": _checks(trends, comparisons, independence),
            "answer": _answer(conditions, names, trends),
            "tables": [summary_table("Per batch size, over seeds", conditions, METRICS,
                                     percent=("train_acc", "test_acc")), _trend_table(trends)]}


def _checks(trends: dict, comparisons: list[dict], independence: list[dict]) -> list[dict]:
    worst = max(d["max_abs_diff"] / (1 + d["scale"]) for d in independence)
    return [
        _trend_check("Test accuracy falls as the batch size grows", trends["test_acc"], -1, comparisons[0]),
        _trend_check("Sharpness rises as the batch size grows", trends["sharpness"], +1, comparisons[1]),
        _trend_check("The input-output Jacobian norm (Novak et al.'s sensitivity) rises as the batch size grows: "
                     "large-batch training gives less robust functions", trends["jacobian_norm"], +1, comparisons[2],
                     source="Novak et al. 2018"),
        _trend_check("Report B's claim: the loss-gradient sensitivity falls as the batch size grows (a batch-mean "
                     "gradient would fall like 1/batch size; this one is per sample)", trends["sensitivity"], -1,
                     comparisons[3], source="report B"),
        stats.check("Sensitivity is per sample: evaluating with another batching gives the same values",
                    "DESIGN.md, Known traps", worst <= BATCH_INDEPENDENCE_RTOL,
                    f"largest per-sample difference between evaluation batches of {independence[0]['batch_sizes']}: "
                    f"{max(d['max_abs_diff'] for d in independence):.2g} (tolerance {BATCH_INDEPENDENCE_RTOL:g}·(1 + value))"),
    ]


def _trend_check(claim: str, t: dict, sign: int, cmp: dict, source: str = "Keskar et al. 2017") -> dict:
    lo, hi = t["summary"]["ci95"]
    return stats.check(claim, source, stats.ci_clear_of_zero(t["summary"], sign),
                       f"Spearman ρ(batch size, {t['metric']}) per seed: mean {fmt_num(t['summary']['mean'])} "
                       f"(95% CI [{fmt_num(lo)}, {fmt_num(hi)}], n = {t['summary']['n']}); {cmp['a']} − {cmp['b']}: "
                       f"mean {fmt_num(cmp['diff'])}, p = {fmt_num(cmp['p_value'])} ({cmp['test']})")


def _answer(conditions: dict, names: list[str], trends: dict) -> str:
    acc = [conditions[n]["summary"]["test_acc"]["mean"] for n in (names[0], names[-1])]
    sharp = [conditions[n]["summary"]["sharpness"]["mean"] for n in (names[0], names[-1])]
    ta, ts = trends["test_acc"]["summary"], trends["sharpness"]["summary"]
    return (f"From {names[0]} to {names[-1]} the test accuracy went from {acc[0]:.1%} to {acc[1]:.1%} "
            f"(per-seed Spearman ρ with batch size {fmt_num(ta['mean'])}, 95% CI [{fmt_num(ta['ci95'][0])}, {fmt_num(ta['ci95'][1])}]) "
            f"and the sharpness from {sharp[0]:.3g} to {sharp[1]:.3g} "
            f"(ρ {fmt_num(ts['mean'])}, 95% CI [{fmt_num(ts['ci95'][0])}, {fmt_num(ts['ci95'][1])}]).")


def _trend_table(trends: dict) -> dict:
    rows = [[m, fmt_num(t["summary"]["mean"]), f"[{fmt_num(t['summary']['ci95'][0])}, {fmt_num(t['summary']['ci95'][1])}]",
             t["summary"]["n"]] for m, t in trends.items()]
    return {"title": "Per-seed Spearman correlation with batch size", "columns": ["metric", "mean ρ", "95% CI", "seeds"],
            "rows": rows}


# ---- figures -----------------------------------------------------------------------------------

PANELS = (("loss", ("train_loss", "test_loss"), "cross-entropy loss"),
          ("accuracy", ("train_acc", "test_acc"), "accuracy"),
          ("sensitivity", ("sensitivity",), "mean ‖∂ℓ_i/∂x_i‖ over the test set"),
          ("Jacobian norm", ("jacobian_norm",), "mean ‖∂softmax/∂x‖_F (Novak et al.)"),
          ("sharpness", ("sharpness",), "Keskar sharpness (%)"),
          ("generalization gap", ("gap_acc",), "train − test accuracy"))


def figures(results: dict, folder) -> list[str]:
    return _metric_figure(results, folder) + fig.training_loss_figure(
        results["conditions"], folder, "Training per batch size (mean and 95% band over seeds)")


def _metric_figure(results: dict, folder) -> list[str]:
    conditions = results["conditions"]
    x = [c["runs"][0]["batch_size"] for c in conditions.values()]
    f, axes = fig.new_figure(ncols=3, nrows=2, size=(13, 7))
    for ax, (title, metrics, ylabel) in zip(axes, PANELS):
        for j, m in enumerate(metrics):
            fig.errorbar_x(ax, x, [c["summary"][m] for c in conditions.values()], label=m, color=fig.color(j),
                           log_x=True, xlabel="batch size", ylabel=ylabel)
        ax.set_xticks(x, [str(b) for b in x])
        ax.minorticks_off()  # the log axis' own minor labels (3×10¹, ...) would overprint the batch sizes
        ax.set_title(title)
        ax.legend(fontsize=8)
    f.suptitle("Against batch size: mean and 95% CI over seeds")
    return fig.save(f, folder, "by_batch_size")


STUDY = register(Study("sensitivity", "Do larger batches give sharper, more input-sensitive models that generalize worse?",
                       PRESETS, run_unit, summarize, figures, units=units, runtime_s="~2 min"))
