"""image-depth: at an equal parameter count, does a deeper network classify images better?

    dlstudies run image-depth           # ~10 s at default scale on 2 cores (digits)
    dlstudies run image-depth --data fashion-mnist    # ~3-4 min at default (2,000 training images)

Report B trained small CNNs on MNIST (Adam lr 1e-3, 10 epochs, once each) and compared their
channel counts, not their depths at an equal count. Here two CNNs (1 vs 3 conv layers) and two
ReLU MLPs (1 vs 4 hidden layers) *(chosen)* are built so that the two of a family have the same
parameter count within 1% (`models.widths`): the shallow model is set by the config, and the
deep one's widths are solved for its count. Each model trains as one stack of seeds; data is
the bundled 8x8 `digits` by default (offline), or any image dataset (`--data fashion-mnist`).
Literature: Seide, Li & Yu (2011) found deeper networks better than a shallow one with the same
number of parameters (speech recognition); whether that holds for these small image tasks is
what the paired comparison below measures.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from dlstudies.analysis import stats
from dlstudies.config import Runtime, require
from dlstudies.data import load_data
from dlstudies.data.base import subsample
from dlstudies.engine import TrainSpec, fixed_epochs, predict_members
from dlstudies.engine.evaluate import accuracy
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
from dlstudies.studies.base import Study, Unit, register, seed_chunks
from dlstudies.studies.results import (
    add_summaries,
    compare,
    diverged_runs,
    group_runs,
    median_diff_sentence,
    summary_table,
)
from dlstudies.studies.training import classifier_runs, fit_members

METRICS = ("n_params", "final_loss", "train_acc", "test_acc")
CURVES = ("loss", "train_acc", "test_acc")
DEPTH_NAMES = ("shallow", "deep")
# Images per forward pass when measuring: the engine's default (4096) makes activations of
# members x 4096 x C x H x W, about 250 MB for 5 seeds of the shallow CNN on 28x28 images, per
# worker process; chunks of 256 keep that near 16 MB at the same speed.
PREDICT_CHUNK = 256


@dataclass(frozen=True)
class Family:
    """How a family of models is sized (`solve` -> {depth name: Widths}) and built."""

    solve: Callable[[Config, tuple[int, ...], int], dict[str, Widths]]
    build: Callable[[tuple[int, ...], Widths, int], nn.Module]


FAMILIES: Registry = Registry("model family")


@dataclass(frozen=True)
class Config:
    data: str = "digits"
    families: tuple[str, ...] = ("cnn", "mlp")
    cnn_shallow: tuple[int, ...] = (16,)  # conv channels of the shallow CNN
    cnn_fc: int = 32  # the shallow CNN's fc width: with its channels it sets the CNN budget
    cnn_deep: tuple[int, ...] = (8, 16, 32)  # conv channels of the deep CNN (its fc width is solved)
    mlp_width: int = 64  # the shallow MLP's hidden width: it sets the MLP budget
    mlp_depths: tuple[int, ...] = (1, 4)  # hidden layers of the shallow and the deep MLP
    lr: float = 1e-3
    epochs: int = 10
    batch_size: int = 32  # (chosen)
    n_train: int | None = None  # None: the whole training split
    n_test: int | None = None
    seed_chunk: int = 10  # seeds per work unit, trained as one stack

    def __post_init__(self):
        for family in self.families:
            FAMILIES.get(family)
        require(len(self.families) > 0, "families must name at least one of " + ", ".join(FAMILIES.names()))
        require(len(self.cnn_shallow) < len(self.cnn_deep), f"the deep CNN needs more conv layers than the shallow one, "
                f"got {self.cnn_shallow} and {self.cnn_deep}")
        require(min(self.cnn_shallow + self.cnn_deep) >= 1 and self.cnn_fc >= 1, "channels and cnn_fc must be >= 1")
        require(len(self.mlp_depths) == 2 and 1 <= self.mlp_depths[0] < self.mlp_depths[1],
                f"mlp_depths must be two increasing numbers >= 1, got {self.mlp_depths}")
        require(self.mlp_width >= 1, f"mlp_width must be >= 1, got {self.mlp_width}")
        require(self.lr > 0, f"lr must be > 0, got {self.lr}")
        require(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        require(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        require(self.seed_chunk >= 1, f"seed_chunk must be >= 1, got {self.seed_chunk}")


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
FAMILIES.register("mlp")(Family(_solve_mlp, lambda shape, w, n: mlp([math.prod(shape), *w.hidden, n], act=nn.ReLU,
                                                                     flatten=True)))


# After the families are registered: a Config checks its family names.
PRESETS = {"smoke": Config(epochs=2, n_train=200, n_test=200),
           "default": Config(n_train=2000, n_test=1000),  # all of digits; a subset of fashion-mnist (~3 min)
           "paper": Config()}


def solve_family(cfg: Config, family: str, shape: tuple[int, ...], n_classes: int) -> dict[str, Widths]:
    solved = FAMILIES.get(family).solve(cfg, shape, n_classes)
    counts = [w.n_params for w in solved.values()]
    require(match_error(counts) <= MATCH_TOLERANCE, f"{family}: no widths give equal counts here (got {counts}); "
            "change the shallow model's size")
    return solved


def units(cfg: Config, seeds: tuple[int, ...], runtime: Runtime) -> list[Unit]:
    return [Unit("image-depth", cfg, chunk, runtime, (("family", f), ("model", m)))
            for f in cfg.families for m in DEPTH_NAMES for chunk in seed_chunks(seeds, cfg.seed_chunk)]


def run_unit(unit: Unit) -> dict:
    cfg: Config = unit.config
    data = subsample(load_data(cfg.data, unit.runtime.data_dir), cfg.n_train, cfg.n_test)
    family, name = unit.param("family"), unit.param("model")
    widths = solve_family(cfg, family, data.input_shape, data.n_classes)[name]
    builder = lambda: FAMILIES.get(family).build(data.input_shape, widths, data.n_classes)
    probes = (_accuracy_probe("train_acc", data.train), _accuracy_probe("test_acc", data.test))
    spec = TrainSpec(fixed_epochs(cfg.epochs), cfg.batch_size, probes=probes, device=unit.runtime.device)
    fit = fit_members(unit, builder, OptSpec("adam", cfg.lr), data.train.x, data.train.y, spec)
    return {"runs": _runs(unit, data, fit, widths)}


def _chunked(predict, x: torch.Tensor) -> torch.Tensor:
    """predict(x) -> (M, N, ...) outputs, computed PREDICT_CHUNK inputs at a time."""
    return torch.cat([predict(x[i:i + PREDICT_CHUNK]) for i in range(0, len(x), PREDICT_CHUNK)], 1)


def _accuracy_probe(name: str, split):
    return lambda predict: {name: accuracy(_chunked(predict, split.x), split.y)}


def _runs(unit: Unit, data, fit, widths: Widths) -> list[dict]:
    arch = {"channels": list(widths.channels), "hidden": list(widths.hidden),
            "layers": len(widths.channels) + len(widths.hidden) + 1}
    names = [(f"{unit.param('family')}/{unit.param('model')}", seed) for seed in unit.seeds]
    return classifier_runs(fit, data, names, metrics={"n_params": widths.n_params}, splits=("train", "test"),
                           curves=CURVES, predict=lambda models, x: _chunked(lambda c: predict_members(models, c), x),
                           extra={"architecture": arch}, stopped=False)


def summarize(cfg: Config, unit_results: list[dict]) -> dict:
    conditions = add_summaries(group_runs(unit_results), METRICS)
    pairs = [(f"{f}/deep", f"{f}/shallow") for f in cfg.families]
    comparisons = (compare(conditions, "test_acc", True, pairs) + compare(conditions, "train_acc", True, pairs)
                   + compare(conditions, "final_loss", False, pairs))
    return {"conditions": conditions, "comparisons": comparisons,
            "models": {name: {**c["runs"][0]["architecture"], "n_params": c["runs"][0]["metrics"]["n_params"]}
                       for name, c in conditions.items()},
            "checks": _checks(cfg, conditions, comparisons), "answer": _answer(cfg, conditions, comparisons),
            "tables": [summary_table("Per model, over seeds", conditions, METRICS, percent=METRICS[2:])],
            "diverged": diverged_runs(conditions)}


def _test_acc(comparisons: list[dict], family: str) -> dict:
    return next(c for c in comparisons if c["a"] == f"{family}/deep" and c["metric"] == "test_acc")


def _checks(cfg: Config, conditions: dict, comparisons: list[dict]) -> list[dict]:
    checks = []
    for f in cfg.families:
        counts = [conditions[f"{f}/{m}"]["runs"][0]["metrics"]["n_params"] for m in DEPTH_NAMES]
        checks.append(stats.check(f"The shallow and the deep {f.upper()} have equal parameter counts (within 1%)",
                                  "DESIGN.md, known traps", match_error(counts) <= MATCH_TOLERANCE,
                                  f"{counts[0]} vs {counts[1]} parameters ({match_error(counts):.2%} apart)"))
        cmp = _test_acc(comparisons, f)
        checks.append(stats.check(
            f"At an equal parameter count, the deeper {f.upper()} reaches a higher test accuracy than the shallow one",
            "Seide, Li & Yu 2011; report B (deep vs shallow)",
            cmp["wins"][cmp["a"]] > cmp["wins"][cmp["b"]] and (cmp["diff"] or 0) > 0,
            f"test accuracy deep - shallow: deep higher in {cmp['wins'][cmp['a']]} of {cmp['n']} seeds; "
            + median_diff_sentence(cmp, "accuracy")))
    return checks


def _answer(cfg: Config, conditions: dict, comparisons: list[dict]) -> str:
    parts = []
    for f in cfg.families:
        deep, shallow = (conditions[f"{f}/{m}"]["summary"]["test_acc"]["mean"] for m in ("deep", "shallow"))
        cmp = _test_acc(comparisons, f)
        n_params = conditions[f"{f}/shallow"]["runs"][0]["metrics"]["n_params"]
        parts.append(f"the deep {f.upper()} reached {deep:.1%} test accuracy against {shallow:.1%} for the shallow "
                     f"one at ~{n_params} parameters (deep higher in {cmp['wins'][cmp['a']]} of {cmp['n']} seeds, "
                     f"{median_diff_sentence(cmp, 'accuracy')})")
    return f"On {cfg.data}, " + "; ".join(parts) + "."


def figures(results: dict, folder) -> list[str]:
    conditions = results["conditions"]
    return _curves(results, conditions, folder) + _test_bars(conditions, folder) + fig.confusion_grid(conditions, folder, width=3.2, height=3.2)


def _label(results: dict, name: str) -> str:
    m = results["models"][name]  # the depth the study varies: conv layers of a CNN, hidden layers of an MLP
    depth = f"{len(m['channels'])} conv" if m.get("channels") else f"{len(m.get('hidden', []))} hidden"
    return f"{name} ({depth}, {m['n_params']:,} params)"


def _curves(results: dict, conditions: dict, folder) -> list[str]:
    f, axes = fig.new_figure(ncols=3, size=(14, 3.8))
    titles = {"loss": "training loss (cross-entropy)", "train_acc": "training accuracy", "test_acc": "test accuracy"}
    axes[2].sharey(axes[1])  # train and test accuracy on one scale
    colors = fig.condition_colors(conditions)
    for ax, (curve, title) in zip(axes, titles.items()):
        for name, c in conditions.items():
            fig.curve_band(ax, [r["curves"][curve] for r in c["runs"]], label=_label(results, name), color=colors[name],
                           log_y=False, ylabel=title)
        ax.set_title(f"{title} per epoch (mean, 95% band)")
    axes[0].legend(fontsize=7)
    return fig.save(f, folder, "training_curves")


def _test_bars(conditions: dict, folder) -> list[str]:
    f, ax = fig.new_figure(size=(5.5, 3.8))
    fig.bar_ci(ax, list(conditions), [c["summary"]["test_acc"] for c in conditions.values()], ylabel="test accuracy",
               colors=list(fig.condition_colors(conditions).values()))
    ax.set_title("Final test accuracy (mean and 95% CI over seeds)")
    return fig.save(f, folder, "test_accuracy")


STUDY = register(Study("image-depth", "At an equal parameter count, does a deeper CNN or MLP classify images better?",
                       PRESETS, run_unit, summarize, figures, units=units, runtime_s="~10 s"))
