"""minimal-ratio: when the gradient is almost zero, is the point a minimum, and does it matter?

    dlstudies run minimal-ratio         # ~30 s at default scale on 2 cores

Report B trained a 1-5-6-14-7-8-4-1 ReLU network on f1(x) = sin(5πx)/(5πx), then minimised the
squared gradient norm to land on a critical point, computed the Hessian there and its "minimal
ratio" (the fraction of positive eigenvalues: 1 at a strict minimum, less at a saddle), and
plotted it against the loss over repeated runs (it saw ratios of 0.8-0.9 with the lowest loss).
Here each run (seeds × restarts; the init comes from the seed and the restart) trains with Adam
on the full-batch MSE, then minimises ||∇L||² with L-BFGS (strong Wolfe line search, float64,
torch.func's functional_call on the plain module) until ||∇L|| falls under `gn_tolerance` or `gn_steps` run out;
whether it got there is recorded. (Adam on ||∇L||² stalls near 1e-3 at any learning rate we
tried: its step size does not shrink with the gradient.) The Hessian is exact, over all
parameters, in float64 (`analysis.hessian_eigenvalues`), and an eigenvalue counts as positive
above a tolerance that is recorded with it. A ReLU unit that is off for every input contributes
exact zero eigenvalues, and this narrow network often has many (some runs die entirely and sit at
the constant prediction); so beside the minimal ratio each point records `nonzero_ratio`, the
positive fraction of the eigenvalues outside ±tolerance. Literature: Dauphin et al. (2014) and Choromanska
et al. (2015) found that critical points with a higher loss have more negative curvature, i.e.
a lower loss goes with a higher minimal ratio; the Spearman correlation below tests that.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from dlstudies.analysis import hessian_eigenvalues, stats
from dlstudies.analysis.pca import unflatten_params
from dlstudies.config import Runtime, require
from dlstudies.data.functions import TARGETS, function_dataset
from dlstudies.engine import TrainSpec, fixed_epochs
from dlstudies.models.builders import ACTIVATIONS, mlp
from dlstudies.optim import OptSpec
from dlstudies.report import figures as fig
from dlstudies.studies.base import Study, Unit, register, seed_chunks
from dlstudies.studies.results import add_summaries, group_runs, summary_table
from dlstudies.studies.training import fit_members

CONDITION = "critical-points"
METRICS = ("minimal_ratio", "nonzero_ratio", "loss", "grad_norm", "train_loss", "reached", "fits", "gn_iterations")
RESTART_STRIDE = 10_000  # init seed = seed * RESTART_STRIDE + restart: distinct for any sane restart count
LBFGS_CHUNK = 25  # L-BFGS iterations between checks of the tolerance
# Spearman's p-value (scipy's t approximation) is not trustworthy on a handful of points (it says
# p = 0 for three points in order, where the exact p is 1/3): the check needs at least this many.
MIN_CHECK_POINTS = 10
# A run "fits" the target when its loss is below this fraction of the best constant's (the variance).
FITS_FRACTION = 0.99


@dataclass(frozen=True)
class Config:
    target: str = "f1"
    hidden: tuple[int, ...] = (5, 6, 14, 7, 8, 4)  # report B
    activation: str = "relu"
    restarts: int = 10  # runs = seeds × restarts
    n_train: int = 100  # grid points of the target: the loss (and Hessian) is over all of them
    lr: float = 1e-3
    epochs: int = 5000  # phase 1: Adam on the MSE, full batch
    gn_steps: int = 1000  # phase 2: L-BFGS iterations on ||∇L||², at most
    gn_tolerance: float = 1e-3  # phase 2 stops when ||∇L|| < gn_tolerance
    eig_tolerance: float | None = None  # None: the analysis module's default (relative to max |λ|)
    seed_chunk: int = 2  # seeds per work unit (each with all its restarts, trained as one stack)

    def __post_init__(self):
        TARGETS.get(self.target)
        ACTIVATIONS.get(self.activation)
        require(len(self.hidden) > 0 and min(self.hidden) >= 1, f"hidden sizes must be >= 1, got {self.hidden}")
        require(1 <= self.restarts < RESTART_STRIDE, f"restarts must be in [1, {RESTART_STRIDE}), got {self.restarts}")
        require(self.n_train >= 2, f"n_train must be >= 2, got {self.n_train}")
        require(self.lr > 0, f"lr must be > 0, got {self.lr}")
        require(self.epochs >= 1 and self.gn_steps >= 0, "epochs must be >= 1 and gn_steps >= 0")
        require(self.gn_tolerance > 0, f"gn_tolerance must be > 0, got {self.gn_tolerance}")
        require(self.eig_tolerance is None or self.eig_tolerance >= 0, "eig_tolerance must be >= 0 (or none)")
        require(self.seed_chunk >= 1, f"seed_chunk must be >= 1, got {self.seed_chunk}")


PRESETS = {"smoke": Config(restarts=2, n_train=32, epochs=50, gn_steps=20),
           "default": Config(restarts=4, epochs=2000, gn_steps=300),  # 5 seeds x 4 = 20 runs
           "paper": Config()}  # 10 seeds x 10 = 100 runs


def units(cfg: Config, seeds: tuple[int, ...], runtime: Runtime) -> list[Unit]:
    return [Unit("minimal-ratio", cfg, chunk, runtime) for chunk in seed_chunks(seeds, cfg.seed_chunk)]


def run_unit(unit: Unit) -> dict:
    cfg: Config = unit.config
    data = function_dataset(cfg.target, cfg.n_train, 2)
    x, y = data.train.x, data.train.y
    runs = [(s, r) for s in unit.seeds for r in range(cfg.restarts)]
    init_seeds = [s * RESTART_STRIDE + r for s, r in runs]
    builder = lambda: mlp([1, *cfg.hidden, 1], act=ACTIVATIONS.get(cfg.activation))
    spec = TrainSpec(fixed_epochs(cfg.epochs), batch_size=len(x), loss="mse", device=unit.runtime.device)
    fit = fit_members(unit, builder, OptSpec("adam", cfg.lr), x, y, spec, init_seeds)
    trained = fit.final("loss")
    return {"runs": [_critical_point(cfg, model, x.double(), y.double(), seed, restart, float(trained[i]))
                     for i, (model, (seed, restart)) in enumerate(zip(fit.models, runs))]}


def _loss_of(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """The full-batch MSE as a function of the flat parameter vector (torch.func, model untouched)."""
    return lambda v: F.mse_loss(functional_call(model, unflatten_params(v, model), (x,)), y)


def _gradient(loss, v: torch.Tensor, create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    v = v.detach().requires_grad_()
    return torch.autograd.grad(loss(v), v, create_graph=create_graph)[0], v


def _squared_grad_norm(loss):
    """v -> (∇_v ||∇L(v)||², ||∇L(v)||²). By double backward through autograd: on this network it is
    twice as fast as nesting torch.func.grad, and L-BFGS evaluates it thousands of times."""
    def evaluate(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g, leaf = _gradient(loss, v, create_graph=True)
        value = g.square().sum()
        return torch.autograd.grad(value, leaf)[0], value.detach()
    return evaluate


def seek_critical_point(model: nn.Module, x: torch.Tensor, y: torch.Tensor, max_iter: int,
                        tolerance: float) -> tuple[nn.Module, int]:
    """A float64 copy of `model` moved by L-BFGS on ||∇L||² until ||∇L|| < tolerance (or max_iter
    iterations, or no more progress); returns it and the iterations used."""
    model = copy.deepcopy(model).double()
    loss = _loss_of(model, x, y)
    objective = _squared_grad_norm(loss)
    v = torch.nn.utils.parameters_to_vector(model.parameters()).detach().requires_grad_()
    opt = torch.optim.LBFGS([v], lr=1.0, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=0.0, tolerance_change=0.0)

    def closure():
        v.grad, value = objective(v)
        return value

    used = 0
    while used < max_iter and float(_gradient(loss, v)[0].norm()) >= tolerance:
        opt.param_groups[0]["max_iter"] = min(LBFGS_CHUNK, max_iter - used)  # never past the bound
        opt.step(closure)
        done = opt.state[v].get("n_iter", 0)
        if done == used:  # the line search found no decrease: L-BFGS cannot go on
            break
        used = done
    torch.nn.utils.vector_to_parameters(v.detach(), model.parameters())
    return model, used


def _critical_point(cfg: Config, model: nn.Module, x, y, seed: int, restart: int, train_loss: float) -> dict:
    point, iterations = seek_critical_point(model, x, y, cfg.gn_steps, cfg.gn_tolerance)
    spectrum = hessian_eigenvalues(point, F.mse_loss, x, y, tol=cfg.eig_tolerance)
    hessian = _counts(spectrum.eigenvalues, spectrum.tolerance)
    with torch.no_grad():
        loss = float(F.mse_loss(point(x), y))
    nonzero = hessian["n_positive"] + hessian["n_negative"]
    metrics = {"minimal_ratio": spectrum.minimal_ratio, "loss": loss, "grad_norm": spectrum.grad_norm,
               "train_loss": train_loss, "reached": float(spectrum.grad_norm < cfg.gn_tolerance),
               "gn_iterations": iterations, "n_params": sum(p.numel() for p in point.parameters()),
               "nonzero_ratio": hessian["n_positive"] / nonzero if nonzero else None,
               "fits": float(loss < FITS_FRACTION * float(y.var(unbiased=False)))}
    return {"condition": CONDITION, "seed": seed, "restart": restart, "metrics": metrics, "hessian": hessian}


def _counts(eig: np.ndarray, tol: float) -> dict:
    """Eigenvalues above, below and within ±tol: dead ReLU units alone give many exact zeros."""
    return {"n_eigenvalues": int(eig.size), "tolerance": tol, "n_positive": int(np.sum(eig > tol)),
            "n_negative": int(np.sum(eig < -tol)), "n_zero": int(np.sum(np.abs(eig) <= tol)),
            "min": float(eig[0]), "max": float(eig[-1])}


def _correlations(runs: list[dict]) -> dict:
    """Over all runs; over those that reached the tolerance (the critical points: the check); and over
    critical points that fit the target at all (a dead network sits at a constant, high-loss point)."""
    subsets = {"all": runs, "reached": [r for r in runs if r["metrics"]["reached"]],
               "reached_and_fits": [r for r in runs if r["metrics"]["reached"] and r["metrics"]["fits"]]}
    pick = lambda rs, k: [r["metrics"][k] for r in rs]
    return {name: stats.spearman(pick(rs, "loss"), pick(rs, "minimal_ratio")) for name, rs in subsets.items()}


def summarize(cfg: Config, unit_results: list[dict]) -> dict:
    conditions = add_summaries(group_runs(unit_results), METRICS)
    runs = conditions[CONDITION]["runs"]
    correlation = _correlations(runs)
    return {"conditions": conditions, "comparisons": [], "correlation": correlation,
            "checks": _checks(cfg, runs, correlation), "answer": _answer(cfg, runs, correlation),
            "tables": [summary_table("Critical points, over all runs", conditions, METRICS)]}


def _checks(cfg: Config, runs: list[dict], correlation: dict) -> list[dict]:
    c = correlation["reached"]
    counts_ok = all(r["hessian"]["n_eigenvalues"] == r["metrics"]["n_params"] for r in runs)
    return [
        stats.check("The Hessian is the full matrix over all parameters (one eigenvalue per parameter)",
                    "DESIGN.md, known traps", counts_ok,
                    f"{runs[0]['hessian']['n_eigenvalues']} eigenvalues for {runs[0]['metrics']['n_params']} parameters"),
        stats.check("At critical points, a lower loss goes with a higher minimal ratio (negative Spearman correlation)",
                    "Dauphin et al. 2014; Choromanska et al. 2015; report B",
                    c["rho"] is not None and c["n"] >= MIN_CHECK_POINTS and c["rho"] < 0 and c["p_value"] < 0.05,
                    f"{_few(c)}over the {c['n']} of {len(runs)} runs with ||∇L|| < {cfg.gn_tolerance:g}: {_rho(c)}; "
                    f"over all runs: {_rho(correlation['all'])}; over the critical points that fit the target "
                    f"(not a constant): {_rho(correlation['reached_and_fits'])}"),
    ]


def _few(c: dict) -> str:
    return f"too few points for the check (n < {MIN_CHECK_POINTS}); " if c["n"] < MIN_CHECK_POINTS else ""


def _rho(c: dict) -> str:
    return "Spearman rho undefined (fewer than 3 points or constant values)" if c["rho"] is None \
        else f"Spearman rho = {c['rho']:.2f} (p = {c['p_value']:.2g}, n = {c['n']})"


def _answer(cfg: Config, runs: list[dict], correlation: dict) -> str:
    c = correlation["reached"]
    reached = sum(bool(r["metrics"]["reached"]) for r in runs)
    ratios = [r["metrics"]["minimal_ratio"] for r in runs]
    direction = "undetermined" if c["rho"] is None else ("a higher" if c["rho"] < 0 else "a lower or unrelated")
    return (f"{reached} of {len(runs)} runs reached ||∇L|| < {cfg.gn_tolerance:g} (minimal ratios of all runs "
            f"{min(ratios):.2f}-{max(ratios):.2f}); at those critical points a lower loss went with {direction} "
            f"minimal ratio ({_rho(c)}; "
            f"among those that fit the target at all: {_rho(correlation['reached_and_fits'])}).")


def figures(results: dict, folder) -> list[str]:
    runs = results["conditions"][CONDITION]["runs"]
    f, ax = fig.new_figure(size=(6, 4.2))
    for i, (label, keep) in enumerate((("||∇L|| under the tolerance", True), ("tolerance not reached", False))):
        pts = [r["metrics"] for r in runs if bool(r["metrics"]["reached"]) == keep and r["metrics"]["loss"] is not None]
        # See-through, as runs often share a minimal ratio.
        fig.scatter_runs(ax, [p["loss"] for p in pts], [p["minimal_ratio"] for p in pts], jitter=0.0,
                         label=f"{label} ({len(pts)})", color=fig.color(i), marker="o" if keep else "x", s=24)
    losses = [r["metrics"]["loss"] for r in runs if r["metrics"]["loss"]]
    if fig.spans_decades(losses):
        ax.set_xscale("log")
    ax.set(xlabel="training loss (MSE) at the critical point", ylabel="minimal ratio (fraction of eigenvalues > tol)",
           title=f"Minimal ratio vs loss, {len(runs)} runs")
    ax.legend(fontsize=8)
    return fig.save(f, folder, "minimal_ratio_vs_loss")


STUDY = register(Study("minimal-ratio", "Near a zero gradient, does a lower loss go with a higher minimal ratio?",
                       PRESETS, run_unit, summarize, figures, units=units, runtime_s="~30 s"))
