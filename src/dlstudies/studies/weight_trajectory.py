"""weight-trajectory: what path do the weights take during training, seen in two dimensions?

    dlstudies run weight-trajectory            # 8 seeds, ~10 s at default scale on 2 cores

Report B trained an MLP 784-64-32-10 on MNIST eight times (Adam, lr 0.01, batch 1000, 50 epochs),
recorded the weights after every epoch, fitted one PCA to the snapshots of all eight runs and
drew each run's path in the plane of the first two components, every point labelled with the
model's accuracy there; it did the same for the first layer alone. Here the weights are kept at
epochs 0, k, 2k, ... (`snapshot_every`), the accuracy at each snapshot is the training accuracy of
those weights, and one PCA is fitted to the snapshots of all seeds, for the whole model and for
the first layer. Report B's eight runs are eight seeds, the default at `default` and `paper`
scale (`--seeds N` sets another count; one seed also works). Data: the bundled 8x8 `digits` at default (so the
model is 64-64-32-10), `fashion-mnist` at paper; ReLU hidden units *(chosen: report B is silent)*.

All seeds train in one unit, because the PCA needs every run's snapshots and a unit's result
stays small only if it returns coordinates rather than weight vectors.

Literature: Li et al. (2018, "Visualizing the Loss Landscape of Neural Nets", section 7) and
Antognini & Sohl-Dickstein (2018) find that a training trajectory lies mostly in a very low
dimensional space: its first two principal components explain most of its variation. Report B
read "a denser clustering of points over time" as the model stabilising.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from dlstudies.analysis import (
    evaluate,
    fit_trajectory_pca,
    flatten_params,
    unflatten_params,
)
from dlstudies.analysis.claims import Claim, opening
from dlstudies.analysis.measures import effect_text, interval_text, value_text
from dlstudies.analysis.pca import random_walk_share
from dlstudies.config import Runtime, require
from dlstudies.data import load_data
from dlstudies.data.base import subsample
from dlstudies.engine import LOSSES, TrainSpec, fixed_epochs
from dlstudies.models.builders import ACTIVATIONS, build_members
from dlstudies.optim import OPTIMIZERS, OptSpec
from dlstudies.report import figures as fig
from dlstudies.studies.base import Study, StudyConfig, Unit, register
from dlstudies.studies.results import all_runs
from dlstudies.studies.training import (
    fit_members,
    image_mlp,
    member_dtype,
    split_accuracy,
)

METRICS = ("initial_train_acc", "final_train_acc", "test_acc", "pca_2d_share", "random_walk_2d_share",
           "first_step_distance", "last_step_distance", "step_ratio")
PLANES = ("model", "first_layer")
WALK_STREAM = 3_000_017  # the random-walk baseline's own stream, apart from weights and sample order


@dataclass(frozen=True)
class Config(StudyConfig):
    data: str = "digits"
    hidden: tuple[int, ...] = (64, 32)
    activation: str = "relu"
    optimizer: str = "adam"
    lr: float = 0.01
    batch_size: int = 1000
    epochs: int = 50
    snapshot_every: int = 5  # epochs between weight snapshots
    n_train: int | None = None  # None: the whole training split

    def validate(self):
        OPTIMIZERS.get(self.optimizer)
        ACTIVATIONS.get(self.activation)
        require(len(self.hidden) >= 1, f"hidden must name at least one layer, got {self.hidden}")
        require(self.snapshot_every >= 1, f"snapshot_every must be >= 1, got {self.snapshot_every}")
        require(self.epochs >= self.snapshot_every and self.epochs % self.snapshot_every == 0,
                f"epochs ({self.epochs}) must be a positive multiple of snapshot_every ({self.snapshot_every})")


PRESETS = {"smoke": Config(epochs=4, snapshot_every=2, n_train=300), "default": Config(),
           "paper": Config(data="fashion-mnist")}


def units(cfg: Config, seeds: tuple[int, ...], runtime: Runtime) -> list[Unit]:
    return [Unit("weight-trajectory", cfg, tuple(seeds), runtime)]  # one PCA over all seeds: one unit


def run_unit(unit: Unit) -> dict:
    cfg: Config = unit.config
    data = subsample(load_data(cfg.data, unit.runtime.data_dir), cfg.n_train)
    spec = TrainSpec(fixed_epochs(cfg.epochs), cfg.batch_size, snapshot_every=cfg.snapshot_every,
                     device=unit.runtime.device)
    builder = image_mlp(data, cfg.hidden, ACTIVATIONS.get(cfg.activation))
    fit = fit_members(unit, builder, OptSpec(cfg.optimizer, cfg.lr), data.train.x, data.train.y, spec)
    # The snapshots hold every parameter: a model of the architecture, on the CPU, serves to read them.
    template = build_members(builder, unit.seeds[:1], member_dtype(unit))[0]
    snaps = fit.snapshots.astype(np.float64)
    measured = _measure(template, snaps, data.train, spec.loss)
    planes = {"model": _plane(snaps), "first_layer": _plane(_first_layer(template, snaps))}
    test_acc = split_accuracy(fit.models, data, ("test",))["test"]
    epochs = list(range(0, cfg.epochs + 1, cfg.snapshot_every))
    runs = [_run(cfg, i, s, snaps[i], measured, planes, epochs, float(test_acc[i])) for i, s in enumerate(unit.seeds)]
    return {"runs": runs, "pca": {k: {"explained_variance_ratio": p["evr"]} for k, p in planes.items()}}


def _measure(template: nn.Module, snaps: np.ndarray, split, loss: str) -> dict[str, np.ndarray]:
    """Training loss and accuracy of every snapshot (M, n): the weights as they were, in eval mode."""
    acc = lambda out, y: (out.argmax(-1) == y).double().mean()  # noqa: E731
    cells = [[evaluate(template, unflatten_params(v, template), LOSSES.get(loss).single, split.x, split.y,
                       metric_fn=acc) for v in run] for run in snaps]
    return {"train_loss": np.array([[c[0] for c in row] for row in cells]),
            "train_acc": np.array([[c[1] for c in row] for row in cells])}


def _first_layer(template: nn.Module, snaps: np.ndarray) -> np.ndarray:
    prefix = next(name for name, m in template.named_children() if isinstance(m, nn.Linear)) + "."
    rows = [flatten_params(unflatten_params(v, template), prefix) for v in snaps.reshape(-1, snaps.shape[-1])]
    return np.stack(rows).reshape(*snaps.shape[:2], -1)


def _plane(snaps: np.ndarray) -> dict:
    """One PCA over every run's snapshots; each run's (n, 2) coordinates in its plane."""
    pca = fit_trajectory_pca(snaps.reshape(-1, snaps.shape[-1]), n_components=2)
    return {"coords": pca.coords.reshape(*snaps.shape[:2], 2), "evr": pca.explained_variance_ratio.tolist()}


def _own_pca_2d(run_snaps: np.ndarray) -> float:
    """Share of one run's own trajectory variance in its first two principal components."""
    if len(run_snaps) < 3:
        return float("nan")  # two points span one direction: the share is 1 trivially
    return float(np.sum(fit_trajectory_pca(run_snaps, n_components=2).explained_variance_ratio))


def _walk_2d(steps: np.ndarray, n_params: int, seed: int) -> float:
    """The same share for an isotropic random walk with this run's step lengths (its baseline)."""
    if len(steps) < 2:
        return float("nan")
    return random_walk_share(steps, n_params, np.random.default_rng(WALK_STREAM + seed))


def _run(cfg: Config, i: int, seed: int, run_snaps: np.ndarray, measured: dict, planes: dict, epochs: list,
         test_acc: float) -> dict:
    steps = np.linalg.norm(np.diff(run_snaps, axis=0), axis=1)  # distance moved between snapshots
    acc = measured["train_acc"][i]
    metrics = {"initial_train_acc": acc[0], "final_train_acc": acc[-1], "test_acc": test_acc,
               "pca_2d_share": _own_pca_2d(run_snaps), "random_walk_2d_share": _walk_2d(steps, run_snaps.shape[1], seed),
               "first_step_distance": steps[0], "last_step_distance": steps[-1], "step_ratio": steps[-1] / steps[0]}
    snapshots = {"epoch": epochs, "train_acc": acc.tolist(), "train_loss": measured["train_loss"][i].tolist(),
                 **{f"xy_{k}": planes[k]["coords"][i].tolist() for k in PLANES}}
    return {"condition": cfg.optimizer, "seed": seed, "metrics": metrics, "snapshots": snapshots}


def summarize(cfg: Config, unit_results: list[dict], standard: dict) -> dict:
    runs = all_runs(standard["conditions"])

    def per_seed(key, name):
        return {"runs": [{"seed": r["seed"], "metrics": {name: r["metrics"][key]}} for r in runs]}
    return {"pca": unit_results[0]["pca"],
            "shares": {"trajectory": per_seed("pca_2d_share", "share"), "random walk": per_seed("random_walk_2d_share", "share")},
            "steps": {"last": per_seed("last_step_distance", "step_distance"),
                      "first": per_seed("first_step_distance", "step_distance")}}


def claims(cfg: Config) -> list[Claim]:
    return [
        Claim("A training trajectory is low-dimensional: its first two principal components hold more of its variation "
              "than they hold of a random walk with the same steps", "Li et al. 2018, section 7; Antognini & "
              "Sohl-Dickstein 2018", "share", "directional", a="trajectory", b="random walk", table="shares"),
        Claim("Points cluster more densely over time: the weights move less between late snapshots than between early "
              "ones", "report B, \"Visualize the optimization process\"", "step_distance", "directional", a="last",
              b="first", direction="lower", table="steps"),
    ]


def answer(cfg: Config, results: dict) -> str:
    low, slow = results["checks"]
    s = next(iter(results["conditions"].values()))["summary"]
    # A PCA of weights that never moved has no variance to explain: its shares are undefined (None).
    evr = [_share(results["pca"][k]["explained_variance_ratio"]) for k in PLANES]
    share = "pca_2d_share"
    return (f"{opening(low['verdict'])} each run's two PCs hold {value_text(share, s[share]['value'])} of its path's "
            f"variation against {value_text(share, s['random_walk_2d_share']['value'])} for a random walk with the "
            f"same steps ({effect_text(share, low['effect'])} {interval_text(share, low['ci95'], True)}, n = {low['n']}); "
            f"the last step between snapshots was {effect_text('step_distance', slow['effect'])} "
            f"{interval_text('step_distance', slow['ci95'], True)} the first ({slow['verdict']}), and the shared PCA "
            f"plane of all runs holds {value_text(share, evr[0])} of all snapshots' variance "
            f"({value_text(share, evr[1])} for the first layer).")


def _share(ratios) -> float | None:
    return None if any(r is None for r in ratios) else float(sum(ratios))


def setup(cfg: Config) -> str:
    return (f"{cfg.data}, MLP {'-'.join(map(str, cfg.hidden))} {cfg.activation}, {cfg.optimizer} lr {cfg.lr:g}, "
            f"batch {cfg.batch_size}, {cfg.epochs} epochs, a snapshot every {cfg.snapshot_every}")


def figures(results: dict, folder) -> list[str]:
    runs = all_runs(results["conditions"])
    return _trajectories(runs, results["pca"], folder) + _accuracy(runs, folder)


def _trajectories(runs: list[dict], pca: dict, folder) -> list[str]:
    f, axes = fig.new_figure(ncols=2, size=(13, 5.5))
    titles = {"model": "whole model", "first_layer": "first layer"}
    colors = fig.condition_colors([r["seed"] for r in runs])
    for ax, plane in zip(axes, PLANES):
        for run in runs:
            _path(ax, run, plane, colors[run["seed"]])
        fig.label_points(ax, _accuracy_labels(runs, plane, colors))
        evr = pca[plane]["explained_variance_ratio"]
        ax.set(xlabel=f"PC1 ({value_text('share', evr[0])} of variance)", ylabel=f"PC2 ({value_text('share', evr[1])})",
               title=titles[plane])
    f.suptitle("One PCA over all runs' snapshots (o start, * end; labels: training accuracy)")
    axes[0].legend(fontsize=7, loc="best")
    return fig.save(f, folder, "trajectories")


def _path(ax, run: dict, plane: str, color: str) -> None:
    xy = np.asarray(run["snapshots"][f"xy_{plane}"])
    ax.plot(xy[:, 0], xy[:, 1], "-o", color=color, ms=3, lw=1, label=f"seed {run['seed']}")
    ax.plot(*xy[0], "o", mfc="none", mec=color, ms=9)
    ax.plot(*xy[-1], "*", color=color, ms=12)


def _accuracy_labels(runs: list[dict], plane: str, colors: dict) -> list[tuple]:
    """(x, y, accuracy, colour) to write on the paths: every run's end first, then a few points between
    (first, last and every k-th of the thinned ones), then the starts (all near chance, so the least wanted)."""
    def at(run, i):
        x, y = run["snapshots"][f"xy_{plane}"][i]
        return x, y, f"{run['snapshots']['train_acc'][i]:.2f}", colors[run["seed"]]

    n = len(runs[0]["snapshots"]["train_acc"]) if runs else 0
    between = fig.thinned(n, most=4)[1:-1]
    return ([at(r, n - 1) for r in runs] + [at(r, i) for i in between for r in runs]
            + ([at(r, 0) for r in runs] if n > 1 else []))


def _accuracy(runs: list[dict], folder) -> list[str]:
    f, ax = fig.new_figure(size=(6, 3.8))
    epochs = runs[0]["snapshots"]["epoch"]
    fig.curve_band(ax, [r["snapshots"]["train_acc"] for r in runs], "train accuracy", x=epochs, log_y=False,
                   ylabel="training accuracy at the snapshot")
    ax.set_title("Accuracy at each snapshot, mean and band over seeds")
    return fig.save(f, folder, "snapshot_accuracy")


STUDY = register(Study("weight-trajectory", "Do the weights take a low-dimensional path in training, more so than a "
                       "random walk with the same steps?", PRESETS, run_unit, summarize, figures, units=units,
                       runtime_s="~15 s", metrics=METRICS, claims=claims, answer=answer, setup=setup,
                       seeds={"smoke": 3, "default": 10, "paper": 8}))  # report B trained 8 times
