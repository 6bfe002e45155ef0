"""params-generalization: how do test loss, accuracy and the generalization gap move with model size? (B8)

    dlstudies run params-generalization  # ~15 s at default scale on 2 cores

Report B trained ten MLPs in-h1-h2-10 with (h1, h2) from (7, 11) to (190, 26), Adam at lr 1e-4 for
8 epochs, and plotted train/test loss and accuracy against the number of parameters: loss fell and
accuracy rose with size, and the gap between train and test loss stayed about the same. Here each
width trains a stack of seeds (every width is its own architecture, so its own stack), the
parameter count of every run is recorded, and trends are judged per seed by the Spearman
correlation with the parameter count (mean and 95% CI over seeds).

Choices: ReLU and batch 100 (report B is silent); default scale uses the 8x8 `digits` (all 1,077
training images) at lr 1e-3 for 20 epochs, since at lr 1e-4 and 8 epochs the small set gives too
few steps for any model to learn; `paper` uses fashion-mnist with report B's settings.
Literature: Neyshabur, Tomioka & Srebro 2015 ("In search of the real inductive bias") saw test
error keep falling as hidden units were added, past the size that fits the training set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dlstudies.analysis import stats
from dlstudies.config import Runtime, require
from dlstudies.data import load_data
from dlstudies.data.base import subsample
from dlstudies.engine import TrainSpec, fixed_epochs
from dlstudies.models.builders import ACTIVATIONS, count_params
from dlstudies.optim import OPTIMIZERS, OptSpec
from dlstudies.report import figures as fig
from dlstudies.studies.base import Study, Unit, register, seed_chunks
from dlstudies.studies.results import (
    add_summaries,
    compare,
    fmt_num,
    group_runs,
    summary_table,
)
from dlstudies.studies.training import fit_members, image_mlp, split_metrics

H1 = (7, 28, 50, 70, 90, 110, 130, 150, 170, 190)
H2 = (11, 12, 12, 14, 16, 18, 20, 22, 24, 26)
METRICS = ("n_params", "train_loss", "test_loss", "train_acc", "test_acc", "gap_loss", "gap_acc")


@dataclass(frozen=True)
class Config:
    data: str = "digits"
    h1: tuple[int, ...] = H1  # first hidden layer of each model
    h2: tuple[int, ...] = H2  # second hidden layer, paired with h1 by position
    activation: str = "relu"
    optimizer: str = "adam"
    lr: float = 1e-3
    epochs: int = 20
    batch_size: int = 100
    n_train: int | None = None  # None: the whole training split
    n_test: int | None = None
    seed_chunk: int = 10

    def __post_init__(self):
        ACTIVATIONS.get(self.activation)
        OPTIMIZERS.get(self.optimizer)
        require(len(self.h1) == len(self.h2) >= 2, "h1 and h2 must pair up, with at least two models")
        require(len(set(zip(self.h1, self.h2))) == len(self.h1), "the (h1, h2) pairs must differ")
        require(min(self.h1 + self.h2) >= 1, "hidden widths must be >= 1")
        require(self.lr > 0 and self.epochs >= 1 and self.batch_size >= 1, "need lr > 0, epochs >= 1, batch_size >= 1")


PRESETS = {
    "smoke": Config(h1=(7, 50, 190), h2=(11, 12, 26), epochs=2, n_train=200, n_test=100),
    "default": Config(),
    "paper": Config(data="fashion-mnist", lr=1e-4, epochs=8),
}


def units(cfg: Config, seeds: tuple[int, ...], runtime: Runtime) -> list[Unit]:
    return [Unit("params-generalization", cfg, chunk, runtime, (("h1", a), ("h2", b)))
            for a, b in zip(cfg.h1, cfg.h2) for chunk in seed_chunks(seeds, cfg.seed_chunk)]


def run_unit(unit: Unit) -> dict:
    cfg: Config = unit.config
    data = subsample(load_data(cfg.data, unit.runtime.data_dir), cfg.n_train, cfg.n_test)
    h1, h2 = unit.param("h1"), unit.param("h2")
    spec = TrainSpec(fixed_epochs(cfg.epochs), cfg.batch_size, device=unit.runtime.device)
    fit = fit_members(unit, image_mlp(data, (h1, h2), ACTIVATIONS.get(cfg.activation)), OptSpec(cfg.optimizer, cfg.lr),
                      data.train.x, data.train.y, spec)
    measured = _measure(fit.models, data)
    n_params = count_params(fit.models[0])
    sizes = [math.prod(data.input_shape), h1, h2, data.n_classes]
    return {"runs": [{"condition": f"{h1}-{h2}", "seed": s, "sizes": sizes,
                      "metrics": {"n_params": n_params, **{k: float(v[i]) for k, v in measured.items()}},
                      "curves": {"loss": fit.history["loss"][i].tolist()}} for i, s in enumerate(unit.seeds)]}


def _measure(models, data) -> dict:
    out = split_metrics(models, data)
    out["gap_loss"] = out["test_loss"] - out["train_loss"]
    out["gap_acc"] = out["train_acc"] - out["test_acc"]
    return out


# ---- summary -----------------------------------------------------------------------------------

def summarize(cfg: Config, unit_results: list[dict]) -> dict:
    conditions = add_summaries(group_runs(unit_results), METRICS)
    sizes = {n: c["runs"][0]["metrics"]["n_params"] for n, c in conditions.items()}
    conditions = dict(sorted(conditions.items(), key=lambda kv: sizes[kv[0]]))
    trends = {m: stats.trend(conditions, sizes, m) for m in ("test_acc", "test_loss", "train_loss", "gap_loss", "gap_acc")}
    smallest, largest = next(iter(conditions)), list(conditions)[-1]
    comparisons = [compare(conditions, m, hib, [(largest, smallest)])[0]
                   for m, hib in (("test_acc", True), ("test_loss", False), ("gap_loss", False))]
    return {"conditions": conditions, "trends": trends, "comparisons": comparisons,
            "checks": _checks(trends), "answer": _answer(conditions, smallest, largest, trends),
            "tables": [_table(conditions)]}


def _table(conditions: dict) -> dict:
    # n_params is the same in every seed: a plain column, not a mean with a CI.
    table = summary_table("Per model (h1-h2), over seeds", conditions, METRICS[1:],
                          percent=("train_acc", "test_acc"))
    table["columns"].insert(1, "n_params")
    for row, c in zip(table["rows"], conditions.values()):
        row.insert(1, c["runs"][0]["metrics"]["n_params"])
    return table


def _checks(trends: dict) -> list[dict]:
    acc, loss, gap = trends["test_acc"], trends["test_loss"], trends["gap_loss"]
    lo, hi = gap["summary"]["ci95"]
    return [
        stats.check("Test accuracy rises with the number of parameters", "report B; Neyshabur et al. 2015",
                    stats.ci_clear_of_zero(acc["summary"], +1), _evidence(acc)),
        stats.check("Test loss falls as the number of parameters grows", "report B",
                    stats.ci_clear_of_zero(loss["summary"], -1), _evidence(loss)),
        stats.check("The gap between test and train loss shows no trend with the number of parameters "
                    "(passes when the 95% CI of ρ includes 0)", "report B",
                    gap["summary"]["n"] >= 2 and lo <= 0 <= hi, _evidence(gap)),
    ]


def _evidence(t: dict) -> str:
    s = t["summary"]
    return (f"Spearman ρ(n_params, {t['metric']}) per seed: mean {fmt_num(s['mean'])}, 95% CI "
            f"[{fmt_num(s['ci95'][0])}, {fmt_num(s['ci95'][1])}], n = {s['n']}")


def _answer(conditions: dict, smallest: str, largest: str, trends: dict) -> str:
    acc = [conditions[n]["summary"]["test_acc"]["mean"] for n in (smallest, largest)]
    n = [conditions[c]["runs"][0]["metrics"]["n_params"] for c in (smallest, largest)]
    s = trends["test_acc"]["summary"]
    return (f"Test accuracy went from {acc[0]:.1%} ({smallest}, {n[0]} parameters) to {acc[1]:.1%} "
            f"({largest}, {n[1]} parameters); per-seed Spearman ρ between parameter count and test accuracy "
            f"{fmt_num(s['mean'])} (95% CI [{fmt_num(s['ci95'][0])}, {fmt_num(s['ci95'][1])}], {s['n']} seeds).")


# ---- figures -----------------------------------------------------------------------------------

PANELS = (("loss", ("train_loss", "test_loss"), "cross-entropy loss"),
          ("accuracy", ("train_acc", "test_acc"), "accuracy"),
          ("generalization gap (loss)", ("gap_loss",), "test − train loss"),
          ("generalization gap (accuracy)", ("gap_acc",), "train − test accuracy"))


def figures(results: dict, folder) -> list[str]:
    conditions = results["conditions"]
    x = [c["runs"][0]["metrics"]["n_params"] for c in conditions.values()]
    f, axes = fig.new_figure(ncols=2, nrows=2, size=(10, 7))
    for ax, (title, metrics, ylabel) in zip(axes, PANELS):
        for j, m in enumerate(metrics):
            fig.errorbar_x(ax, x, [c["summary"][m] for c in conditions.values()], label=m, color=fig.color(j),
                           log_x=True, xlabel="number of parameters", ylabel=ylabel)
        ax.set_title(title)
        ax.legend(fontsize=8)
    f.suptitle("Against the number of parameters: mean and 95% CI over seeds")
    return fig.save(f, folder, "by_params") + fig.training_loss_figure(conditions, folder, "Training per model (h1-h2)",
                                                                       fontsize=7, ncols=2)


STUDY = register(Study("params-generalization", "How do test loss, test accuracy and the generalization gap of an "
                       "MLP change with its number of parameters?",
                       PRESETS, run_unit, summarize, figures, units=units, runtime_s="~15 s"))
