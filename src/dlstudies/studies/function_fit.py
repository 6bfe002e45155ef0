"""function-fit: at an equal parameter count, does a deeper network fit a 1-D function better?

    dlstudies run function-fit          # ~1 min at default scale on 2 cores

Report B fitted f1(x) = sin(5πx)/(5πx) and f2(x) = sign(sin(5πx)) on (0, 1] with three models of
~571 parameters each (1 to 6 layers), Adam lr 1e-3, full batch, 20,000 epochs, once each, and
found the deeper models' loss lower. Here three ReLU MLPs *(chosen)* with 1, 3 and 6 hidden
layers get widths solved for the same count (within 1%; `models.widths`), and every model is
trained on every target for several seeds. Different depths cannot share a stack, so each
(target, model) pair is one fit whose members are the seeds. Literature: depth can represent
some functions with exponentially fewer units than shallow networks need (Telgarsky 2016;
Eldan & Shamir 2016), which says nothing about whether gradient descent finds those
representations; the paired comparison below answers it for these targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from dlstudies.analysis import stats
from dlstudies.config import Runtime, require
from dlstudies.data.functions import TARGETS, function_dataset
from dlstudies.engine import TrainSpec, fixed_epochs, predict_members
from dlstudies.engine.evaluate import mean_loss
from dlstudies.models.builders import ACTIVATIONS, mlp
from dlstudies.models.widths import MATCH_TOLERANCE, Widths, match_error, mlp_widths
from dlstudies.optim import OptSpec
from dlstudies.report import figures as fig
from dlstudies.studies.base import Study, Unit, register, seed_chunks
from dlstudies.studies.results import (
    add_summaries,
    compare,
    fmt_num,
    group_runs,
    median_diff_sentence,
    summary_table,
)
from dlstudies.studies.training import divergence, fit_members

MODEL_NAMES = ("shallow", "medium", "deep")
METRICS = ("n_params", "depth", "train_mse", "test_mse")


@dataclass(frozen=True)
class Config:
    targets: tuple[str, ...] = ("f1", "f2")
    depths: tuple[int, ...] = (1, 3, 6)  # hidden layers of the shallow, medium and deep model
    budget: int = 571  # parameters per model (report B)
    activation: str = "relu"
    lr: float = 1e-3
    epochs: int = 20000
    n_train: int = 500  # grid points in (0, 1]; full batch
    n_test: int = 500  # points between the training points
    curve_points: int = 200  # stored points of each loss curve (results.json stays small)
    plot_points: int = 100  # stored prediction points per run
    seed_chunk: int = 10  # seeds per work unit, trained as one stack

    def __post_init__(self):
        for target in self.targets:
            TARGETS.get(target)
        ACTIVATIONS.get(self.activation)
        require(len(self.targets) > 0, "targets must name at least one function")
        require(len(self.depths) == len(MODEL_NAMES) and all(a < b for a, b in zip(self.depths, self.depths[1:]))
                and self.depths[0] >= 1, f"depths must be three increasing numbers >= 1, got {self.depths}")
        require(self.budget >= 10, f"budget must be >= 10 parameters, got {self.budget}")
        require(self.lr > 0, f"lr must be > 0, got {self.lr}")
        require(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        require(self.n_train >= 2 and self.n_test >= 2, f"n_train and n_test must be >= 2, got {self.n_train}, {self.n_test}")
        require(self.curve_points >= 2 and self.plot_points >= 2, "curve_points and plot_points must be >= 2")
        require(self.seed_chunk >= 1, f"seed_chunk must be >= 1, got {self.seed_chunk}")


PRESETS = {"smoke": Config(epochs=40, n_train=64, n_test=64, curve_points=20, plot_points=32),
           "default": Config(epochs=3000), "paper": Config()}


@lru_cache(maxsize=16)
def architectures(depths: tuple[int, ...], budget: int) -> dict[str, Widths]:
    """Hidden widths per model: the shallow one on budget, the others solved for its exact count
    (the shallow net has one width to choose, so it is the coarsest; the others match it)."""
    shallow = mlp_widths(1, 1, depths[0], budget)
    solved = {MODEL_NAMES[0]: shallow}
    solved.update({n: mlp_widths(1, 1, d, shallow.n_params) for n, d in zip(MODEL_NAMES[1:], depths[1:])})
    counts = [s.n_params for s in solved.values()]
    require(match_error(counts) <= MATCH_TOLERANCE, f"no widths give equal counts for depths {depths} near {budget} "
            f"parameters (got {counts}); choose another budget")
    return solved


def units(cfg: Config, seeds: tuple[int, ...], runtime: Runtime) -> list[Unit]:
    architectures(cfg.depths, cfg.budget)  # an impossible budget fails before any training
    return [Unit("function-fit", cfg, chunk, runtime, (("target", t), ("model", m)))
            for t in cfg.targets for m in MODEL_NAMES for chunk in seed_chunks(seeds, cfg.seed_chunk)]


def run_unit(unit: Unit) -> dict:
    cfg: Config = unit.config
    target, name = unit.param("target"), unit.param("model")
    data = function_dataset(target, cfg.n_train, cfg.n_test)
    widths = architectures(cfg.depths, cfg.budget)[name]
    builder = lambda: mlp([1, *widths.hidden, 1], act=ACTIVATIONS.get(cfg.activation))
    spec = TrainSpec(fixed_epochs(cfg.epochs), batch_size=len(data.train), loss="mse", device=unit.runtime.device)
    fit = fit_members(unit, builder, OptSpec("adam", cfg.lr), data.train.x, data.train.y, spec)
    keep = thin(len(data.test), cfg.plot_points)
    truth = {"target": target, "x": data.test.x[keep, 0].tolist(), "y": data.test.y[keep, 0].tolist()}
    return {"runs": _runs(cfg, unit, data, fit, widths, keep), "truth": truth}


def thin(n: int, points: int) -> np.ndarray:
    """About `points` evenly spread indices of range(n), first and last included."""
    return np.unique(np.linspace(0, n - 1, min(n, points)).round().astype(int))


def _runs(cfg: Config, unit: Unit, data, fit, widths: Widths, keep: np.ndarray) -> list[dict]:
    test_out = predict_members(fit.models, data.test.x)
    mse = {"train": mean_loss(predict_members(fit.models, data.train.x), data.train.y, "mse"),
           "test": mean_loss(test_out, data.test.y, "mse")}
    epochs = thin(fit.history["loss"].shape[1], cfg.curve_points)
    runs = []
    for i, seed in enumerate(unit.seeds):
        metrics = {"n_params": widths.n_params, "depth": len(widths.hidden),
                   **{f"{k}_mse": float(v[i]) for k, v in mse.items()}}
        runs.append({"condition": f"{unit.param('target')}/{unit.param('model')}", "seed": seed,
                     "metrics": metrics, "widths": list(widths.hidden),
                     "curves": {"epoch": (epochs + 1).tolist(), "loss": fit.history["loss"][i, epochs].tolist()},
                     "prediction": test_out[i, keep, 0].tolist(), **divergence(fit, i)})
    return runs


def summarize(cfg: Config, unit_results: list[dict]) -> dict:
    conditions = add_summaries(group_runs(unit_results), METRICS)
    comparisons = [c for t in cfg.targets for metric in ("train_mse", "test_mse")
                   for c in compare(conditions, metric, False, [(f"{t}/deep", f"{t}/shallow"),
                                                                (f"{t}/medium", f"{t}/shallow")])]
    models = architectures(cfg.depths, cfg.budget)
    return {"conditions": conditions, "comparisons": comparisons,
            "truth": {r["truth"]["target"]: r["truth"] for r in unit_results},
            "models": {n: {"depth": len(w.hidden), "widths": list(w.hidden), "n_params": w.n_params}
                       for n, w in models.items()},
            "checks": _checks(cfg, conditions, comparisons), "answer": _answer(cfg, comparisons, models),
            "tables": [_model_table(models), summary_table("Per target and model, over seeds", conditions, METRICS[2:])]}


def _deep_vs_shallow(comparisons: list[dict], target: str, metric: str = "train_mse") -> dict:
    return next(c for c in comparisons if c["a"] == f"{target}/deep" and c["b"] == f"{target}/shallow"
                and c["metric"] == metric)


def _checks(cfg: Config, conditions: dict, comparisons: list[dict]) -> list[dict]:
    counts = [r["metrics"]["n_params"] for c in conditions.values() for r in c["runs"]]
    checks = [stats.check("The models compared have equal parameter counts (within 1%)",
                          "DESIGN.md, known traps", match_error(counts) <= MATCH_TOLERANCE,
                          f"parameter counts {sorted(set(counts))}, largest relative difference {match_error(counts):.2%}")]
    for t in cfg.targets:
        cmp = _deep_vs_shallow(comparisons, t)
        checks.append(stats.check(
            f"At an equal parameter count, the deeper network fits {t} better (lower training MSE) than the shallow one",
            "report B (deep vs shallow); Telgarsky 2016; Eldan & Shamir 2016",
            cmp["wins"][cmp["a"]] > cmp["wins"][cmp["b"]] and (cmp["diff"] or 0) < 0,
            f"train MSE deep - shallow: mean {fmt_num(cmp['diff'])}, deep lower in {cmp['wins'][cmp['a']]} of {cmp['n']} "
            f"seeds; {median_diff_sentence(cmp, 'MSE')}"))
    return checks


def _answer(cfg: Config, comparisons: list[dict], models: dict[str, Widths]) -> str:
    parts = []
    for t in cfg.targets:
        cmp = _deep_vs_shallow(comparisons, t)
        parts.append(f"on {t} in {cmp['wins'][cmp['a']]} of {cmp['n']} seeds ({median_diff_sentence(cmp, 'MSE')})")
    deep, shallow = models["deep"], models["shallow"]
    return (f"At {shallow.n_params} parameters, the deep MLP ({len(deep.hidden)} hidden layers, {deep.n_params} "
            f"parameters) reached a lower training MSE than the shallow one (1 hidden layer) " + "; ".join(parts) + ".")


def _model_table(models: dict[str, Widths]) -> dict:
    rows = [[n, len(w.hidden), "-".join(map(str, [1, *w.hidden, 1])), w.n_params] for n, w in models.items()]
    return {"title": "Models (widths solved for equal parameter counts)",
            "columns": ["model", "hidden layers", "layer sizes", "parameters"], "rows": rows}


def figures(results: dict, folder) -> list[str]:
    targets = list(results["truth"])
    return _loss_figure(results, targets, folder) + _prediction_figure(results, targets, folder)


def _by_target(results: dict, target: str) -> dict:
    return {name.split("/", 1)[1]: c for name, c in results["conditions"].items() if name.split("/", 1)[0] == target}


def _loss_figure(results: dict, targets: list[str], folder) -> list[str]:
    f, axes = fig.new_figure(ncols=len(targets), size=(4.8 * len(targets), 3.6))
    colors = fig.condition_colors(results["models"])
    for ax, t in zip(np.atleast_1d(axes), targets):
        for model, c in _by_target(results, t).items():
            fig.curve_band(ax, [r["curves"]["loss"] for r in c["runs"]], label=_label(results, model), color=colors[model],
                           x=c["runs"][0]["curves"]["epoch"], log_y=True, ylabel="training MSE")
        # Seeds far apart at the end (a bimodal result) are drawn one line each, not as one band.
        ax.set_title(f"{t}: training MSE (mean, 95% band)")
        ax.legend()
    return fig.save(f, folder, "loss_curves")


def _label(results: dict, model: str) -> str:
    m = results["models"][model]
    return f"{model} ({m['depth']} hidden, {m['n_params']} params)"


def _prediction_figure(results: dict, targets: list[str], folder) -> list[str]:
    f, axes = fig.new_figure(ncols=len(targets), size=(4.8 * len(targets), 3.6))
    for ax, t in zip(np.atleast_1d(axes), targets):
        truth = results["truth"][t]
        ax.plot(truth["x"], truth["y"], color="black", lw=1.0, ls="--", label="ground truth")
        colors = fig.condition_colors(results["models"])
        for model, c in _by_target(results, t).items():
            fig.curve_band(ax, [r["prediction"] for r in c["runs"]], label=_label(results, model), color=colors[model],
                           x=truth["x"], log_y=False, xlabel="x", ylabel="prediction")
        ax.set_title(f"{t}: test predictions (mean, 95% band)")
        ax.legend(fontsize=7)
    return fig.save(f, folder, "predictions")


STUDY = register(Study("function-fit", "At an equal parameter count, does a deeper network fit a 1-D function better?",
                       PRESETS, run_unit, summarize, figures, units=units, runtime_s="~1 min"))
