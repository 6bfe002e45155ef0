"""image-depth: at an equal parameter count, does a deeper network classify images better? (B2)

    dlstudies run image-depth                      # ~1 min at default scale on 2 cores (10 seeds, digits)
    dlstudies run image-depth --scale paper        # fashion-mnist 28x28 (Debian's dataset-fashion-mnist)
    dlstudies run image-depth --scale paper --data mnist --data-dir DIR   # the user's MNIST IDX files

Report B trained small CNNs on MNIST (Adam lr 1e-3, 10 epochs, once each) and compared their
channel counts, not their depths at an equal count. Here two CNNs (1 vs 3 conv layers) and two
ReLU MLPs (1 vs 4 hidden layers) *(chosen)* are built so that the two of a family have the same
parameter count within 1% (`models.widths`; a `sanity` record per family holds it): the shallow
model is set by the config, and the deep one's widths are solved for its count. Each model trains
as one stack of seeds (the MLPs on flattened images, the engine's fused path); the claim per
family is the paired (same seed, same sample order) difference in test accuracy, deep − shallow.

The budget is long enough that the comparison is about the models, not their speed: every run
records `still_improving` (its best validation loss so far fell by more than 1% over the last 10%
of epochs: `results.best_still_improving`; the training loss of a network that separates its data
keeps falling towards 0 under Adam, so it cannot tell, and the validation loss of a mini-batch run
jitters by several percent from epoch to epoch), and the answer says how many runs still were. Default: the bundled 8x8 `digits`
(offline), EPOCHS_DEFAULT epochs, chosen from pilot runs in which the validation loss of every
model had passed its minimum. `paper`: report B's setting, 28x28 images (fashion-mnist; MNIST with
`--data mnist --data-dir DIR`), Adam lr 1e-3, 10 epochs.
Literature: Seide, Li & Yu (2011) found deeper networks better than a shallow one with the same
number of parameters (speech recognition); whether that holds for these small image tasks is
what the paired comparison measures.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from dlstudies.analysis.claims import Claim, opening, sanity
from dlstudies.analysis.measures import effect_text, interval_text
from dlstudies.config import require
from dlstudies.data import load_data
from dlstudies.data.base import subsample
from dlstudies.engine import TrainSpec, fixed_epochs, predict_members
from dlstudies.engine.evaluate import accuracy, mean_loss
from dlstudies.models.builders import mlp
from dlstudies.models.conv import cnn
from dlstudies.models.widths import (
    MATCH_TOLERANCE,
    Widths,
    cnn_count,
    cnn_widths,
    match_error,
    mlp_count,
    mlp_widths,
)
from dlstudies.optim import OptSpec
from dlstudies.registry import Registry
from dlstudies.report import figures as fig
from dlstudies.studies.base import Study, StudyConfig, Unit, register
from dlstudies.studies.params_generalization import flat, point
from dlstudies.studies.results import best_still_improving, overall_verdict, still_improving_note
from dlstudies.studies.training import classifier_runs, fit_members

METRICS = ("final_loss", "train_acc", "test_acc")
CURVES = ("loss", "val_loss", "train_acc", "test_acc")
DEPTH_NAMES = ("shallow", "deep")
EPOCHS_DEFAULT = 100
# Images per forward pass when measuring: the engine's default (4096) makes activations of
# members x 4096 x C x H x W, about 250 MB for 5 seeds of the shallow CNN on 28x28 images, per
# worker process; chunks of 256 keep that near 16 MB at the same speed.
PREDICT_CHUNK = 256


@dataclass(frozen=True)
class Family:
    """How a family of models is sized (`solve` -> {depth name: Widths}) and built; `flat`: it takes
    images as feature vectors."""

    solve: Callable[[Config, tuple[int, ...], int], dict[str, Widths]]
    build: Callable[[tuple[int, ...], Widths, int], nn.Module]
    flat: bool = False


FAMILIES: Registry = Registry("model family")


@dataclass(frozen=True)
class Config(StudyConfig):
    data: str = "digits"
    families: tuple[str, ...] = ("cnn", "mlp")
    cnn_shallow: tuple[int, ...] = (16,)  # conv channels of the shallow CNN
    cnn_fc: int = 32  # the shallow CNN's fc width: with its channels it sets the CNN budget
    cnn_deep: tuple[int, ...] = (8, 16, 32)  # conv channels of the deep CNN (its fc width is solved)
    mlp_width: int = 64  # the shallow MLP's hidden width: it sets the MLP budget
    mlp_depths: tuple[int, ...] = (1, 4)  # hidden layers of the shallow and the deep MLP
    lr: float = 1e-3
    epochs: int = EPOCHS_DEFAULT
    batch_size: int = 32  # (chosen)
    n_train: int | None = None  # None: the whole training split
    n_test: int | None = None
    seed_chunk: int = 10  # seeds per work unit, trained as one stack

    def validate(self) -> None:
        for family in self.families:
            FAMILIES.get(family)
        require(len(self.families) > 0, "families must name at least one of " + ", ".join(FAMILIES.names()))
        require(len(self.cnn_shallow) < len(self.cnn_deep), f"the deep CNN needs more conv layers than the shallow one, "
                f"got {self.cnn_shallow} and {self.cnn_deep}")
        require(len(self.mlp_depths) == 2 and 1 <= self.mlp_depths[0] < self.mlp_depths[1],
                f"mlp_depths must be two increasing numbers >= 1, got {self.mlp_depths}")


def _solve_cnn(cfg: Config, shape: tuple[int, ...], n_classes: int) -> dict[str, Widths]:
    require(min(shape[1:]) // 2 ** len(cfg.cnn_deep) >= 1, f"{len(cfg.cnn_deep)} conv layers with 2x2 pooling "
            f"leave no feature map of a {shape[1]}x{shape[2]} image; use fewer cnn_deep channels")
    budget = cnn_count(shape, cfg.cnn_shallow, (cfg.cnn_fc,), n_classes)
    return {"shallow": Widths((cfg.cnn_fc,), budget, budget, cfg.cnn_shallow),
            "deep": cnn_widths(shape, cfg.cnn_deep, n_classes, budget)}


def _solve_mlp(cfg: Config, shape: tuple[int, ...], n_classes: int) -> dict[str, Widths]:
    n_in = math.prod(shape)
    budget = mlp_count(n_in, [cfg.mlp_width] * cfg.mlp_depths[0], n_classes)
    return {name: mlp_widths(n_in, n_classes, d, budget) for name, d in zip(DEPTH_NAMES, cfg.mlp_depths)}


FAMILIES.register("cnn")(Family(_solve_cnn, lambda shape, w, n: cnn(shape, w.channels, w.hidden, n)))
FAMILIES.register("mlp")(Family(_solve_mlp, lambda shape, w, n: mlp([math.prod(shape), *w.hidden, n], act=nn.ReLU),
                                flat=True))


# After the families are registered: a Config checks its family names.
PRESETS = {"smoke": Config(epochs=2, n_train=200, n_test=200),
           "default": Config(n_train=2000, n_test=1000),  # all of digits
           "paper": Config(data="fashion-mnist", epochs=10)}


def solve_family(cfg: Config, family: str, shape: tuple[int, ...], n_classes: int) -> dict[str, Widths]:
    solved = FAMILIES.get(family).solve(cfg, shape, n_classes)
    counts = [w.n_params for w in solved.values()]
    require(match_error(counts) <= MATCH_TOLERANCE, f"{family}: no widths give equal counts here (got {counts}); "
            "change the shallow model's size")
    return solved


def grid(cfg: Config) -> list[tuple]:
    return [(("family", f), ("model", m)) for f in cfg.families for m in DEPTH_NAMES]


def run_unit(unit: Unit) -> dict:
    cfg: Config = unit.config
    data = subsample(load_data(cfg.data, unit.runtime.data_dir), cfg.n_train, cfg.n_test)
    family, name = FAMILIES.get(unit.param("family")), unit.param("model")
    widths = solve_family(cfg, unit.param("family"), data.input_shape, data.n_classes)[name]
    shape = data.input_shape
    data = flat(data) if family.flat else data
    builder = lambda: family.build(shape, widths, data.n_classes)  # noqa: E731
    held = data.val or data.test
    probes = (_probe("val_loss", held, "loss"), _probe("train_acc", data.train), _probe("test_acc", data.test))
    spec = TrainSpec(fixed_epochs(cfg.epochs), cfg.batch_size, probes=probes, device=unit.runtime.device)
    fit = fit_members(unit, builder, OptSpec("adam", cfg.lr), data.train.x, data.train.y, spec)
    return {"runs": _runs(unit, data, fit, widths)}


def _chunked(predict, x: torch.Tensor) -> torch.Tensor:
    """predict(x) -> (M, N, ...) outputs, computed PREDICT_CHUNK inputs at a time."""
    return torch.cat([predict(x[i:i + PREDICT_CHUNK]) for i in range(0, len(x), PREDICT_CHUNK)], 1)


def _probe(name: str, split, what: str = "accuracy"):
    if what == "loss":
        return lambda predict: {name: mean_loss(_chunked(predict, split.x), split.y, "cross_entropy")}
    return lambda predict: {name: accuracy(_chunked(predict, split.x), split.y)}


def _runs(unit: Unit, data, fit, widths: Widths) -> list[dict]:
    arch = {"channels": list(widths.channels), "hidden": list(widths.hidden),
            "layers": len(widths.channels) + len(widths.hidden) + 1}
    names = [(f"{unit.param('family')}/{unit.param('model')}", seed) for seed in unit.seeds]
    runs = classifier_runs(fit, data, names, metrics={"n_params": widths.n_params}, splits=("train", "test"),
                           curves=CURVES, predict=lambda models, x: _chunked(lambda c: predict_members(models, c), x),
                           extra={"architecture": arch}, stopped=False)
    return [{**r, "still_improving": best_still_improving(fit.history["val_loss"][i])} for i, r in enumerate(runs)]


# ---- summary, claims, answer ---------------------------------------------------------------------

def summarize(cfg: Config, unit_results: list[dict], standard: dict) -> dict:
    conditions = standard["conditions"]
    models = {name: {**c["runs"][0]["architecture"], "n_params": c["runs"][0]["metrics"]["n_params"]}
              for name, c in conditions.items()}
    return {"models": models, "sanity": [_equal_counts(f, models) for f in cfg.families],
            "tables": [_model_table(models)]}


def _equal_counts(family: str, models: dict) -> dict:
    counts = [models[f"{family}/{m}"]["n_params"] for m in DEPTH_NAMES]
    return sanity(f"The shallow and the deep {family.upper()} have equal parameter counts (within 1%)",
                  match_error(counts) <= MATCH_TOLERANCE,
                  f"{counts[0]} vs {counts[1]} parameters ({match_error(counts):.2%} apart)")


def _model_table(models: dict) -> dict:
    rows = [[name, m["layers"], ",".join(map(str, m["channels"])) or "-", ",".join(map(str, m["hidden"])), m["n_params"]]
            for name, m in models.items()]
    return {"title": "Models (the deep one's widths solved for the shallow one's parameter count)",
            "columns": ["model", "layers", "conv channels", "hidden widths", "parameters"], "rows": rows}


def claims(cfg: Config) -> list[Claim]:
    return [Claim(f"At an equal parameter count, the deeper {f.upper()} reaches a higher test accuracy than the "
                  "shallow one", "Seide, Li & Yu 2011; report B (deep vs shallow)", "test_acc", "directional",
                  a=f"{f}/deep", b=f"{f}/shallow", direction="higher") for f in cfg.families]


def answer(cfg: Config, results: dict) -> str:
    checks = results["checks"]
    parts = [f"{c['a'].split('/')[0].upper()} deep − shallow {effect_text('test_acc', c['effect'])} "
             f"{interval_text('test_acc', c['ci95'], effect=True)} test accuracy ({c['verdict']})" for c in checks]
    return (f"{opening(overall_verdict(checks))} on {cfg.data}, at equal parameter counts: " + "; ".join(parts)
            + ". " + still_improving_note(results["convergence"], "validation loss"))


def setup(cfg: Config) -> str:
    return (f"data {cfg.data}; {', '.join(f.upper() for f in cfg.families)}: shallow vs deep at equal parameter "
            f"counts; Adam lr {cfg.lr:g}, batch {cfg.batch_size}, {cfg.epochs} epochs")


def figures(results: dict, folder) -> list[str]:
    conditions = results["conditions"]
    return _curves(results, conditions, folder) + _test_bars(conditions, folder) + fig.confusion_grid(conditions, folder, width=3.2, height=3.2)


def _label(results: dict, name: str) -> str:
    m = results["models"][name]  # the depth the study varies: conv layers of a CNN, hidden layers of an MLP
    depth = f"{len(m['channels'])} conv" if m.get("channels") else f"{len(m.get('hidden', []))} hidden"
    return f"{name} ({depth}, {m['n_params']:,} params)"


def _curves(results: dict, conditions: dict, folder) -> list[str]:
    f, axes = fig.new_figure(ncols=2, nrows=2, size=(11, 7.2))
    titles = {"loss": "training loss (cross-entropy)", "val_loss": "validation loss (convergence flag)",
              "train_acc": "training accuracy", "test_acc": "test accuracy"}
    axes[3].sharey(axes[2])  # train and test accuracy on one scale
    colors = fig.condition_colors(conditions)
    for ax, (curve, title) in zip(axes, titles.items()):
        for name, c in conditions.items():  # a loss falling over decades goes on a log axis, accuracies never
            fig.curve_band(ax, [r["curves"][curve] for r in c["runs"]], label=_label(results, name), color=colors[name],
                           log_y=None if "loss" in curve else False, ylabel=title)
        ax.set_title(title.split(" (")[0])
    f.suptitle("Per epoch: mean and 95% band over seeds (thin lines: each seed, where seeds part)")
    axes[0].legend(fontsize=7)
    return fig.save(f, folder, "training_curves")


def _test_bars(conditions: dict, folder) -> list[str]:
    f, ax = fig.new_figure(size=(5.5, 3.8))
    fig.dots_ci(ax, list(conditions), [point(c["summary"]["test_acc"]) for c in conditions.values()],
                ylabel="test accuracy", colors=list(fig.condition_colors(conditions).values()))
    ax.set_title("Final test accuracy (mean, 95% bootstrap CI over seeds)", fontsize=10)
    return fig.save(f, folder, "test_accuracy")


STUDY = register(Study("image-depth", "At an equal parameter count, does the deeper network (CNN, MLP) reach a higher "
                       "test accuracy?", PRESETS, run_unit, summarize, figures, runtime_s="~1 min",
                       seeds={"smoke": 3, "default": 10, "paper": 10}, grid=grid, metrics=METRICS, claims=claims,
                       answer=answer, setup=setup))
