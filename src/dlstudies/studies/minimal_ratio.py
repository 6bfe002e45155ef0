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

Design choices that keep the ratio honest:
- N ≥ 2P training points (720 for P = 354): with N < P the Gauss-Newton part of the Hessian has
  rank ≤ N and caps the ratio (N = 100 capped it near 0.3). The network's own structure still
  bounds it, so each point records the rank of the output Jacobian (N × P); the ratio is not
  promised to reach 1.
- A point whose gradient norm is g is critical only to O(g): eigenvalues of size O(g) cannot be
  told from zero, so the tolerance is max(the eigensolver's relative floor, g); a sweep at 0.1 g
  and 10 g shows how much the ratio depends on it.
- Collapsed networks (a hidden layer dead for every input, or a constant output: the loss is then
  Var y) are counted and kept out of the correlation: they alone would make it look strong.
- Each run has its own initial weights (init seed = seed × 10000 + restart) and trains full
  batch on a fixed grid: runs share nothing, so each is one independent point (n counts runs).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from dlstudies.analysis import hessian_eigenvalues
from dlstudies.analysis.claims import Claim, opening, sanity
from dlstudies.analysis.hessian import default_tolerance
from dlstudies.analysis.measures import interval_text, value_text
from dlstudies.analysis.pca import unflatten_params
from dlstudies.config import require
from dlstudies.data.functions import TARGETS, function_dataset
from dlstudies.engine import TrainSpec, fixed_epochs, training_phase
from dlstudies.models.builders import ACTIVATIONS, mlp
from dlstudies.optim import OptSpec
from dlstudies.report import figures as fig
from dlstudies.studies.base import Study, StudyConfig, register
from dlstudies.studies.training import fit_members

CONDITION = "critical-points"
POINTS = "critical points that did not collapse"
METRICS = ("minimal_ratio", "index", "loss", "grad_norm", "reached", "fits", "collapsed", "dead_units",
           "dead_units_at_init", "jacobian_rank_fraction")
SWEEP = (0.1, 1.0, 10.0)  # eigenvalue tolerances, in units of the point's gradient norm
RESTART_STRIDE = 10_000  # init seed = seed * RESTART_STRIDE + restart: distinct for any sane restart count
LBFGS_CHUNK = 25  # L-BFGS iterations between checks of the tolerance
# A run "fits" the target when its loss is below this fraction of the best constant's (the variance).
FITS_FRACTION = 0.99


def n_params(hidden) -> int:
    sizes = [1, *hidden, 1]
    return sum((a + 1) * b for a, b in zip(sizes, sizes[1:]))


@dataclass(frozen=True)
class Config(StudyConfig):
    target: str = "f1"
    hidden: tuple[int, ...] = (5, 6, 14, 7, 8, 4)  # report B
    activation: str = "relu"
    restarts: int = 1  # runs = seeds × restarts (each with its own initial weights)
    n_train: int = 720  # grid points of the target, >= 2x the parameter count (354 for report B's net)
    lr: float = 1e-3
    epochs: int = 5000  # phase 1: Adam on the MSE, full batch
    gn_steps: int = 1000  # phase 2: L-BFGS iterations on ||∇L||², at most
    gn_tolerance: float = 1e-3  # phase 2 stops when ||∇L|| < gn_tolerance
    eig_tolerance: float | None = None  # None: the analysis module's default (relative to max |λ|)
    seed_chunk: int = 2  # seeds per work unit (each with all its restarts, trained as one stack)

    def validate(self):
        TARGETS.get(self.target)
        ACTIVATIONS.get(self.activation)
        require(len(self.hidden) > 0, f"hidden must name at least one layer, got {self.hidden}")
        require(1 <= self.restarts < RESTART_STRIDE, f"restarts must be in [1, {RESTART_STRIDE}), got {self.restarts}")
        p = n_params(self.hidden)
        require(self.n_train >= 2 * p, f"n_train must be >= 2 x the parameter count ({p}) so that the number of "
                                       f"points does not cap the minimal ratio, got {self.n_train}")
        require(self.gn_steps >= 0, f"gn_steps must be >= 0, got {self.gn_steps}")
        require(self.gn_tolerance > 0, f"gn_tolerance must be > 0, got {self.gn_tolerance}")
        require(self.eig_tolerance is None or self.eig_tolerance >= 0, "eig_tolerance must be >= 0 (or none)")


PRESETS = {"smoke": Config(epochs=50, gn_steps=20),
           "default": Config(epochs=2000, gn_steps=300),  # 20 seeds, one run each
           "paper": Config(restarts=10)}  # 10 seeds x 10 = report B's 100 runs


def run_unit(unit) -> dict:
    cfg: Config = unit.config
    data = function_dataset(cfg.target, cfg.n_train, 2)
    x, y = data.train.x, data.train.y
    runs = [(s, r) for s in unit.seeds for r in range(cfg.restarts)]
    init_seeds = [s * RESTART_STRIDE + r for s, r in runs]
    builder = lambda: mlp([1, *cfg.hidden, 1], act=ACTIVATIONS.get(cfg.activation))
    spec = TrainSpec(fixed_epochs(cfg.epochs), batch_size=len(x), loss="mse", device=unit.runtime.device)
    dead_at_init = [dead_units(m, x)[0] for m in _initial(builder, init_seeds, unit)]
    fit = fit_members(unit, builder, OptSpec("adam", cfg.lr), x, y, spec, init_seeds)
    trained = fit.final("loss")
    return {"runs": [_critical_point(cfg, model, x.double(), y.double(), seed, restart, float(trained[i]),
                                     dead_at_init[i]) for i, (model, (seed, restart)) in enumerate(zip(fit.models, runs))]}


def _initial(builder, init_seeds, unit):
    from dlstudies.models.builders import build_members
    from dlstudies.studies.training import member_dtype
    return build_members(builder, init_seeds, member_dtype(unit))


def dead_units(model: nn.Module, x: torch.Tensor) -> tuple[int, bool]:
    """(ReLU units that are off for every input, whether some hidden layer is dead as a whole)."""
    dead, layer_dead, h = 0, False, x.to(next(model.parameters()).dtype)
    with torch.no_grad():
        for module in model:
            h = module(h)
            if isinstance(module, nn.ReLU):
                off = (h <= 0).all(0)
                dead += int(off.sum())
                layer_dead |= bool(off.all())
    return dead, layer_dead


def collapsed(model: nn.Module, x: torch.Tensor) -> bool:
    """The network computes a constant: a hidden layer dead for every input, or outputs that do not vary."""
    with torch.no_grad():
        out = model(x.to(next(model.parameters()).dtype))
    return dead_units(model, x)[1] or float(out.max() - out.min()) <= 1e-10 * (1 + float(out.abs().max()))


def output_jacobian(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The (N, P) float64 Jacobian of the outputs w.r.t. all parameters (`flatten_params` order)."""
    flat = torch.nn.utils.parameters_to_vector(model.parameters()).detach().double()
    f = lambda v: functional_call(model, unflatten_params(v, model), (x.double(),)).reshape(-1)  # noqa: E731
    return torch.func.jacrev(f)(flat)


def jacobian_rank(model: nn.Module, x: torch.Tensor) -> int:
    """Numerical rank (numpy's rule: σ > σ_max · max(N, P) · eps) of the output Jacobian: the
    Gauss-Newton part of the MSE Hessian has this rank, which bounds how many eigenvalues a fit
    can make positive."""
    return int(torch.linalg.matrix_rank(output_jacobian(model, x)))


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


def tied_tolerance(eig: np.ndarray, grad_norm: float, factor: float = 1.0) -> float:
    """An eigenvalue counts as non-zero above max(the eigensolver's floor, factor · ||∇L||): at a point
    critical only to O(||∇L||), smaller curvatures cannot be told from zero."""
    return max(default_tolerance(eig), factor * grad_norm)


def _critical_point(cfg: Config, model: nn.Module, x, y, seed: int, restart: int, train_loss: float,
                    dead_at_init: int) -> dict:
    with training_phase():  # training to gn_steps: the plan scales it with that budget
        point, iterations = seek_critical_point(model, x, y, cfg.gn_steps, cfg.gn_tolerance)
    spectrum = hessian_eigenvalues(point, F.mse_loss, x, y, tol=0.0)
    eig, g = spectrum.eigenvalues, spectrum.grad_norm
    tol = cfg.eig_tolerance if cfg.eig_tolerance is not None else tied_tolerance(eig, g)
    hessian = _counts(eig, tol)
    with torch.no_grad():
        loss = float(F.mse_loss(point(x), y))
    nonzero = hessian["n_positive"] + hessian["n_negative"]
    metrics = {"minimal_ratio": hessian["n_positive"] / eig.size, "loss": loss, "grad_norm": g,
               "train_loss": train_loss, "reached": float(g < cfg.gn_tolerance), "gn_iterations": iterations,
               "n_params": int(eig.size), "index": hessian["n_negative"] / nonzero if nonzero else None,
               "fits": float(loss < FITS_FRACTION * float(y.var(unbiased=False))),
               "collapsed": float(collapsed(point, x)), "dead_units": dead_units(point, x)[0],
               "dead_units_at_init": dead_at_init, "jacobian_rank_fraction": jacobian_rank(point, x) / eig.size}
    sweep = {f"{k:g}": float(np.mean(eig > tied_tolerance(eig, g, k))) for k in SWEEP}
    return {"condition": CONDITION, "seed": seed, "restart": restart, "metrics": metrics, "hessian": hessian,
            "tolerance_sweep": sweep}


def _counts(eig: np.ndarray, tol: float) -> dict:
    """Eigenvalues above, below and within ±tol: dead ReLU units alone give many exact zeros."""
    return {"n_eigenvalues": int(eig.size), "tolerance": tol, "n_positive": int(np.sum(eig > tol)),
            "n_negative": int(np.sum(eig < -tol)), "n_zero": int(np.sum(np.abs(eig) <= tol)),
            "min": float(eig[0]), "max": float(eig[-1])}


def summarize(cfg: Config, unit_results: list[dict], standard: dict) -> dict:
    runs = standard["conditions"][CONDITION]["runs"]
    kept = [r for r in runs if r["metrics"]["reached"] and not r["metrics"]["collapsed"]]
    counts_ok = all(r["hessian"]["n_eigenvalues"] == r["metrics"]["n_params"] for r in runs)
    return {"points": {POINTS: {"runs": kept}}, "tables": [_sweep_table(runs)],
            "sanity": [sanity("The Hessian is the full matrix over all parameters (one eigenvalue per parameter)",
                              counts_ok, f"{runs[0]['hessian']['n_eigenvalues']} eigenvalues for "
                              f"{runs[0]['metrics']['n_params']} parameters")]}


def _sweep_table(runs: list[dict]) -> dict:
    from dlstudies.analysis.stats import describe

    rows = []
    for k in SWEEP:
        s = describe([r["tolerance_sweep"][f"{k:g}"] for r in runs], "minimal_ratio")
        rows.append([f"{k:g} x ||∇L||", f"{value_text('minimal_ratio', s['value'])} "
                     f"{interval_text('minimal_ratio', s['ci95'])}"])
    return {"title": "Minimal ratio against the eigenvalue tolerance (all runs)",
            "columns": ["tolerance", "minimal ratio (mean [95% CI])"], "rows": rows}


def claims(cfg: Config) -> list[Claim]:
    return [Claim("At critical points, a lower loss goes with a higher minimal ratio (a negative rank correlation)",
                  "Dauphin et al. 2014; Choromanska et al. 2015; report B, \"What happens when the gradient is almost "
                  "zero\"", "minimal_ratio", "correlation", a=POINTS, x="loss", direction="lower", table="points")]


def answer(cfg: Config, results: dict) -> str:
    check = results["checks"][0]
    runs = results["conditions"][CONDITION]["runs"]
    s = results["conditions"][CONDITION]["summary"]
    n_collapsed = sum(bool(r["metrics"]["collapsed"]) for r in runs)
    n_reached = sum(bool(r["metrics"]["reached"]) for r in runs)
    rho = "undefined" if check["effect"] is None else f"{check['effect']:+.2f} [{check['ci95'][0]:+.2f}, {check['ci95'][1]:+.2f}]"
    return (f"{opening(check['verdict'])} over the {check['n']} critical points that did not collapse, Spearman ρ "
            f"of minimal ratio with loss was {rho}; {n_reached} of {len(runs)} runs reached ||∇L|| < "
            f"{cfg.gn_tolerance:g} and {n_collapsed} collapsed to a constant predictor (left out). Minimal ratio "
            f"{value_text('minimal_ratio', s['minimal_ratio']['value'])} {interval_text('minimal_ratio', s['minimal_ratio']['ci95'])}, "
            f"bounded by the Jacobian's rank at {value_text('minimal_ratio', s['jacobian_rank_fraction']['value'])} of "
            f"the parameters; {s['dead_units_at_init']['value']:.1f} units dead at initialisation on average.")


def setup(cfg: Config) -> str:
    return (f"{cfg.target} on {cfg.n_train} points, MLP 1-{'-'.join(map(str, cfg.hidden))}-1 {cfg.activation} "
            f"({n_params(cfg.hidden)} parameters), Adam lr {cfg.lr:g} for {cfg.epochs} epochs, then L-BFGS on "
            f"||∇L||² (≤ {cfg.gn_steps} steps, to {cfg.gn_tolerance:g}); exact float64 Hessian")


def figures(results: dict, folder) -> list[str]:
    runs = results["conditions"][CONDITION]["runs"]
    f, ax = fig.new_figure(size=(6, 4.2))
    kinds = (("critical point", lambda m: m["reached"] and not m["collapsed"]), ("collapsed (constant output)",
             lambda m: m["collapsed"]), ("||∇L|| tolerance not reached", lambda m: not m["reached"] and not m["collapsed"]))
    for i, (label, keep) in enumerate(kinds):
        pts = [r["metrics"] for r in runs if keep(r["metrics"]) and r["metrics"]["loss"] is not None]
        # See-through, as runs often share a minimal ratio.
        fig.scatter_runs(ax, [p["loss"] for p in pts], [p["minimal_ratio"] for p in pts], jitter=0.0,
                         label=f"{label} ({len(pts)})", color=fig.color(i), marker="ox^"[i], s=24)
    losses = [r["metrics"]["loss"] for r in runs if r["metrics"]["loss"]]
    if fig.spans_decades(losses):
        ax.set_xscale("log")
    ax.set(xlabel="training loss (MSE) at the critical point", ylabel="minimal ratio (fraction of eigenvalues > tol)",
           title=f"Minimal ratio vs loss, {len(runs)} runs")
    ax.legend(fontsize=8)
    return fig.save(f, folder, "minimal_ratio_vs_loss")


STUDY = register(Study("minimal-ratio", "Near a zero gradient, does a lower loss go with a higher minimal ratio?",
                       PRESETS, run_unit, summarize, figures, runtime_s="~1 min", metrics=METRICS, claims=claims,
                       answer=answer, setup=setup, seeds={"smoke": 3, "default": 20, "paper": 10}))
