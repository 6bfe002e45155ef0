"""grad-norm: how does the gradient norm move while the training loss falls?

    dlstudies run grad-norm             # ~10 s at default scale on 2 cores

Report B recorded the loss and the Euclidean norm of the gradient during training and wrote that
"the gradient norm shows a decreasing trend, particularly in the initial epochs" and then
stabilises while the loss keeps falling. Here both are recorded at every iteration (the norm of
the mini-batch gradient of the batch-mean loss, over all parameters, before the update) for
several seeds. Report B trained on a 1-D function; this study uses a small image classifier
*(chosen)*: an MLP 64-32-10 with ReLU on the bundled 8x8 `digits`, Adam lr 1e-3, batch 32,
30 epochs at default (any dataset, width and optimizer can be set).

Literature: Goodfellow, Bengio & Courville (2016, "Deep Learning", section 8.2.1 and Figure 8.1)
show a network whose gradient norm does not shrink (it grows) throughout a training run that
succeeds: a small gradient is not what training success looks like, and the norm of a
mini-batch gradient stays away from zero anyway because of the sampling noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlstudies.analysis import stats
from dlstudies.config import Runtime, require
from dlstudies.data import load_data
from dlstudies.data.base import subsample
from dlstudies.engine import TrainSpec, fixed_epochs
from dlstudies.models.builders import ACTIVATIONS
from dlstudies.optim import OPTIMIZERS, OptSpec
from dlstudies.report import figures as fig
from dlstudies.studies.base import Study, Unit, register, seed_chunks
from dlstudies.studies.results import (
    add_summaries,
    all_runs,
    group_runs,
    in_most,
    metric_array,
    summary_table,
)
from dlstudies.studies.training import (
    divergence,
    fit_members,
    image_mlp,
    split_accuracy,
)

METRICS = ("first_epoch_loss", "final_loss", "gn_first_epoch", "gn_peak", "gn_peak_epoch", "gn_last_epoch",
           "gn_end_over_start", "loss_end_over_start", "train_acc", "test_acc")


@dataclass(frozen=True)
class Config:
    data: str = "digits"
    hidden: tuple[int, ...] = (32,)
    activation: str = "relu"
    optimizer: str = "adam"
    lr: float = 1e-3
    batch_size: int = 32
    epochs: int = 30
    n_train: int | None = None  # None: the whole training split
    seed_chunk: int = 10  # seeds per work unit, trained as one stack

    def __post_init__(self):
        OPTIMIZERS.get(self.optimizer)
        ACTIVATIONS.get(self.activation)
        require(self.lr > 0, f"lr must be > 0, got {self.lr}")
        require(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        require(self.epochs >= 2, f"epochs must be >= 2 (first and last epoch are compared), got {self.epochs}")
        require(all(h >= 1 for h in self.hidden), f"hidden sizes must be >= 1, got {self.hidden}")
        require(self.seed_chunk >= 1, f"seed_chunk must be >= 1, got {self.seed_chunk}")


PRESETS = {"smoke": Config(epochs=3, n_train=200), "default": Config(), "paper": Config(epochs=100)}


def units(cfg: Config, seeds: tuple[int, ...], runtime: Runtime) -> list[Unit]:
    return [Unit("grad-norm", cfg, chunk, runtime) for chunk in seed_chunks(seeds, cfg.seed_chunk)]


def run_unit(unit: Unit) -> dict:
    cfg: Config = unit.config
    data = subsample(load_data(cfg.data, unit.runtime.data_dir), cfg.n_train)
    # trace_epochs = all epochs: the engine records every iteration's loss and gradient norm.
    spec = TrainSpec(fixed_epochs(cfg.epochs), cfg.batch_size, trace_epochs=cfg.epochs, device=unit.runtime.device)
    fit = fit_members(unit, image_mlp(data, cfg.hidden, ACTIVATIONS.get(cfg.activation)), OptSpec(cfg.optimizer, cfg.lr),
                      data.train.x, data.train.y, spec)
    acc = split_accuracy(fit.models, data)
    return {"runs": [_run(cfg, fit, acc, i, s) for i, s in enumerate(unit.seeds)]}


def _per_epoch(steps: np.ndarray, epochs: int) -> np.ndarray:
    """Mean of each epoch's iterations: per-iteration values are too noisy to compare directly."""
    return steps.reshape(epochs, -1).mean(1)


def _run(cfg: Config, fit, acc: dict, i: int, seed: int) -> dict:
    loss, norm = fit.trace["loss"][i], fit.trace["grad_norm"][i]
    loss_ep, norm_ep = _per_epoch(loss, cfg.epochs), _per_epoch(norm, cfg.epochs)
    metrics = {"first_epoch_loss": loss_ep[0], "final_loss": loss_ep[-1], "gn_first_epoch": norm_ep[0],
               "gn_peak": norm_ep.max(), "gn_peak_epoch": int(np.argmax(norm_ep)) + 1, "gn_last_epoch": norm_ep[-1],
               "gn_end_over_start": norm_ep[-1] / norm_ep[0], "loss_end_over_start": loss_ep[-1] / loss_ep[0],
               "train_acc": float(acc["train"][i]), "test_acc": float(acc["test"][i])}
    return {"condition": cfg.optimizer, "seed": seed, "metrics": metrics,
            "curves": {"loss": loss.tolist(), "grad_norm": norm.tolist(),
                       "epoch_loss": loss_ep.tolist(), "epoch_grad_norm": norm_ep.tolist()},
            **divergence(fit, i)}


def summarize(cfg: Config, unit_results: list[dict]) -> dict:
    conditions = add_summaries(group_runs(unit_results), METRICS)
    runs = all_runs(conditions)
    return {"conditions": conditions, "comparisons": [], "checks": _checks(runs),
            "answer": _answer(conditions), "steps_per_epoch": len(runs[0]["curves"]["loss"]) // cfg.epochs,
            "tables": [summary_table("Loss and gradient norm (epoch means), over seeds", conditions, METRICS,
                                     percent=("train_acc", "test_acc"))]}


def _checks(runs: list[dict]) -> list[dict]:
    peak_epoch, n = metric_array(runs, "gn_peak_epoch"), len(runs)
    first_is_peak, mostly_first = in_most(peak_epoch == 1)
    gn_ratio, loss_ratio = metric_array(runs, "gn_end_over_start"), metric_array(runs, "loss_end_over_start")
    kept, mostly_kept = in_most(gn_ratio > loss_ratio)
    return [
        stats.check("The gradient norm decreases from the start, particularly in the initial epochs",
                    "report B", mostly_first,
                    f"the epoch-mean gradient norm was highest in the first epoch in {first_is_peak} of {n} seeds; "
                    f"median peak at epoch {np.nanmedian(peak_epoch):.0f}"),
        stats.check("The gradient norm need not shrink while training succeeds: it falls far less than the loss",
                    "Goodfellow, Bengio & Courville 2016, section 8.2.1, Figure 8.1", mostly_kept,
                    f"last/first epoch ratio: gradient norm median {np.nanmedian(gn_ratio):.2f}, loss median "
                    f"{np.nanmedian(loss_ratio):.2f}; the norm fell relatively less than the loss in {kept} of {n} seeds"),
    ]


def _answer(conditions: dict) -> str:
    s = next(iter(conditions.values()))["summary"]
    m = lambda k: s[k]["mean"] if s[k]["mean"] is not None else float("nan")  # noqa: E731
    lo, hi = s["gn_end_over_start"]["ci95"]
    ci = f", 95% CI [{lo:.2f}, {hi:.2f}]" if lo is not None else ""
    return (f"While the epoch-mean loss fell from {m('first_epoch_loss'):.3g} to {m('final_loss'):.3g}, the gradient "
            f"norm went from {m('gn_first_epoch'):.3g} to a peak of {m('gn_peak'):.3g} "
            f"(epoch {s['gn_peak_epoch']['median']:.0f}, median) and ended at {m('gn_last_epoch'):.3g}: "
            f"last/first ratio {m('gn_end_over_start'):.2f}{ci} over {s['gn_end_over_start']['n']} seeds.")


def figures(results: dict, folder) -> list[str]:
    runs = all_runs(results["conditions"])
    return _per_iteration(runs, folder) + _combined(runs, folder)


def _per_iteration(runs: list[dict], folder) -> list[str]:
    f, (top, bottom) = fig.new_figure(nrows=2, size=(8, 5.5))
    bottom.sharex(top)
    fig.curve_band(top, [r["curves"]["loss"] for r in runs], "loss", color=fig.color(3), xlabel="",
                   ylabel="mini-batch loss")
    fig.curve_band(bottom, [r["curves"]["grad_norm"] for r in runs], "gradient norm", color=fig.color(4),
                   xlabel="iteration", ylabel="gradient 2-norm")
    top.set_title(f"Every iteration, mean and band over {len(runs)} seeds")
    return fig.save(f, folder, "loss_and_grad_norm")


def _combined(runs: list[dict], folder) -> list[str]:
    # Report B's combined plot, per epoch: the two quantities on their own y axes.
    f, ax = fig.new_figure(size=(6.5, 4))
    right = ax.twinx()
    a = fig.curve_band(ax, [r["curves"]["epoch_loss"] for r in runs], "loss", color=fig.color(3), log_y=False,
                       ylabel="mean training loss (epoch)")
    b = fig.curve_band(right, [r["curves"]["epoch_grad_norm"] for r in runs], "gradient norm", color=fig.color(4),
                       log_y=False, xlabel="epoch", ylabel="mean gradient 2-norm (epoch)")
    ax.legend(handles=[a, b], loc="upper right")
    ax.set_title("Loss and gradient norm per epoch (mean and band over seeds)")
    return fig.save(f, folder, "combined")


STUDY = register(Study("grad-norm", "How does the gradient norm move while the training loss falls?",
                       PRESETS, run_unit, summarize, figures, units=units, runtime_s="~10 s"))
