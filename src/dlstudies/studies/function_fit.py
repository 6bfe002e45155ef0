"""function-fit: at an equal parameter count, does a deeper network fit a 1-D function better? (B1)

    dlstudies run function-fit          # ~30 s at default scale on 2 cores (10 seeds)

Report B fitted f1(x) = sin(5πx)/(5πx) and f2(x) = sign(sin(5πx)) on (0, 1] with three models of
~571 parameters each (1 to 6 layers), Adam lr 1e-3, full batch, 20,000 epochs, once each, and
found the deeper models' loss lower. Here three ReLU MLPs *(chosen)* with 1, 3 and 6 hidden
layers get widths solved for the same count (within 1%; `models.widths`, held by a `sanity`
record), and every model is trained on every target for several seeds. Different depths cannot
share a stack, so each (target, model) pair is one fit whose members are the seeds.

Outcomes are bimodal: some seeds fit, others stall on a plateau two orders of magnitude higher
(measured at default: the deep net's training MSE on f1 is 1e-5 to 5e-5 in 6 of 10 seeds and ~6e-3 in the
rest). A mean and its t-interval describe neither mode, so: the figures draw every seed's line;
MSE is compared as a geometric-mean ratio deep / shallow over seeds (log scale, exact sign-flip
test); and each run records whether it `fitted` — training MSE at most `fit_level` times the
target's variance (R² ≥ 1 − fit_level) — counted per model with a Clopper-Pearson interval.
Literature: depth can represent some functions with exponentially fewer units than shallow
networks need (Telgarsky 2016; Eldan & Shamir 2016), which says nothing about whether gradient
descent finds those representations; the paired comparison answers it for these targets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy import stats as sps

from dlstudies.analysis.claims import Claim, opening, sanity
from dlstudies.analysis.measures import effect_text, interval_text
from dlstudies.config import reals, require
from dlstudies.data.functions import TARGETS, function_dataset
from dlstudies.engine import TrainSpec, fixed_epochs, predict_members
from dlstudies.engine.evaluate import mean_loss
from dlstudies.models.builders import ACTIVATIONS, mlp
from dlstudies.models.widths import MATCH_TOLERANCE, Widths, match_error, mlp_widths
from dlstudies.optim import OptSpec
from dlstudies.report import figures as fig
from dlstudies.studies.base import Study, StudyConfig, Unit, register
from dlstudies.studies.results import best_still_improving, overall_verdict, still_improving_note
from dlstudies.studies.training import divergence, fit_members

MODEL_NAMES = ("shallow", "medium", "deep")
METRICS = ("train_mse", "test_mse")


@dataclass(frozen=True)
class Config(StudyConfig):
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
    # A run "fits" when its training MSE is at most this fraction of the target's variance (R² ≥ 0.99):
    # chosen from pilot runs, it falls in the gap between the two modes on both targets.
    fit_level: float = field(default=0.01, metadata={"rule": reals(0, 1, lo_open=True, hi_open=True)})

    def validate(self) -> None:
        for target in self.targets:
            TARGETS.get(target)
        ACTIVATIONS.get(self.activation)
        require(len(self.targets) > 0, "targets must name at least one function")
        require(len(self.depths) == len(MODEL_NAMES) and all(a < b for a, b in zip(self.depths, self.depths[1:])),
                f"depths must be three increasing numbers >= 1, got {self.depths}")
        require(self.budget >= 10, f"budget must be >= 10 parameters, got {self.budget}")
        require(self.n_train >= 2 and self.n_test >= 2, f"n_train and n_test must be >= 2, got {self.n_train}, {self.n_test}")
        require(self.curve_points >= 2 and self.plot_points >= 2, "curve_points and plot_points must be >= 2")


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


def grid(cfg: Config) -> list[tuple]:
    architectures(cfg.depths, cfg.budget)  # an impossible budget fails before any training
    return [(("target", t), ("model", m)) for t in cfg.targets for m in MODEL_NAMES]


def run_unit(unit: Unit) -> dict:
    cfg: Config = unit.config
    target, name = unit.param("target"), unit.param("model")
    data = function_dataset(target, cfg.n_train, cfg.n_test)
    widths = architectures(cfg.depths, cfg.budget)[name]
    builder = lambda: mlp([1, *widths.hidden, 1], act=ACTIVATIONS.get(cfg.activation))  # noqa: E731
    spec = TrainSpec(fixed_epochs(cfg.epochs), batch_size=len(data.train), loss="mse", device=unit.runtime.device)
    fit = fit_members(unit, builder, OptSpec("adam", cfg.lr), data.train.x, data.train.y, spec)
    keep = thin(len(data.test), cfg.plot_points)
    truth = {"target": target, "x": data.test.x[keep, 0].tolist(), "y": data.test.y[keep, 0].tolist(),
             "variance": float(data.train.y.double().var(unbiased=False))}
    return {"runs": _runs(cfg, unit, data, fit, widths, keep, truth["variance"]), "truth": truth}


def thin(n: int, points: int) -> np.ndarray:
    """About `points` evenly spread indices of range(n), first and last included."""
    return np.unique(np.linspace(0, n - 1, min(n, points)).round().astype(int))


def _runs(cfg: Config, unit: Unit, data, fit, widths: Widths, keep: np.ndarray, variance: float) -> list[dict]:
    test_out = predict_members(fit.models, data.test.x)
    mse = {"train": mean_loss(predict_members(fit.models, data.train.x), data.train.y, "mse"),
           "test": mean_loss(test_out, data.test.y, "mse")}
    epochs = thin(fit.history["loss"].shape[1], cfg.curve_points)
    runs = []
    for i, seed in enumerate(unit.seeds):
        metrics = {"n_params": widths.n_params, "depth": len(widths.hidden),
                   **{f"{k}_mse": float(v[i]) for k, v in mse.items()}}
        fitted = bool(not fit.diverged[i] and metrics["train_mse"] <= cfg.fit_level * variance)
        # 1 or 0 per run: its mean over seeds is the fraction of seeds that fit.
        metrics["fit_fraction"] = None if fit.diverged[i] else float(fitted)
        runs.append({"condition": f"{unit.param('target')}/{unit.param('model')}", "seed": seed,
                     "metrics": metrics, "widths": list(widths.hidden), "fitted": fitted,
                     "still_improving": best_still_improving(fit.history["loss"][i]),
                     "curves": {"epoch": (epochs + 1).tolist(), "loss": fit.history["loss"][i, epochs].tolist()},
                     "prediction": test_out[i, keep, 0].tolist(), **divergence(fit, i)})
    return runs


# ---- summary, claims, answer ---------------------------------------------------------------------

def summarize(cfg: Config, unit_results: list[dict], standard: dict) -> dict:
    conditions = standard["conditions"]
    models = architectures(cfg.depths, cfg.budget)
    counts = [r["metrics"]["n_params"] for c in conditions.values() for r in c["runs"]]
    fits = fit_counts(conditions)
    return {"table": _with_fits(cfg, standard["table"], fits), "truth": {r["truth"]["target"]: r["truth"] for r in unit_results},
            "models": {n: {"depth": len(w.hidden), "widths": list(w.hidden), "n_params": w.n_params}
                       for n, w in models.items()},
            "fits": fits,
            "sanity": [sanity("The models compared have equal parameter counts (within 1%)",
                              match_error(counts) <= MATCH_TOLERANCE, f"parameter counts {sorted(set(counts))}, "
                              f"largest relative difference {match_error(counts):.2%}")],
            "tables": [_model_table(models)]}


def fit_counts(conditions: dict) -> dict:
    """Per condition: how many seeds fit, of how many, with the Clopper-Pearson 95% interval of the
    fraction (exact for a count of successes; scipy)."""
    out = {}
    for name, c in conditions.items():
        flags = [r["fitted"] for r in c["runs"] if not r.get("diverged")]
        k, n = int(sum(flags)), len(flags)
        ci = sps.binomtest(k, n).proportion_ci(0.95, method="exact") if n else None
        out[name] = {"fitted": k, "n": n, "fraction": k / n if n else None,
                     "ci95": [float(ci.low), float(ci.high)] if ci else [None, None]}
    return out


def _with_fits(cfg: Config, table: dict, fits: dict) -> dict:
    """The main table with a column of the seeds that fit (k of n, exact interval of the fraction)."""
    rows = [row + [_fit_cell(fits[row[0]])] for row in table["rows"]]
    return {"title": f"Per target and model, over seeds (a seed fits: training MSE ≤ {cfg.fit_level:g} × the "
                     "target's variance)", "columns": table["columns"] + ["seeds that fit [95% CI, Clopper-Pearson]"],
            "rows": rows}


def _fit_cell(f: dict) -> str:
    return f"{f['fitted']} of {f['n']} [{100 * f['ci95'][0]:.0f}%, {100 * f['ci95'][1]:.0f}%]" if f["n"] else "n/a"


def claims(cfg: Config) -> list[Claim]:
    return [Claim(f"At an equal parameter count, the deeper network fits {t} better (lower training MSE) than the "
                  "shallow one", "report B (deep vs shallow); Telgarsky 2016; Eldan & Shamir 2016", "train_mse",
                  "directional", a=f"{t}/deep", b=f"{t}/shallow", direction="lower") for t in cfg.targets]


def answer(cfg: Config, results: dict) -> str:
    checks, fits = results["checks"], results["fits"]
    parts = [f"on {c['a'].split('/')[0]} deep / shallow training MSE {effect_text('train_mse', c['effect'])} "
             f"{interval_text('train_mse', c['ci95'], effect=True)} (geometric mean over seeds, {c['verdict']}; seeds "
             f"that fit: deep {fits[c['a']]['fitted']}/{fits[c['a']]['n']}, shallow {fits[c['b']]['fitted']}/"
             f"{fits[c['b']]['n']})" for c in checks]
    n = results["models"]["shallow"]["n_params"]
    return (f"{opening(overall_verdict(checks))} at {n} parameters, " + "; ".join(parts) + ". "
            + still_improving_note(results["convergence"], "training MSE"))


def setup(cfg: Config) -> str:
    return (f"targets {', '.join(cfg.targets)} on {cfg.n_train} points of (0, 1]; ReLU MLPs with {', '.join(map(str, cfg.depths))} "
            f"hidden layers at ~{cfg.budget} parameters; Adam lr {cfg.lr:g}, full batch, {cfg.epochs} epochs")


def _model_table(models: dict[str, Widths]) -> dict:
    rows = [[n, len(w.hidden), "-".join(map(str, [1, *w.hidden, 1])), w.n_params] for n, w in models.items()]
    return {"title": "Models (widths solved for equal parameter counts)",
            "columns": ["model", "hidden layers", "layer sizes", "parameters"], "rows": rows}


def figures(results: dict, folder) -> list[str]:
    targets = list(results["truth"])
    return _loss_figure(results, targets, folder) + _prediction_figure(results, targets, folder)


def _by_target(results: dict, target: str) -> dict:
    return {name.split("/", 1)[1]: c for name, c in results["conditions"].items() if name.split("/", 1)[0] == target}


def seed_lines(ax, runs: list[dict], key: str, x, label: str, color: str) -> None:
    """One line per seed (outcomes are bimodal: a mean band would sit between the modes); runs
    that fit solid, the others dotted. `key`: "prediction", or a curve's name."""
    ax.plot([], [], color=color, lw=1.2, label=label)  # the legend's entry: one solid line per model
    for r in runs:
        values = r["prediction"] if key == "prediction" else r["curves"][key]
        ax.plot(x, [np.nan if v is None else v for v in values], color=color, lw=0.8, alpha=0.7,
                ls="-" if r.get("fitted") else ":")


def _loss_figure(results: dict, targets: list[str], folder) -> list[str]:
    f, axes = fig.new_figure(ncols=len(targets), size=(4.8 * len(targets), 3.6))
    colors = fig.condition_colors(results["models"])
    for ax, t in zip(np.atleast_1d(axes), targets):
        for model, c in _by_target(results, t).items():
            seed_lines(ax, c["runs"], "loss", c["runs"][0]["curves"]["epoch"], _label(results, model), colors[model])
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("training MSE")
        ax.set_title(f"{t}: training loss, one line per seed (dotted: did not fit)", fontsize=9)
        ax.legend(fontsize=7)
    return fig.save(f, folder, "loss_curves")


def _label(results: dict, model: str) -> str:
    m = results["models"][model]
    return f"{model} ({m['depth']} hidden, {m['n_params']} params)"


def _prediction_figure(results: dict, targets: list[str], folder) -> list[str]:
    f, axes = fig.new_figure(ncols=len(targets), size=(4.8 * len(targets), 3.6))
    for ax, t in zip(np.atleast_1d(axes), targets):
        truth = results["truth"][t]
        ax.plot(truth["x"], truth["y"], color="black", lw=1.2, ls="--", label="ground truth")
        colors = fig.condition_colors(results["models"])
        for model, c in _by_target(results, t).items():
            seed_lines(ax, c["runs"], "prediction", truth["x"], _label(results, model), colors[model])
        ax.set_xlabel("x")
        ax.set_ylabel("prediction")
        ax.set_title(f"{t}: test predictions, one line per seed", fontsize=9)
        ax.legend(fontsize=7)
    return fig.save(f, folder, "predictions")


STUDY = register(Study("function-fit", "At an equal parameter count, does a deeper network fit a 1-D function better?",
                       PRESETS, run_unit, summarize, figures, runtime_s="~30 s", seeds={"smoke": 3, "default": 10, "paper": 10},
                       grid=grid, metrics=METRICS, claims=claims, answer=answer, setup=setup))
