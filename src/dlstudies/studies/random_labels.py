"""random-labels: can the network fit random labels, and how much longer does it take? (B7)

    dlstudies run random-labels          # ~1.5 min at default scale on 2 cores

Report B trained a CNN (conv8-conv16-fc100-fc80-10, ReLU, Adam lr 1e-4, batch 100, 100 epochs) on
MNIST with the training labels replaced by random ones. Zhang, Bengio, Hardt, Recht & Vinyals 2017
("Understanding deep learning requires rethinking generalization") showed that such networks
reach 100% training accuracy on random labels, with test accuracy at chance, and that fitting them
takes only a small constant factor longer than fitting the true labels.

Here each seed draws its own random labels (uniform over the classes, from a torch.Generator of
its own stream) and trains beside a true-label run from the same initial weights. Training and
test loss and accuracy are probed after every epoch, and the epochs at which training accuracy
first passes 0.9, 0.95 and 0.99 are recorded, so the slowdown is measured, not guessed: the
per-seed ratio of epochs-to-0.95 (random over true), with a 95% CI over seeds. The check calls the
slowdown "small" when that CI stays below SMALL_FACTOR = 5 (a summary of Zhang et al.'s Figure 1
puts their factor at roughly 1.5-3.5 on CIFAR-10); it is reported whether or not it passes.

Members that train on different labels cannot share a stack (a stack has one label vector), so a
true-label stack holds all the seeds of a chunk and each random-label seed is its own fit.

Default scale (chosen, measured to memorise: every seed past 99% training accuracy on random labels
by epoch ~70): 500 `digits` images, a wider CNN (conv16-conv32-fc256-fc256), Adam at lr 3e-3,
batch 50, 80 epochs. With report B's width, even at ten times its lr (1e-3), 100 epochs on these 500
images left random-label training accuracy near 40% (measured). `paper` keeps report B's settings on
fashion-mnist (MNIST itself is not bundled; `--data mnist --data-dir DIR` uses it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dlstudies.analysis import stats
from dlstudies.config import Runtime, require
from dlstudies.engine import TrainSpec, fixed_epochs
from dlstudies.engine.evaluate import accuracy_probe, loss_probe
from dlstudies.optim import OPTIMIZERS, OptSpec
from dlstudies.registry import Registry
from dlstudies.report import figures as fig
from dlstudies.studies.base import Study, Unit, register, seed_chunks
from dlstudies.studies.image_nets import NETS, check_net, load_split_data
from dlstudies.studies.results import (
    add_summaries,
    compare,
    fmt_ci,
    group_runs,
    summary_table,
)
from dlstudies.studies.training import fit_members

# Random labels come from their own stream, apart from initial weights and sample order.
LABEL_STREAM = 2_000_003
CURVES = ("train_loss", "train_acc", "test_loss", "test_acc")
CHANCE_TOLERANCE = 0.05  # "near chance": test accuracy within 5 points of 1/classes
SMALL_FACTOR = 5.0  # Zhang et al.'s "small constant factor": we call a slowdown below 5x small
TRUE, RANDOM = "true-labels", "random-labels"


def threshold_name(t: float) -> str:
    return f"epochs_to_{round(t * 100)}"


@dataclass(frozen=True)
class Config:
    data: str = "digits"
    model: str = "cnn"  # a NETS name (cnn, mlp)
    channels: tuple[int, ...] = (16, 32)
    hidden: tuple[int, ...] = (256, 256)
    norm: str = "none"
    optimizer: str = "adam"
    lr: float = 3e-3
    batch_size: int = 50
    epochs: int = 80
    thresholds: tuple[float, ...] = (0.9, 0.95, 0.99)  # the slowdown is read at 0.95
    n_train: int | None = 500
    n_test: int | None = None
    seed_chunk: int = 10

    def __post_init__(self):
        check_net(self)
        OPTIMIZERS.get(self.optimizer)
        require(self.lr > 0 and self.epochs >= 1 and self.batch_size >= 1, "need lr > 0, epochs >= 1, batch_size >= 1")
        require(0.95 in self.thresholds and all(0 < t <= 1 for t in self.thresholds),
                "thresholds must lie in (0, 1] and include 0.95 (the slowdown is read there)")


PRESETS = {
    "smoke": Config(channels=(4, 8), hidden=(64,), lr=1e-2, batch_size=25, epochs=4, n_train=100, n_test=100),
    "default": Config(),
    "paper": Config(data="fashion-mnist", channels=(8, 16), hidden=(100, 80), lr=1e-4, batch_size=100, epochs=100,
                    n_train=None),
}

# ---- labels: how a condition's training labels are made, and which seeds can share a fit -------

LABELINGS: Registry = Registry("labeling")


def random_labels(n: int, n_classes: int, seed: int) -> torch.Tensor:
    """Uniform random labels, fixed per seed (Zhang et al.: every training label replaced)."""
    return torch.randint(n_classes, (n,), generator=torch.Generator().manual_seed(LABEL_STREAM + int(seed)))


@LABELINGS.register(TRUE)
def _true(y: torch.Tensor, n_classes: int, seeds) -> list[tuple[list[int], torch.Tensor]]:
    return [(list(seeds), y)]  # one label vector: all seeds in one stack


@LABELINGS.register(RANDOM)
def _random(y: torch.Tensor, n_classes: int, seeds) -> list[tuple[list[int], torch.Tensor]]:
    return [([s], random_labels(len(y), n_classes, s)) for s in seeds]  # one fit per seed


def units(cfg: Config, seeds: tuple[int, ...], runtime: Runtime) -> list[Unit]:
    true = [Unit("random-labels", cfg, chunk, runtime, (("labels", TRUE),)) for chunk in seed_chunks(seeds, cfg.seed_chunk)]
    return true + [Unit("random-labels", cfg, (s,), runtime, (("labels", RANDOM),)) for s in seeds]


# ---- training -----------------------------------------------------------------------------------

def run_unit(unit: Unit) -> dict:
    cfg: Config = unit.config
    data = load_split_data(cfg, unit.runtime)
    condition = unit.param("labels")
    groups = LABELINGS.get(condition)(data.train.y, data.n_classes, unit.seeds)
    return {"runs": [run for seeds, y in groups for run in _fit(cfg, unit, data, condition, seeds, y)]}


def _fit(cfg: Config, unit: Unit, data, condition: str, seeds: list[int], y: torch.Tensor) -> list[dict]:
    x, test = data.train.x, data.test
    probes = (loss_probe("train_loss", x, y, "cross_entropy"), accuracy_probe("train_acc", x, y),
              loss_probe("test_loss", test.x, test.y, "cross_entropy"), accuracy_probe("test_acc", test.x, test.y))
    spec = TrainSpec(fixed_epochs(cfg.epochs), cfg.batch_size, probes=probes, device=unit.runtime.device)
    # Members from the seeds: the same start in both conditions.
    fit = fit_members(unit, NETS.get(cfg.model)(cfg, data), OptSpec(cfg.optimizer, cfg.lr), x, y, spec, seeds)
    return [{**_run(cfg, condition, s, {k: fit.history[k][i] for k in CURVES}), "n_classes": data.n_classes}
            for i, s in enumerate(seeds)]


def _run(cfg: Config, condition: str, seed: int, curves: dict[str, np.ndarray]) -> dict:
    metrics = {k: float(v[-1]) for k, v in curves.items()}
    metrics.update({threshold_name(t): first_epoch(curves["train_acc"], t) for t in cfg.thresholds})
    return {"condition": condition, "seed": seed, "metrics": metrics, "curves": {k: v.tolist() for k, v in curves.items()}}


def first_epoch(acc: np.ndarray, threshold: float) -> int | None:
    """1-based epoch at which accuracy first reaches `threshold`; None if it never does."""
    hits = np.flatnonzero(np.asarray(acc) >= threshold)
    return int(hits[0]) + 1 if hits.size else None


# ---- summary ------------------------------------------------------------------------------------

def summarize(cfg: Config, unit_results: list[dict]) -> dict:
    metrics = (*CURVES, *(threshold_name(t) for t in cfg.thresholds))
    conditions = add_summaries(group_runs(unit_results), metrics)
    conditions = {c: conditions[c] for c in (TRUE, RANDOM)}
    slowdown = _slowdown(conditions, threshold_name(0.95))
    comparisons = [compare(conditions, "test_acc", True, [(TRUE, RANDOM)])[0],
                   compare(conditions, threshold_name(0.95), False, [(TRUE, RANDOM)])[0]]
    chance = 1.0 / conditions[RANDOM]["runs"][0]["n_classes"]
    return {"conditions": conditions, "comparisons": comparisons, "slowdown": slowdown, "chance": chance,
            "checks": _checks(conditions, slowdown, chance), "answer": _answer(conditions, slowdown, chance),
            "tables": [summary_table("Per labelling, over seeds (final epoch; epochs_to_X: first epoch with "
                                     "training accuracy >= X)", conditions, metrics, percent=CURVES[1::2])]}


def _slowdown(conditions: dict, metric: str) -> dict:
    """Per seed: epochs to the threshold with random labels over epochs with true labels."""
    true = {r["seed"]: r["metrics"][metric] for r in conditions[TRUE]["runs"]}
    ratios = {r["seed"]: (r["metrics"][metric] / true[r["seed"]]
                          if r["metrics"][metric] is not None and true.get(r["seed"]) else None)
              for r in conditions[RANDOM]["runs"]}
    return {"metric": metric, "per_seed": ratios, "summary": stats.summary(list(ratios.values())),
            "reached": sum(v is not None for v in ratios.values()), "n": len(ratios)}


def _checks(conditions: dict, slowdown: dict, chance: float) -> list[dict]:
    rand = conditions[RANDOM]["summary"]
    train, test = rand["train_acc"], rand["test_acc"]
    lo, hi = slowdown["summary"]["ci95"]
    return [
        stats.check("The network memorises random labels: final training accuracy >= 95% in every seed",
                    "Zhang et al. 2017", _all(conditions[RANDOM], "train_acc", lambda v: v >= 0.95),
                    f"random-label training accuracy {_pct(train)} over {train['n']} seeds, lowest "
                    f"{min(_values(conditions[RANDOM], 'train_acc')):.1%}"),
        stats.check(f"With random labels test accuracy stays near chance ({chance:.0%} ± {CHANCE_TOLERANCE:.0%})",
                    "Zhang et al. 2017", test["ci95"][0] is not None and abs(test["mean"] - chance) <= CHANCE_TOLERANCE,
                    f"random-label test accuracy {_pct(test)}; true labels {_pct(conditions[TRUE]['summary']['test_acc'])}"),
        stats.check(f"Fitting random labels takes only a small constant factor longer than true labels "
                    f"(here: epochs to 95% training accuracy, ratio below {SMALL_FACTOR:g} with its 95% CI)",
                    "Zhang et al. 2017", slowdown["reached"] == slowdown["n"] >= 2 and hi is not None and hi < SMALL_FACTOR,
                    f"ratio random/true {_num(slowdown['summary']['mean'])} (95% CI [{_num(lo)}, {_num(hi)}]); "
                    f"{slowdown['reached']} of {slowdown['n']} random-label seeds reached 95%"),
    ]


def _values(condition: dict, metric: str) -> list[float]:
    return [r["metrics"][metric] for r in condition["runs"] if r["metrics"][metric] is not None]


def _all(condition: dict, metric: str, test) -> bool:
    values = [r["metrics"][metric] for r in condition["runs"]]
    return len(values) > 0 and all(v is not None and test(v) for v in values)


def _pct(s: dict) -> str:
    return fmt_ci(s, percent=True)


def _num(v) -> str:
    return "n/a" if v is None else f"{v:.3g}"


def _answer(conditions: dict, slowdown: dict, chance: float) -> str:
    rand = conditions[RANDOM]["summary"]
    s = slowdown["summary"]
    text = (f"With random labels the network reached {_pct(rand['train_acc'])} training accuracy but "
            f"{_pct(rand['test_acc'])} test accuracy (chance {chance:.0%})")
    if not slowdown["reached"]:
        return text + f", and passed 95% training accuracy in none of {slowdown['n']} seeds."
    return text + (f", and needed {_num(s['mean'])}x (95% CI [{_num(s['ci95'][0])}, {_num(s['ci95'][1])}]) as many "
                   f"epochs as with true labels to pass 95% training accuracy ({slowdown['reached']} of "
                   f"{slowdown['n']} seeds got there).")


# ---- figures ------------------------------------------------------------------------------------

PANELS = (("train_loss", "training loss"), ("test_loss", "test loss"),
          ("train_acc", "training accuracy (on the labels trained on)"), ("test_acc", "test accuracy (true labels)"))


def figures(results: dict, folder) -> list[str]:
    return _curves_figure(results, folder) + _thresholds_figure(results, folder)


def _curves_figure(results: dict, folder) -> list[str]:
    conditions = results["conditions"]
    f, axes = fig.new_figure(ncols=2, nrows=2, size=(10, 7))
    for ax, (metric, title) in zip(axes, PANELS):
        for j, (name, c) in enumerate(conditions.items()):
            fig.curve_band(ax, [r["curves"][metric] for r in c["runs"]], label=name, color=fig.color(j),
                           ylabel=metric.replace("_", " "))
        ax.set_title(title)
        ax.legend(fontsize=8)
    axes[3].axhline(results["chance"], color="0.5", ls=":", lw=1)
    for t in results["config"]["thresholds"]:
        axes[2].axhline(t, color="0.7", ls=":", lw=0.8)
    f.suptitle("True vs random training labels: mean and 95% band over seeds (dotted: chance, thresholds)")
    return fig.save(f, folder, "curves")


def _thresholds_figure(results: dict, folder) -> list[str]:
    conditions, thresholds = results["conditions"], results["config"]["thresholds"]
    f, ax = fig.new_figure(size=(6, 4))
    for j, (name, c) in enumerate(conditions.items()):
        fig.errorbar_x(ax, thresholds, [c["summary"][threshold_name(t)] for t in thresholds], label=name,
                       color=fig.color(j), log_x=False, xlabel="training accuracy threshold",
                       ylabel="first epoch at or above it")
    ax.set_title("Epochs to a training accuracy\n(mean and 95% CI over the seeds that reached it)", fontsize=10)
    ax.legend()
    return fig.save(f, folder, "epochs_to_threshold")


STUDY = register(Study("random-labels", "Can the network fit random labels, and how much longer does it take than "
                       "fitting the true ones?", PRESETS, run_unit, summarize, figures, units=units, runtime_s="~1.5 min"))
