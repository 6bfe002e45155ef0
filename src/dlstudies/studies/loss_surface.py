"""loss-surface: what does the loss look like around a trained solution?

    dlstudies run loss-surface          # ~30 s at default scale on 2 cores

Li, Xu, Taylor, Studer & Goldstein (2018, "Visualizing the Loss Landscape of Neural Nets") plot
the training loss on a plane through the trained parameters θ*, L(θ* + α·d1 + β·d2), along two
random *filter-normalized* directions (section 4: every filter, here every row of a weight
matrix, rescaled to the norm of the same filter of θ*; biases left out) and along the first two
principal directions of the training trajectory (section 7: PCA of the per-epoch parameters,
centred on the final point), with the trajectory drawn on the second plane. Report B drew such an
error surface as a bonus. Here: per seed one random plane and one PCA plane on a grid x grid
lattice (odd, so θ* is a grid point), contour and 3-D surface figures of seed 0, and across
seeds the loss rise at distance r from θ* on the random plane (a flatness measure in the
filter-normalized units that make seeds comparable). Model *(chosen)*: MLP 64-32-10 (ReLU) on
the bundled 8x8 `digits`, Adam lr 1e-3, batch 32, 40 epochs at default; Li et al. used CNNs on
CIFAR-10, which `--set`/`--data` cannot reproduce here. `pca_plane_min_fraction` < 1 says the PCA plane
holds points of lower loss than θ*, so θ* is not a minimum and the answer says so: cross-entropy on
a training set the model separates has no minimum at finite weights, and the loss keeps falling
along the path beyond where training stopped. The path's 2-D PCA share is held, seed by seed,
against an isotropic random walk with the same step lengths (which alone puts ~76% in two PCs).

Literature: in Li et al.'s plots the trained minimizer sits at the bottom of its random
filter-normalized slice, and the descent path lies in a very low dimensional space (section 7),
as Antognini & Sohl-Dickstein (2018) also find for trajectories in general.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from matplotlib.figure import Figure

from dlstudies.analysis import (
    evaluate,
    filter_normalized_direction,
    fit_trajectory_pca,
    loss_plane,
    pca_directions,
)
from dlstudies.analysis.claims import Claim, opening
from dlstudies.analysis.landscape import detached_params
from dlstudies.analysis.measures import interval_text, value_text
from dlstudies.analysis.pca import random_walk_share
from dlstudies.config import ints, require
from dlstudies.data import load_data
from dlstudies.data.base import subsample
from dlstudies.engine import LOSSES, TrainSpec, fixed_epochs
from dlstudies.models.builders import ACTIVATIONS
from dlstudies.optim import OPTIMIZERS, OptSpec
from dlstudies.report import figures as fig
from dlstudies.studies.base import Study, StudyConfig, register
from dlstudies.studies.results import all_runs, still_improving
from dlstudies.studies.training import fit_members, image_mlp, split_accuracy

METRICS = ("final_train_loss", "train_acc", "test_acc", "rise_at_r", "random_plane_min_fraction", "pca_plane_min_fraction",
           "pca_2d_share", "random_walk_2d_share")
LI = "Li et al. 2018, sections 4-6"
PLANES = ("random", "pca")
# Directions (and the random-walk baseline) are drawn from their own streams, apart from the
# initial weights and the sample order.
DIRECTION_STREAM = 2_000_003
WALK_STREAM = 3_000_017


@dataclass(frozen=True)
class Config(StudyConfig):
    data: str = "digits"
    hidden: tuple[int, ...] = (32,)
    activation: str = "relu"
    optimizer: str = "adam"
    lr: float = 1e-3
    batch_size: int = 32
    epochs: int = 40
    grid: int = 21  # points per axis; odd, so that the trained solution is the centre point
    radius: float = 1.0  # random plane: α, β in [-radius, radius], in filter-normalized units
    margin: float = 0.2  # PCA plane: the trajectory's extent on each axis, plus this fraction
    rise_radius: float = 0.5  # flatness: mean loss rise on the ring at this distance (random plane)
    n_train: int | None = None  # None: the whole training split
    # Samples per batch of the planes' evaluations (None: all at once). Each batch is evaluated at
    # every grid point while it is in the cache: at paper, 4096 made a plane 1.6x faster than one batch.
    eval_batch: int | None = field(default=None, metadata={"rule": ints(1, 10**7)})
    seed_chunk: int = 5  # seeds per work unit, trained as one stack

    def validate(self):
        OPTIMIZERS.get(self.optimizer)
        ACTIVATIONS.get(self.activation)
        require(self.epochs >= 2, f"epochs must be >= 2 (a trajectory needs 3 points), got {self.epochs}")
        require(self.grid >= 3 and self.grid % 2 == 1, f"grid must be odd and >= 3, got {self.grid}")
        require(self.radius > 0, f"radius must be > 0, got {self.radius}")
        require(self.margin >= 0, f"margin must be >= 0, got {self.margin}")
        require(0 < self.rise_radius <= self.radius, f"rise_radius must be in (0, radius], got {self.rise_radius}")


PRESETS = {"smoke": Config(epochs=3, grid=7, n_train=200), "default": Config(),
           "paper": Config(data="fashion-mnist", epochs=100, grid=41, eval_batch=4096)}


def run_unit(unit) -> dict:
    cfg: Config = unit.config
    data = subsample(load_data(cfg.data, unit.runtime.data_dir), cfg.n_train)
    # One snapshot per epoch: the trajectory whose PCA gives the second plane.
    spec = TrainSpec(fixed_epochs(cfg.epochs), cfg.batch_size, snapshot_every=1, device=unit.runtime.device)
    fit = fit_members(unit, image_mlp(data, cfg.hidden, ACTIVATIONS.get(cfg.activation)), OptSpec(cfg.optimizer, cfg.lr),
                      data.train.x, data.train.y, spec)
    test_acc = split_accuracy(fit.models, data, ("test",))["test"]
    return {"runs": [_run(cfg, data.train, fit.models[i], fit.snapshots[i], s, float(test_acc[i]), spec.loss,
                          fit.history["loss"][i, :int(fit.epochs[i])]) for i, s in enumerate(unit.seeds)]}


def _run(cfg: Config, train, model, trajectory: np.ndarray, seed: int, test_acc: float, loss: str, loss_curve) -> dict:
    loss_fn = LOSSES.get(loss).single
    acc = lambda out, y: (out.argmax(-1) == y).double().mean()  # noqa: E731
    final_loss, train_acc = evaluate(model, detached_params(model), loss_fn, train.x, train.y, metric_fn=acc)
    planes = {"random": _random_plane(cfg, model, train, loss_fn, seed),
              "pca": _pca_plane(cfg, model, train, loss_fn, trajectory)}
    steps = np.linalg.norm(np.diff(trajectory.astype(np.float64), axis=0), axis=1)
    walk = random_walk_share(steps, trajectory.shape[1], np.random.default_rng(WALK_STREAM + seed))
    metrics = {"final_train_loss": final_loss, "train_acc": train_acc, "test_acc": test_acc,
               "rise_at_r": _rise(planes["random"], cfg.rise_radius),
               "random_plane_min_fraction": float(np.min(planes["random"]["loss"])) / final_loss,
               "pca_plane_min_fraction": float(np.min(planes["pca"]["loss"])) / final_loss,
               "pca_2d_share": sum(planes["pca"]["explained_variance_ratio"]), "random_walk_2d_share": walk}
    return {"condition": cfg.optimizer, "seed": seed, "metrics": metrics, "planes": planes,
            "profile": _profile(planes["random"], cfg), "still_improving": still_improving(loss_curve)}


def _random_plane(cfg: Config, model, train, loss_fn, seed: int) -> dict:
    gen = torch.Generator().manual_seed(DIRECTION_STREAM + seed)
    d1, d2 = filter_normalized_direction(model, gen), filter_normalized_direction(model, gen)
    axis = np.linspace(-cfg.radius, cfg.radius, cfg.grid)
    plane = loss_plane(model, loss_fn, train.x, train.y, d1, d2, axis, axis, cfg.eval_batch)
    return {"alphas": plane.alphas.tolist(), "betas": plane.betas.tolist(), "loss": plane.loss.tolist()}


def _pca_plane(cfg: Config, model, train, loss_fn, trajectory: np.ndarray) -> dict:
    vectors = trajectory.astype(np.float64)
    d1, d2, coords = pca_directions(vectors, model)
    # Symmetric per axis around θ* (the last point, at the origin), wide enough for the whole path.
    extent = np.abs(coords).max(0) * (1 + cfg.margin) + 1e-12
    alphas, betas = (np.linspace(-e, e, cfg.grid) for e in extent)
    plane = loss_plane(model, loss_fn, train.x, train.y, d1, d2, alphas, betas, cfg.eval_batch)
    evr = fit_trajectory_pca(vectors, n_components=2).explained_variance_ratio  # same PCA: axis labels
    return {"alphas": plane.alphas.tolist(), "betas": plane.betas.tolist(), "loss": plane.loss.tolist(),
            "trajectory": coords.tolist(), "explained_variance_ratio": evr.tolist()}


def _distances(plane: dict) -> np.ndarray:
    a, b = np.meshgrid(plane["alphas"], plane["betas"])  # loss[j, i] sits at (alphas[i], betas[j])
    return np.hypot(a, b)


def _ring_means(plane: dict, radii: np.ndarray, width: float) -> np.ndarray:
    """Mean loss over the grid points whose distance from θ* is within width/2 of each radius."""
    dist, loss = _distances(plane), np.asarray(plane["loss"], dtype=float)
    return np.array([loss[np.abs(dist - r) <= width / 2 + 1e-12].mean() for r in radii])


def _step(plane: dict) -> float:
    return float(plane["alphas"][1] - plane["alphas"][0])


def _rise(plane: dict, r: float) -> float:
    centre = np.asarray(plane["loss"])[len(plane["betas"]) // 2, len(plane["alphas"]) // 2]
    return float(_ring_means(plane, np.array([r]), _step(plane))[0] - centre)


def _profile(plane: dict, cfg: Config) -> dict:
    """Mean loss against distance from θ* on the random plane: rings one grid step wide."""
    radii = np.arange(0, cfg.grid // 2 + 1) * _step(plane)
    return {"radius": radii.tolist(), "loss": _ring_means(plane, radii, _step(plane)).tolist()}


def summarize(cfg: Config, unit_results: list[dict], standard: dict) -> dict:
    runs = all_runs(standard["conditions"])
    per_seed = lambda key: {"runs": [{"seed": r["seed"], "metrics": {"share": r["metrics"][key]}} for r in runs]}  # noqa: E731
    return {"shares": {"trajectory": per_seed("pca_2d_share"), "random walk": per_seed("random_walk_2d_share")}}


def claims(cfg: Config) -> list[Claim]:
    cond = cfg.optimizer
    return [
        Claim("The trained solution sits at the bottom of its filter-normalized random slice: no point of the plane "
              "is lower", LI, "random_plane_min_fraction", "threshold", a=cond, threshold=1.0),
        Claim("The trained solution is a minimum of the loss on the plane of its own descent path",
              "Li et al. 2018, section 7", "pca_plane_min_fraction", "threshold", a=cond, threshold=1.0),
        Claim("The descent path is low-dimensional: two principal directions hold more of its variation than they "
              "hold of a random walk with the same steps", "Li et al. 2018, section 7; Antognini & Sohl-Dickstein 2018",
              "share", "directional", a="trajectory", b="random walk", table="shares"),
    ]


def answer(cfg: Config, results: dict) -> str:
    random, pca, low = results["checks"]
    verdicts = {random["verdict"], pca["verdict"]}
    verdict = "contradicted" if "contradicted" in verdicts else "supported" if verdicts == {"supported"} else "inconclusive"
    s = next(iter(results["conditions"].values()))["summary"]
    m = "pca_plane_min_fraction"
    text = (f"{opening(verdict)} the lowest point of the descent path's PCA plane sits at "
            f"{value_text(m, s[m]['value'])} {interval_text(m, s[m]['ci95'])} of the trained solution's training loss "
            f"and the random plane's at {value_text(m, s['random_plane_min_fraction']['value'])} "
            f"(means over {s[m]['n']} seeds)")
    if pca["verdict"] == "contradicted":
        text += ": the solution is not a minimum — the loss keeps falling beyond where training stopped"
    text += (f"; the path's two PCs hold {value_text('pca_2d_share', s['pca_2d_share']['value'])} of its variation "
             f"against {value_text('pca_2d_share', s['random_walk_2d_share']['value'])} for a random walk ({low['verdict']})")
    return text + "."


def setup(cfg: Config) -> str:
    return (f"{cfg.data}, MLP {'-'.join(map(str, cfg.hidden))} {cfg.activation}, {cfg.optimizer} lr {cfg.lr:g}, "
            f"batch {cfg.batch_size}, {cfg.epochs} epochs; planes {cfg.grid}x{cfg.grid}")


def figures(results: dict, folder) -> list[str]:
    runs = all_runs(results["conditions"])
    first = runs[0]
    return _contours(first, folder) + _surfaces(first, folder) + _profiles(runs, results["config"], folder)


def _log_loss(plane: dict) -> np.ndarray:
    # log10: the loss spans decades between the basin and the rim of the plane.
    return np.log10(np.maximum(np.asarray(plane["loss"], dtype=float), 1e-12))


def _axis_labels(plane: dict, name: str) -> tuple[str, str]:
    if name == "pca":
        evr = plane["explained_variance_ratio"]
        return f"PC1 ({evr[0]:.0%} of the path's variance)", f"PC2 ({evr[1]:.0%})"
    return "α (random direction 1)", "β (random direction 2)"


def _contours(run: dict, folder) -> list[str]:
    f, axes = fig.new_figure(ncols=2, size=(11, 4.6))
    for ax, name in zip(axes, PLANES):
        plane = run["planes"][name]
        filled = ax.contourf(plane["alphas"], plane["betas"], _log_loss(plane), levels=25, cmap="viridis")
        f.colorbar(filled, ax=ax, label="log10 training loss")
        if name == "pca":
            path = np.asarray(plane["trajectory"])
            ax.plot(path[:, 0], path[:, 1], "-o", color="white", ms=3, lw=1.2, label="trajectory (per epoch)")
            ax.legend(fontsize=7, loc="best")
        ax.plot(0, 0, "*", color=fig.color(4), ms=12)
        xlabel, ylabel = _axis_labels(plane, name)
        ax.set(xlabel=xlabel, ylabel=ylabel, title=f"{name} plane, seed {run['seed']} (* trained solution)")
    return fig.save(f, folder, "contours")


def _surfaces(run: dict, folder) -> list[str]:
    from matplotlib.ticker import MaxNLocator  # here, not at the top: only this figure needs them
    from scipy.interpolate import RegularGridInterpolator

    f = Figure(figsize=(11, 5.4), layout="constrained")
    for k, name in enumerate(PLANES):
        ax = f.add_subplot(1, 2, k + 1, projection="3d")  # the "3d" projection comes with mpl_toolkits.mplot3d
        plane = run["planes"][name]
        a, b = np.meshgrid(plane["alphas"], plane["betas"])
        z = _log_loss(plane)
        lift = RegularGridInterpolator((plane["betas"], plane["alphas"]), z, bounds_error=False, fill_value=None)
        # Rasterized: the SVG keeps one image of the surface, not thousands of polygons.
        ax.plot_surface(a, b, z, cmap="viridis", lw=0, antialiased=True, alpha=0.8, rasterized=True)
        if plane.get("trajectory"):  # the training path, lifted onto the surface it crossed
            path = np.asarray(plane["trajectory"], dtype=float)
            ax.plot(path[:, 0], path[:, 1], lift(path[:, ::-1]) + 0.02 * np.ptp(z), "-o", color="black", ms=3, lw=1.4,
                    label="training trajectory", zorder=5)
            ax.legend(fontsize=7, loc="upper left")
        ax.plot([0], [0], lift([[0.0, 0.0]]), "*", color=fig.color(4), ms=12, zorder=6)
        for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
            axis.set_major_locator(MaxNLocator(4))
        xlabel, ylabel = _axis_labels(plane, name)
        ax.set_xlabel(xlabel, labelpad=6, fontsize=8)
        ax.set_ylabel(ylabel, labelpad=6, fontsize=8)
        ax.set_zlabel("log10 training loss", labelpad=4, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_box_aspect(None, zoom=0.82)  # room inside the panel for the axis labels
        ax.set_title(f"{name} plane, seed {run['seed']} (* trained solution)", fontsize=10)
    return fig.save(f, folder, "surfaces_3d")


def _profiles(runs: list[dict], config: dict, folder) -> list[str]:
    f, ax = fig.new_figure(size=(6, 4))
    fig.curve_band(ax, [r["profile"]["loss"] for r in runs], "random plane", x=runs[0]["profile"]["radius"],
                   xlabel="distance from the trained solution (filter-normalized units)",
                   ylabel="mean training loss on the ring")
    ax.axvline(config["rise_radius"], color="0.5", ls=":", lw=1)
    ax.set_title(f"Loss against distance, mean and band over {len(runs)} seeds")
    return fig.save(f, folder, "radial_profile")


STUDY = register(Study("loss-surface", "Is a trained solution a minimum of the loss on planes around it (Li et al. 2018)?",
                       PRESETS, run_unit, summarize, figures, runtime_s="~30 s", metrics=METRICS, claims=claims,
                       answer=answer, setup=setup, seeds={"smoke": 3, "default": 10, "paper": 10}))
