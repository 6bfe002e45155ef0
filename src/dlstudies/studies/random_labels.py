"""random-labels: can the network fit random labels, and what does label noise cost? (B7)

    dlstudies run random-labels          # ~3 min at default scale on 2 cores (10 seeds)

Report B trained a CNN (conv8-conv16-fc100-fc80-10, ReLU, Adam lr 1e-4, batch 100, 100 epochs) on
MNIST with the training labels replaced by random ones. Zhang, Bengio, Hardt, Recht & Vinyals 2017
("Understanding deep learning requires rethinking generalization") showed that such networks
reach 100% training accuracy on random labels, with test accuracy at chance, and (their Figure 1)
swept the fraction of corrupted labels: as it grows, the time to fit the training set grows and
test accuracy falls towards chance.

Here, as Zhang et al.: a fraction p of the training labels (exactly round(p·n) of them) is replaced
by labels drawn uniformly over the classes (a drawn label may coincide with the true one), fixed per
seed from a stream of its own; the levels are nested (for a seed, the labels corrupted at p = 0.4
include those at p = 0.2, with the same replacements), so neighbouring levels differ only in the
added noise. Every level trains from the seed's initial weights and sample order. Per run:
training and test loss and accuracy after every `probe_every`-th epoch (one forward per set; the
first and last epochs always), `fit_epochs` (the first epoch with training accuracy ≥ `fit_level`
on the labels trained on; between probes read off the straight line joining them) and the first
epochs at each of `thresholds`.
Per seed and level, the slowdown factor fit_epochs(p) / fit_epochs(0) is a curve over p (geometric
mean and CI over seeds) — no threshold decides what a "small" slowdown is. Claims: memorisation
(training accuracy at the highest level ≥ Zhang et al.'s level), test accuracy falls and fitting
takes longer as p grows (per-seed rank trends over the levels).

Every level trains its seeds in stacks of `seed_chunk` (a seed's numbers do not depend on the
stack it trains in); at a corrupted level each member trains on its own seed's labels
(`member_targets`). A run that never reaches `fit_level` has no fit_epochs; it is counted, not dropped.

Default scale (chosen from pilot runs): 500 `digits` images, a wider CNN (conv16-conv32-fc256-fc256),
Adam at lr 3e-3, batch 50, 100 epochs (at 80, two of ten seeds were still short of 99% training
accuracy on fully random labels; both passed it by epoch 84). With report B's width, even at ten times its lr (1e-3), 100 epochs on these
500 images left random-label training accuracy near 40% (measured). `paper` keeps report B's
settings on fashion-mnist (28x28; MNIST itself with `--data mnist --data-dir DIR`): 10 seeds at
p = 0 and 1 (report B's two runs), 3 at the levels between (`added_seeds`), whose trend claims then
read "n too small"; stacks of 5 seeds so that two workers share them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from dlstudies.analysis import stats
from dlstudies.analysis.claims import Claim, opening
from dlstudies.analysis.measures import effect_text, interval_text, value_text
from dlstudies.config import EPOCHS, Runtime, reals, require
from dlstudies.engine import TrainSpec, fixed_epochs
from dlstudies.engine.evaluate import every, loss_accuracy_probe, probe_interval
from dlstudies.optim import OPTIMIZERS, OptSpec
from dlstudies.report import figures as fig
from dlstudies.studies.base import Study, StudyConfig, Unit, added_seeds_field, first_seeds, register, seed_blocks
from dlstudies.studies.image_nets import NETS, check_net, load_split_data
from dlstudies.studies.params_generalization import point
from dlstudies.studies.results import best_still_improving, main_table
from dlstudies.studies.training import divergence, fit_members

# Corrupted labels come from their own stream, apart from initial weights and sample order.
LABEL_STREAM = 2_000_003
CURVES = ("train_loss", "train_acc", "test_loss", "test_acc")
METRICS = ("best_train_acc", "train_acc", "test_acc", "fit_epochs", "train_loss", "test_loss")
LEVELS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # Zhang et al. 2017, Figure 1
MEMORISED = 0.99  # Zhang et al. 2017, Table 1: random labels fitted to >= 99% training accuracy
SOURCE = "Zhang et al. 2017"


def threshold_name(t: float) -> str:
    return f"epochs_to_{round(t * 100)}"


def condition(p: float) -> str:
    return f"p={p:g}"


@dataclass(frozen=True)
class Config(StudyConfig):
    data: str = "digits"
    model: str = "cnn"  # a NETS name (cnn, mlp)
    channels: tuple[int, ...] = (16, 32)
    hidden: tuple[int, ...] = (256, 256)
    norm: str = "none"
    optimizer: str = "adam"
    lr: float = 3e-3
    batch_size: int = 50
    epochs: int = 100
    # fraction of training labels replaced by uniform random ones, one condition per level
    corruption: tuple[float, ...] = field(default=LEVELS, metadata={"rule": reals(0, 1, noun="fractions")})
    fit_level: float = field(default=0.95, metadata={"rule": reals(0, 1, lo_open=True)})
    thresholds: tuple[float, ...] = (0.9, 0.95, 0.99)  # training accuracies whose first epoch is recorded
    n_train: int | None = 500
    n_test: int | None = None
    seed_chunk: int = 10
    # Probes (train and test loss and accuracy) after epochs 1, k, 2k, ... and the last; NaN between.
    probe_every: int = field(default=1, metadata={"rule": EPOCHS})
    # Seeds of the levels strictly between 0 and 1 (report B ran only the true and the random labels).
    added_seeds: int | None = added_seeds_field()

    def validate(self) -> None:
        check_net(self)
        OPTIMIZERS.get(self.optimizer)
        require(len(set(self.corruption)) == len(self.corruption) >= 5 and 0.0 in self.corruption,
                f"corruption must list at least five distinct levels including 0 (the true labels), got {self.corruption}")


PRESETS = {
    "smoke": Config(channels=(4, 8), hidden=(64,), lr=1e-2, batch_size=25, epochs=4, n_train=100, n_test=100,
                    corruption=(0.0, 0.25, 0.5, 0.75, 1.0)),
    "default": Config(),
    "paper": Config(data="fashion-mnist", channels=(8, 16), hidden=(100, 80), lr=1e-4, batch_size=100, epochs=100,
                    n_train=None, seed_chunk=5, probe_every=probe_interval(100), added_seeds=3),
}


# ---- labels -------------------------------------------------------------------------------------

def corruption_plan(n: int, n_classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(order, draws) of a seed: labels are corrupted at the positions order[:k], each replaced by
    draws[position], uniform over the classes (it may equal the true label)."""
    g = torch.Generator().manual_seed(LABEL_STREAM + int(seed))
    return torch.randperm(n, generator=g), torch.randint(n_classes, (n,), generator=g)


def corrupt_labels(y: torch.Tensor, n_classes: int, p: float, seed: int) -> torch.Tensor:
    """y with exactly round(p·n) labels replaced by uniform draws over the classes, fixed per seed.
    The positions are a prefix of one random permutation and every position has its draw, so a
    higher level corrupts a superset of a lower one's positions, with the same draws."""
    order, draws = corruption_plan(len(y), n_classes, seed)
    picked = order[:corrupted_count(len(y), p)]
    out = y.clone()
    out[picked] = draws[picked].to(y.dtype)
    return out


def corrupted_count(n: int, p: float) -> int:
    return int(round(p * n))


# ---- units and training -------------------------------------------------------------------------

def level_seeds(cfg: Config, p: float, seeds: tuple[int, ...]) -> tuple[int, ...]:
    """The seeds level p runs: every seed at report B's levels (0 and 1), `added_seeds` between."""
    return first_seeds(seeds, None if p in (0.0, 1.0) else cfg.added_seeds)


def units(cfg: Config, seeds: tuple[int, ...], runtime: Runtime) -> list[Unit]:
    """Per level, a stack per block of `seed_chunk` of its seeds (a corrupted level's members each
    train on their own seed's labels)."""
    return [Unit("random-labels", cfg, block, runtime, (("corruption", p),))
            for p in cfg.corruption for block in seed_blocks(level_seeds(cfg, p, seeds), cfg.seed_chunk)]


def run_unit(unit: Unit) -> dict:
    cfg: Config = unit.config
    data = load_split_data(cfg, unit.runtime)
    p = unit.param("corruption")
    y = data.train.y if p == 0 else torch.stack([corrupt_labels(data.train.y, data.n_classes, p, s) for s in unit.seeds])
    return {"runs": _fit(cfg, unit, data, p, y)}


def probes(cfg: Config, x: torch.Tensor, y: torch.Tensor, test) -> tuple:
    """Loss and accuracy on the training labels trained on and on the test set, one forward per set,
    every `probe_every` epochs (a fresh pair per fit: `every` counts its fit's epochs)."""
    pair = (loss_accuracy_probe("train", x, y, "cross_entropy"), loss_accuracy_probe("test", test.x, test.y, "cross_entropy"))
    return pair if cfg.probe_every == 1 else tuple(every(cfg.probe_every, p, cfg.epochs) for p in pair)


def _fit(cfg: Config, unit: Unit, data, p: float, y: torch.Tensor) -> list[dict]:
    """The unit's seeds as one stack on labels y: the true ones (n,), or each seed's own (M, n)."""
    x, test, seeds, own = data.train.x, data.test, list(unit.seeds), y.dim() == 2
    spec = TrainSpec(fixed_epochs(cfg.epochs), cfg.batch_size, probes=probes(cfg, x, y, test), device=unit.runtime.device,
                     member_targets=own)
    # Members from the seeds: every level starts from the seed's weights.
    fit = fit_members(unit, NETS.get(cfg.model)(cfg, data), OptSpec(cfg.optimizer, cfg.lr), x, y, spec, seeds)
    changed = (y != data.train.y).double().mean(-1).expand(len(seeds))
    return [{**_run(cfg, p, s, {k: fit.history[k][i] for k in CURVES}, float(changed[i])), **divergence(fit, i),
             "n_classes": data.n_classes} for i, s in enumerate(seeds)]


def _run(cfg: Config, p: float, seed: int, curves: dict[str, np.ndarray], changed: float) -> dict:
    metrics = {"corruption": p, "labels_changed_fraction": changed, **{k: float(v[-1]) for k, v in curves.items()},
               "fit_epochs": first_epoch(curves["train_acc"], cfg.fit_level),
               # Whether the labels were fitted: at a constant Adam lr the last epoch can land on a spike
               # (at default one seed fell from 100% to 92% in its last epoch), so the best epoch is read.
               "best_train_acc": _best(curves["train_acc"])}
    metrics.update({threshold_name(t): first_epoch(curves["train_acc"], t) for t in cfg.thresholds})
    return {"condition": condition(p), "seed": seed, "metrics": metrics,
            "still_improving": best_still_improving(curves["train_loss"]), "curves": {k: v.tolist() for k, v in curves.items()}}


def _best(curve: np.ndarray) -> float | None:
    finite = np.asarray(curve, dtype=float)[np.isfinite(curve)]
    return float(finite.max()) if finite.size else None


def first_epoch(acc: np.ndarray, threshold: float) -> int | None:
    """1-based epoch at which accuracy first reaches `threshold`; None if it never does. NaN epochs
    (not probed) are read between their probed neighbours: where accuracy rose from a < threshold at
    epoch e0 to b ≥ threshold at e1, the epoch at which the straight line from a to b reaches the
    threshold, rounded up to a whole epoch (the next probe, e1, would err late by up to e1 − e0 − 1).
    With every epoch probed it is the first epoch whose accuracy reaches the threshold."""
    acc = np.asarray(acc, dtype=float)
    epochs = np.flatnonzero(np.isfinite(acc))
    hits = np.flatnonzero(acc[epochs] >= threshold)
    if not hits.size:
        return None
    k = hits[0]
    if k == 0:
        return int(epochs[0]) + 1
    (e0, e1), (a, b) = epochs[k - 1:k + 1], acc[epochs[k - 1:k + 1]]
    return int(e0 + max(1, math.ceil((threshold - a) / (b - a) * (e1 - e0) - 1e-9))) + 1


# ---- summary, claims, answer ---------------------------------------------------------------------

def summarize(cfg: Config, unit_results: list[dict], standard: dict) -> dict:
    conditions = {condition(p): standard["conditions"][condition(p)] for p in sorted(cfg.corruption)}
    slowdown = slowdown_table(conditions)
    return {"conditions": conditions, "table": main_table(conditions, METRICS, "Per corruption level p, over seeds "
                                                          f"(fit_epochs: first epoch with training accuracy ≥ {cfg.fit_level:g})"),
            "slowdown": slowdown, "chance": 1.0 / _n_classes(unit_results),
            "tables": [_slowdown_rows(slowdown)]}


def _n_classes(unit_results: list[dict]) -> int:
    return unit_results[0]["runs"][0]["n_classes"]


def slowdown_table(conditions: dict) -> dict:
    """Per level, per seed: slowdown_factor = fit_epochs(p) / fit_epochs(p = 0), and its summary
    (geometric mean, t interval on logs); None where either run never fit."""
    base = {r["seed"]: r["metrics"]["fit_epochs"] for r in conditions[condition(0.0)]["runs"]}
    table = {}
    for name, c in conditions.items():
        runs = [{"seed": r["seed"], "metrics": {"corruption": r["metrics"]["corruption"],
                                                "slowdown_factor": _ratio(r["metrics"]["fit_epochs"], base.get(r["seed"]))}}
                for r in c["runs"]]
        table[name] = {"runs": runs, "summary": stats.describe([r["metrics"]["slowdown_factor"] for r in runs],
                                                              "slowdown_factor")}
    return table


def _ratio(a, b):
    return a / b if a is not None and b else None


def _slowdown_rows(slowdown: dict) -> dict:
    rows = [[name, f"{effect_text('slowdown_factor', s['value'])} {interval_text('slowdown_factor', s['ci95'], effect=True)}",
             f"{s['n']} of {s['n'] + s['n_missing']}"] for name, s in ((n, c["summary"]) for n, c in slowdown.items())]
    return {"title": "Slowdown: epochs to fit at p over epochs to fit with true labels, per seed "
                     "(geometric mean [95% CI, t on logs])",
            "columns": ["level", "slowdown_factor", "seeds that fit at both levels"], "rows": rows}


def claims(cfg: Config) -> list[Claim]:
    top = condition(max(cfg.corruption))
    return [
        Claim(f"The network memorises the labels at p = {max(cfg.corruption):g}: training accuracy (its best epoch) "
              f"≥ {MEMORISED:.0%}", f"{SOURCE}, Table 1", "best_train_acc", "threshold", a=top, threshold=MEMORISED, direction="higher"),
        Claim("Test accuracy falls as the fraction of corrupted labels grows", f"{SOURCE}, Figure 1c", "test_acc",
              "trend", x="corruption", direction="lower"),
        Claim("Fitting the training set takes longer as the fraction of corrupted labels grows",
              f"{SOURCE}, Figure 1b", "fit_epochs", "trend", x="corruption", direction="higher"),
    ]


def answer(cfg: Config, results: dict) -> str:
    memorised, falls, slower = results["checks"]
    top = condition(max(cfg.corruption))
    s = results["slowdown"][top]["summary"]
    test = {n: results["conditions"][n]["summary"]["test_acc"] for n in (condition(0.0), top)}
    slow = (f"after {effect_text('slowdown_factor', s['value'])} {interval_text('slowdown_factor', s['ci95'], effect=True)} "
            f"as many epochs as with true labels ({s['n']} of {s['n'] + s['n_missing']} seeds fit at both)"
            if s["value"] is not None else f"and no seed reached {cfg.fit_level:.0%} training accuracy at both p = 0 and {top}")
    final = results["conditions"][top]["summary"]["train_acc"]
    return (f"{opening(memorised['verdict'])} at {top} training accuracy reached {value_text('train_acc', memorised['effect'])} "
            f"{interval_text('train_acc', memorised['ci95'])} at its best epoch ({_value(final)} at the last), {slow}. "
            f"Test accuracy went from {_value(test[condition(0.0)])} to "
            f"{_value(test[top])} (chance {results['chance']:.0%}). Falls with corruption: {falls['verdict']}; fitting "
            f"takes longer with corruption: {slower['verdict']}." + _still_falling(results["convergence"]))


def _still_falling(convergence: dict) -> str:
    late, runs = (sum(c[k] for c in convergence.values()) for k in ("still_improving", "runs"))
    return (f" The training loss of {late} of {runs} runs was still falling at the end (best value > 1% lower over "
            "the last 10% of epochs)." if late else "")


def _value(s: dict) -> str:
    return f"{value_text('test_acc', s['value'])} {interval_text('test_acc', s['ci95'])}"


def setup(cfg: Config) -> str:
    net = f"CNN conv{'-conv'.join(map(str, cfg.channels))}-fc{'-fc'.join(map(str, cfg.hidden))}" if cfg.model == "cnn" \
        else f"MLP {'-'.join(map(str, cfg.hidden))}"
    return (f"data {cfg.data} ({cfg.n_train or 'all'} training images); {net}; {cfg.optimizer} lr {cfg.lr:g}, batch "
            f"{cfg.batch_size}, {cfg.epochs} epochs; corruption levels {', '.join(f'{p:g}' for p in cfg.corruption)}")


# ---- figures ------------------------------------------------------------------------------------

PANELS = (("train_loss", "training loss"), ("test_loss", "test loss"),
          ("train_acc", "training accuracy (on the labels trained on)"), ("test_acc", "test accuracy (true labels)"))


def figures(results: dict, folder) -> list[str]:
    return _curves_figure(results, folder) + _sweep_figure(results, folder)


def _curves_figure(results: dict, folder) -> list[str]:
    conditions = results["conditions"]
    f, axes = fig.new_figure(ncols=2, nrows=2, size=(10.8, 7))
    colors = fig.condition_colors(conditions, sequence=True)  # p is a sequence: dark (clean) to light (random)
    for ax, (metric, title) in zip(axes, PANELS):
        epochs = probed_epochs([r["curves"][metric] for c in conditions.values() for r in c["runs"]])
        for name, c in conditions.items():
            fig.curve_band(ax, [np.asarray(r["curves"][metric], dtype=float)[epochs - 1] for r in c["runs"]],
                           label=name, color=colors[name], x=epochs, ylabel=metric.replace("_", " "))
        ax.set_title(title)
    f.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper", fontsize=8)  # one legend for four panels
    axes[3].axhline(results["chance"], color="0.5", ls=":", lw=1)
    axes[2].axhline(results["config"]["fit_level"], color="0.7", ls=":", lw=0.8)
    f.suptitle("Per corruption level p: mean and 95% band over seeds (dotted: chance, fit level)")
    return fig.save(f, folder, "curves")


def probed_epochs(curves: list) -> np.ndarray:
    """1-based epochs at which some curve has a value: a line through them (the NaN epochs between
    probes would break it into dots)."""
    values = np.array([[np.nan if v is None else v for v in c] for c in curves], dtype=float)
    return np.flatnonzero(np.isfinite(values).any(0)) + 1


def _sweep_figure(results: dict, folder) -> list[str]:
    """Zhang et al.'s Figure 1 (b, c) here: epochs to fit, slowdown and test accuracy against p."""
    conditions, slowdown = results["conditions"], results["slowdown"]
    p = [c["runs"][0]["metrics"]["corruption"] for c in conditions.values()]
    f, axes = fig.new_figure(ncols=3, size=(14, 3.8))
    panels = ((axes[0], [point(c["summary"]["fit_epochs"]) for c in conditions.values()], "epochs to fit"),
              (axes[1], [point(c["summary"]) for c in slowdown.values()], "slowdown factor vs p = 0"),
              (axes[2], [point(c["summary"]["test_acc"]) for c in conditions.values()], "test accuracy"))
    for ax, summaries, ylabel in panels:
        fig.errorbar_x(ax, p, summaries, color=fig.color(0), log_x=False, xlabel="fraction of labels corrupted p",
                       ylabel=ylabel)
        ax.set_title(ylabel + " (95% CI over seeds)")
    axes[2].axhline(results["chance"], color="0.5", ls=":", lw=1)
    return fig.save(f, folder, "corruption_sweep")


STUDY = register(Study("random-labels", "Can the network fit random labels, and do fitting time and test accuracy "
                       "worsen as more labels are corrupted?", PRESETS, run_unit, summarize, figures, units=units,
                       runtime_s="~3 min", seeds={"smoke": 3, "default": 10, "paper": 10}, metrics=METRICS,
                       claims=claims, answer=answer, setup=setup))
