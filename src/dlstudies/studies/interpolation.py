"""interpolation: does the small-batch solution sit in a flatter basin than the large-batch one? (B9)

    dlstudies run interpolation          # ~1 min at default scale on 2 cores

Report B trained one CNN (conv8-conv32-fc256-fc128-10, ReLU) with batch 75 and with batch 500
(SGD, momentum 0.9, Nesterov, lr 0.01, 28 epochs) and plotted the train/test loss and accuracy of
θ(α) = (1−α)·θ_small + α·θ_large. As in Goodfellow, Vinyals & Saxe (2015) and Keskar et al. (2017,
Figure 3), α runs over [−1, 2] so that the walls of both basins show; both models start from the
same initial weights for a seed (Keskar et al.; `--set same_init=false` starts the large-batch model
from its own weights instead), and BatchNorm running statistics are interpolated with the weights
(`dlstudies.analysis.interpolation`; `--set model=mlp --set norm=batchnorm` exercises that path).
The endpoints must reproduce the two trained models' own losses, and a check says whether they do.

Flatness along the line is measured as the rise of the training loss a distance d outside each
endpoint (d in units of α, i.e. of ‖θ_large − θ_small‖, the same for both ends), for d in `flanks`;
the check reads the most local one, the first (d = 0.1): farther out both sides leave their basins
and the loss there says more about the line than about either minimum.

Default scale (chosen): the 8x8 `digits`, lr 0.05 and 70 epochs; measured: by then every batch size
up to 512 is past 99% training accuracy. At report B's lr 0.01 and 28 epochs a batch of 500 hardly
leaves the initial loss on 1,077 images (3 steps an epoch), and comparing the basin of a trained
model with the surroundings of an untrained one says nothing about flatness.
Literature: Keskar et al. 2017 find large-batch training converges to sharper minimizers that
generalize worse; along the line between the two the loss rises faster around the large-batch one.

The networks and their training are shared with `sensitivity` (B10, part 2 of the same question)
and `random-labels`: `dlstudies.studies.image_nets`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dlstudies.analysis import interpolation_curve, stats
from dlstudies.config import Runtime, require
from dlstudies.optim import OPTIMIZERS
from dlstudies.report import figures as fig
from dlstudies.studies.base import Study, Unit, register, seed_chunks
from dlstudies.studies.image_nets import check_net, load_split_data, train_stack
from dlstudies.studies.results import (
    add_summaries,
    compare,
    fmt_p,
    group_runs,
    summary_table,
)
from dlstudies.studies.training import split_metrics

# Stream for the large-batch model's initial weights when same_init=False: apart from every seed.
INDEPENDENT_INIT_STREAM = 3_000_017
# Endpoint losses are recomputed by another code path (functional_call vs the stacked forward):
# float32 sums agree to ~1e-7 relative, far inside this.
ENDPOINT_RTOL = 1e-5
SPLITS = ("train", "test")
METRICS = ("train_loss", "test_loss", "train_acc", "test_acc")


# ---- the study ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Config:
    data: str = "digits"
    model: str = "cnn"  # a NETS name
    channels: tuple[int, ...] = (8, 32)
    hidden: tuple[int, ...] = (256, 128)
    norm: str = "none"  # model=mlp only: none, batchnorm, layernorm
    small_batch: int = 75
    large_batch: int = 500
    optimizer: str = "nesterov"
    lr: float = 0.05
    momentum: float = 0.9
    epochs: int = 70
    same_init: bool = True  # Keskar et al.; False: the large-batch model starts from its own weights
    alpha_min: float = -1.0
    alpha_max: float = 2.0
    n_alphas: int = 31
    flanks: tuple[float, ...] = (0.1, 0.25, 0.5)  # where outside each endpoint (in α) the loss rise is read
    n_train: int | None = None  # None: the whole training split
    n_test: int | None = None
    eval_batch: int = 1000  # bounds memory only
    seed_chunk: int = 10

    def __post_init__(self):
        check_net(self)
        OPTIMIZERS.get(self.optimizer)
        require(1 <= self.small_batch < self.large_batch, "need 1 <= small_batch < large_batch")
        require(self.lr > 0 and 0 <= self.momentum < 1, "need lr > 0 and momentum in [0, 1)")
        require(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        require(self.alpha_min <= 0 and self.alpha_max >= 1, "the α range must contain both endpoints 0 and 1")
        require(self.n_alphas >= 2 and self.eval_batch >= 1, "need n_alphas >= 2 and eval_batch >= 1")
        require(len(self.flanks) >= 1 and all(d > 0 for d in self.flanks), "flanks must hold at least one distance > 0")


PRESETS = {
    "smoke": Config(channels=(4, 8), hidden=(32, 16), small_batch=25, large_batch=100, epochs=2, n_alphas=7,
                    n_train=200, n_test=100),
    "default": Config(),
    "paper": Config(data="fashion-mnist", lr=0.01, epochs=28),
}


def units(cfg: Config, seeds: tuple[int, ...], runtime: Runtime) -> list[Unit]:
    return [Unit("interpolation", cfg, chunk, runtime) for chunk in seed_chunks(seeds, cfg.seed_chunk)]


def alphas(cfg: Config) -> np.ndarray:
    # Rounded so that 0 and 1 are on the grid exactly: the endpoints are then the trained models.
    grid = np.round(np.linspace(cfg.alpha_min, cfg.alpha_max, cfg.n_alphas), 10)
    return np.union1d(grid, [0.0, 1.0])


def _batch_accuracy(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (outputs.argmax(-1) == y).double().mean()


def run_unit(unit: Unit) -> dict:
    cfg: Config = unit.config
    data = load_split_data(cfg, unit.runtime)
    large_init = None if cfg.same_init else [INDEPENDENT_INIT_STREAM + s for s in unit.seeds]
    small = train_stack(cfg, unit, data, cfg.small_batch)
    large = train_stack(cfg, unit, data, cfg.large_batch, large_init)
    splits = {s: (getattr(data, s).x.to(unit.runtime.device), getattr(data, s).y.to(unit.runtime.device))
              for s in SPLITS}
    curves = [_curve(cfg, a, b, splits) for a, b in zip(small.models, large.models)]
    curves = [{"seed": s, **c} for s, c in zip(unit.seeds, curves)]
    runs = (_runs(cfg, f"batch-{cfg.small_batch}", small, data, curves, 0.0, -1)
            + _runs(cfg, f"batch-{cfg.large_batch}", large, data, curves, 1.0, +1))
    return {"runs": runs, "curves": curves}


def _curve(cfg: Config, model_a, model_b, splits) -> dict:
    c = interpolation_curve(model_a, model_b, F.cross_entropy, _batch_accuracy, splits, alphas(cfg), cfg.eval_batch)
    out = {"alphas": c.alphas.tolist()}
    for s in SPLITS:
        out[f"{s}_loss"], out[f"{s}_acc"] = c.loss[s].tolist(), c.accuracy[s].tolist()
    return out


def _runs(cfg: Config, name: str, fit, data, curves, endpoint: float, side: int) -> list[dict]:
    """One run per seed; `side` says on which side of the endpoint (α) the flank lies."""
    own = split_metrics(fit.models, data, SPLITS)
    runs = []
    for i, curve in enumerate(curves):
        metrics = {k: float(v[i]) for k, v in own.items()}
        for d in cfg.flanks:
            metrics[flank_name(d)] = _at(curve, "train_loss", endpoint + side * d) - _at(curve, "train_loss", endpoint)
        for s in SPLITS:  # the curve's endpoint beside the model's own loss: they must agree
            metrics[f"endpoint_{s}_loss"] = _at(curve, f"{s}_loss", endpoint)
        metrics["endpoint_error"] = max(abs(metrics[f"endpoint_{s}_loss"] - metrics[f"{s}_loss"]) for s in SPLITS)
        runs.append({"condition": name, "seed": curve["seed"], "metrics": metrics,
                     "curves": {"loss": fit.history["loss"][i].tolist()}})
    return runs


def flank_name(d: float) -> str:
    return f"flank_rise_{round(d * 100)}"


def _at(curve: dict, key: str, alpha: float) -> float:
    return float(np.interp(alpha, curve["alphas"], curve[key]))


# ---- summary -----------------------------------------------------------------------------------

def summarize(cfg: Config, unit_results: list[dict]) -> dict:
    flanks = [flank_name(d) for d in cfg.flanks]
    conditions = add_summaries(group_runs(unit_results), (*METRICS, *flanks, "endpoint_error"))
    small, large = f"batch-{cfg.small_batch}", f"batch-{cfg.large_batch}"
    higher_is_better = {"test_acc": True, "test_loss": False, "train_loss": False, **{f: False for f in flanks}}
    cmp = {m: compare(conditions, m, hib, [(small, large)])[0] for m, hib in higher_is_better.items()}
    curves = sorted((c for r in unit_results for c in r["curves"]), key=lambda c: c["seed"])
    barrier = stats.summary([_barrier(c) for c in curves])
    return {"conditions": conditions, "comparisons": list(cmp.values()), "curves": curves, "barrier": barrier,
            "checks": _checks(conditions, cmp, flanks, small, large),
            "answer": _answer(cfg, conditions, cmp, barrier, small, large),
            "tables": [summary_table("Endpoints (the two trained models), over seeds", conditions, (*METRICS, *flanks),
                                     percent=("train_acc", "test_acc"))]}


def _barrier(curve: dict) -> float:
    """Highest training loss on the segment between the solutions, above the higher endpoint."""
    a, loss = np.asarray(curve["alphas"]), np.asarray(curve["train_loss"])
    inside = (a >= 0) & (a <= 1)
    return float(loss[inside].max() - max(_at(curve, "train_loss", 0.0), _at(curve, "train_loss", 1.0)))


def _checks(conditions: dict, cmp: dict, flanks: list[str], small: str, large: str) -> list[dict]:
    runs = [r for c in conditions.values() for r in c["runs"]]
    worst = max(r["metrics"]["endpoint_error"] - ENDPOINT_RTOL * (1 + max(r["metrics"][f"{s}_loss"] for s in SPLITS))
                for r in runs)
    error = max(r["metrics"]["endpoint_error"] for r in runs)
    acc, flank = cmp["test_acc"], cmp[flanks[0]]
    return [
        stats.check("The interpolation's endpoints reproduce the two trained models' own train and test losses",
                    "definition: θ(0) = θ_small, θ(1) = θ_large", worst <= 0,
                    f"largest |endpoint loss − trained model's loss| over {len(runs)} models: {error:.2g} "
                    f"(tolerance {ENDPOINT_RTOL:g}·(1 + loss))"),
        stats.check(f"The small-batch model ({small}) reaches a higher test accuracy than the large-batch one ({large})",
                    "Keskar et al. 2017; report B", stats.ci_clear_of_zero(acc), _evidence(acc, "test accuracy", percent=True)),
        stats.check("The training loss rises faster outside the large-batch solution than outside the small-batch one "
                    "(a sharper basin along the line)", "Keskar et al. 2017, Figure 3",
                    stats.ci_clear_of_zero(flank, sign=-1),
                    "; ".join(_evidence(cmp[f], f"loss rise {int(f.rsplit('_', 1)[1]) / 100:g}·‖θ_large − θ_small‖ "
                                            "outside the endpoint") for f in flanks)),
    ]


def _evidence(cmp: dict, what: str, percent: bool = False) -> str:
    scale = 100.0 if percent else 1.0
    lo, hi = (v * scale if v is not None else float("nan") for v in cmp["ci95"])
    return (f"{what}, {cmp['a']} − {cmp['b']}: mean {cmp['diff'] * scale:.3g}{'%' if percent else ''} "
            f"(95% CI [{lo:.3g}, {hi:.3g}]), {cmp['a']} better in {cmp['wins'][cmp['a']]} of {cmp['n']} seeds, "
            f"p = {fmt_p(cmp['p_value'])} ({cmp['test']})")


def _answer(cfg: Config, conditions: dict, cmp: dict, barrier: dict, small: str, large: str) -> str:
    name, acc = flank_name(cfg.flanks[0]), cmp["test_acc"]
    rise = {c: conditions[c]["summary"][name]["mean"] for c in (small, large)}
    lo, hi = cmp[name]["ci95"]
    ci = f"[{lo:.3g}, {hi:.3g}]" if lo is not None else "[n/a]"
    return (f"At {cfg.flanks[0]:g}·‖θ_large − θ_small‖ outside its endpoint the training loss rose by {rise[large]:.3g} "
            f"for {large} and by {rise[small]:.3g} for {small} (95% CI of the paired difference {ci}, "
            f"{cmp[name]['n']} seeds); {small}'s test accuracy was {acc['diff'] * 100:.2g} points higher on average, "
            f"and between the two solutions the loss climbed {barrier['mean']:.3g} above the higher endpoint.")


# ---- figures -----------------------------------------------------------------------------------

def figures(results: dict, folder) -> list[str]:
    return _interpolation_figure(results, folder) + fig.training_loss_figure(
        results["conditions"], folder, "Training of the two endpoints (mean and 95% band over seeds)")


def _interpolation_figure(results: dict, folder) -> list[str]:
    curves, conditions = results["curves"], results["conditions"]
    f, axes = fig.new_figure(ncols=2, size=(10, 3.8))
    for ax, kind, label in ((axes[0], "loss", "cross-entropy loss"), (axes[1], "acc", "accuracy")):
        for j, split in enumerate(SPLITS):
            fig.curve_band(ax, [c[f"{split}_{kind}"] for c in curves], label=split, color=fig.color(j),
                           x=curves[0]["alphas"], xlabel="α  (θ = (1−α)·θ_small + α·θ_large)", ylabel=label)
        _mark_endpoints(ax, conditions, kind)
        ax.legend(fontsize=8)
    f.suptitle("Linear interpolation between the small- and large-batch solutions (mean and 95% band over seeds)")
    return fig.save(f, folder, "interpolation")


def _mark_endpoints(ax, conditions: dict, kind: str) -> None:
    """Dotted lines at α = 0 and 1, and the trained models' own values as markers (they must coincide)."""
    for alpha, (name, c) in zip((0.0, 1.0), conditions.items()):
        ax.axvline(alpha, color="0.5", ls=":", lw=1)
        ax.text(alpha, 1.0, f" {name}", transform=ax.get_xaxis_transform(), fontsize=8, va="bottom", ha="center")
        for j, split in enumerate(SPLITS):
            ax.plot([alpha], [c["summary"][f"{split}_{kind}"]["mean"]], marker="o", mfc="none", color=fig.color(j), ms=8)


STUDY = register(Study("interpolation", "Along the line between a small-batch and a large-batch solution, which "
                       "one sits in the flatter basin, and which generalizes better?",
                       PRESETS, run_unit, summarize, figures, units=units, runtime_s="~1 min"))
