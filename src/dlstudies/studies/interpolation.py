"""interpolation: does the small-batch solution sit in a flatter basin than the large-batch one? (B9)

    dlstudies run interpolation          # ~1 min at default scale on 2 cores

Report B trained one CNN (conv8-conv32-fc256-fc128-10, ReLU) with batch 75 and with batch 500
(SGD, momentum 0.9, Nesterov, lr 0.01, 28 epochs) and plotted the train/test loss and accuracy of
θ(α) = (1−α)·θ_small + α·θ_large. As in Goodfellow, Vinyals & Saxe (2015) and Keskar et al. (2017,
Figure 3), α runs over [−1, 2] so that the walls of both basins show; both models start from the
same initial weights for a seed (Keskar et al.; `--set same_init=false` starts the large-batch model
from its own weights instead).

BatchNorm statistics are recomputed at each θ(α) by a train-mode forward pass over the training
set (`dlstudies.analysis.interpolation`); `--set bn_stats=interpolate` mixes the endpoints' running
statistics linearly instead, which is wrong away from the endpoints. The default CNN has no
BatchNorm, so a BatchNorm MLP pair (same hidden widths) is trained beside it (`--set bn_pair=false`
drops it) and its curves, with both kinds of statistics, show in the report. Conditions are
`<net>/batch-<B>`. The curve's endpoints must reproduce the trained models (with their statistics
recomputed where the curve recomputes them): a sanity record says whether they do.

Claims, per net: the training loss rises faster a distance d outside the large-batch endpoint than
outside the small-batch one (d in units of α, i.e. of ‖θ_large − θ_small‖, the first of `flanks`:
farther out both sides leave their basins; Keskar et al. 2017, Figure 3); the small-batch model
reaches a higher test accuracy (Keskar et al. 2017); on the straight path from the initial weights
to the small-batch solution, Goodfellow et al. 2015's own experiment, the training loss stays below
the chord between its ends (an approximately convex path without an obstacle). Between the two
solutions the largest excess over the chord and the barrier above the higher endpoint are tabled.
The endpoints are not at matched training loss: the answer states their training-loss ratio, and
how many endpoint runs were still improving at the budget.

Default scale (chosen): the 8x8 `digits`, lr 0.05 and 70 epochs; measured (10 seeds): by then the
CNN's training accuracy is 100% at batch 75 and 99.0% [97.4%, 99.9%] at batch 500, at training losses
about 85x apart, and most endpoints are still improving (the answer says how many). At report B's lr 0.01 and 28 epochs a batch of 500 hardly
leaves the initial loss on 1,077 images (3 steps an epoch), and comparing the basin of a trained
model with the surroundings of an untrained one says nothing about flatness.

At `paper` report B's CNN pair trains 10 seeds in units of 5 (two workers share them) and the added
BatchNorm pair 3 (`added_seeds`; its claims then read "n too small").

The networks and their training are shared with `sensitivity` (B10, part 2 of the same question)
and `random-labels`: `dlstudies.studies.image_nets`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from dlstudies.analysis import interpolation_curve, stats
from dlstudies.analysis.claims import Claim, opening, sanity
from dlstudies.analysis.interpolation import BN_STATS, endpoint_model, has_batchnorm
from dlstudies.analysis.measures import effect_text, interval_text
from dlstudies.config import Runtime, require
from dlstudies.optim import OPTIMIZERS
from dlstudies.report import figures as fig
from dlstudies.studies.base import Study, StudyConfig, Unit, added_seeds_field, first_seeds, register, seed_blocks
from dlstudies.models.builders import build_members
from dlstudies.studies.image_nets import NETS, check_net, load_split_data, train_stack
from dlstudies.studies.results import describe_conditions, main_table, paired_contrast, still_improving
from dlstudies.studies.training import divergence, member_dtype, split_metrics

# Stream for the large-batch model's initial weights when same_init=False: apart from every seed.
INDEPENDENT_INIT_STREAM = 3_000_017
# Endpoint losses are recomputed by another code path (functional_call vs the stacked forward):
# float32 sums agree to ~1e-7 relative, far inside this.
ENDPOINT_RTOL = 1e-5
SPLITS = ("train", "test")
OWN = ("train_loss", "test_loss", "train_acc", "test_acc")
BN_NET = "mlp-batchnorm"
BN_ALPHAS = (-1.0, 0.5, 1.5, 2.0)  # where the BatchNorm table compares the two kinds of statistics
INIT_ALPHAS = np.linspace(0.0, 1.0, 11)  # the path from the initial weights (0) to the small-batch solution (1)


@dataclass(frozen=True)
class Config(StudyConfig):
    data: str = "digits"
    model: str = "cnn"  # a NETS name
    channels: tuple[int, ...] = (8, 32)
    hidden: tuple[int, ...] = (256, 128)
    norm: str = "none"  # model=mlp only: none, batchnorm, layernorm
    bn_pair: bool = field(default=True, metadata={"rule": (lambda v: isinstance(v, bool), "must be true or false")})
    bn_stats: str = field(default="recompute", metadata={"rule": (lambda v: isinstance(v, str) and v in BN_STATS,
                                                                  "must be recompute or interpolate")})
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
    # Samples per evaluation batch along the curve: bounds memory; at 28x28 batches of 256 stay in
    # the cache (measured 1.1-1.45x faster than 1000 on this CNN), at 8x8 one batch of 1000 is fastest.
    eval_batch: int = 1000
    seed_chunk: int = 10
    added_seeds: int | None = added_seeds_field()  # seeds of the BatchNorm pair (report B trained the CNN only)

    def validate(self) -> None:
        check_net(self)
        OPTIMIZERS.get(self.optimizer)
        BN_STATS.get(self.bn_stats)
        require(1 <= self.small_batch < self.large_batch, "need 1 <= small_batch < large_batch")
        require(self.small_batch >= 2 or not (self.bn_pair or self.norm == "batchnorm"),
                "BatchNorm trains on batches of at least 2: small_batch >= 2, or bn_pair=false")
        require(self.lr > 0 and 0 <= self.momentum < 1, "need lr > 0 and momentum in [0, 1)")
        require(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        require(self.alpha_min <= 0 and self.alpha_max >= 1, "the α range must contain both endpoints 0 and 1")
        require(self.n_alphas >= 2 and self.eval_batch >= 1, "need n_alphas >= 2 and eval_batch >= 1")
        require(len(self.flanks) >= 1 and all(d > 0 for d in self.flanks), "flanks must hold at least one distance > 0")


PRESETS = {
    "smoke": Config(channels=(4, 8), hidden=(32, 16), small_batch=25, large_batch=100, epochs=2, n_alphas=7,
                    n_train=200, n_test=100),
    "default": Config(),
    "paper": Config(data="fashion-mnist", lr=0.01, epochs=28, eval_batch=256, seed_chunk=5, added_seeds=3),
}


def net_name(cfg: Config) -> str:
    return cfg.model if cfg.norm == "none" else f"{cfg.model}-{cfg.norm}"


def nets(cfg: Config) -> dict[str, Config]:
    """Each network the study trains a pair of, with the Config that builds it."""
    out = {net_name(cfg): cfg}
    if cfg.bn_pair and BN_NET not in out:
        out[BN_NET] = replace(cfg, model="mlp", channels=(), norm="batchnorm", bn_pair=False)
    return out


def units(cfg: Config, seeds: tuple[int, ...], runtime: Runtime) -> list[Unit]:
    """Per network, its seeds in blocks of `seed_chunk`: report B's CNN every seed, an added pair
    (the BatchNorm MLP) the first `added_seeds`."""
    own = net_name(cfg)
    return [Unit("interpolation", cfg, block, runtime, (("net", n),)) for n in nets(cfg)
            for block in seed_blocks(first_seeds(seeds, None if n == own else cfg.added_seeds), cfg.seed_chunk)]


def condition(net: str, batch: int) -> str:
    return f"{net}/batch-{batch}"


def alphas(cfg: Config) -> np.ndarray:
    # Rounded so that 0 and 1 are on the grid exactly: the endpoints are then the trained models.
    grid_ = np.round(np.linspace(cfg.alpha_min, cfg.alpha_max, cfg.n_alphas), 10)
    return np.union1d(grid_, [0.0, 1.0])


def _batch_accuracy(outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (outputs.argmax(-1) == y).double().mean()


# ---- one unit: one network's pair of batch sizes, a block of seeds ------------------------------

def run_unit(unit: Unit) -> dict:
    net = unit.param("net")
    cfg: Config = nets(unit.config)[net]
    data = load_split_data(cfg, unit.runtime)
    large_init = None if cfg.same_init else [INDEPENDENT_INIT_STREAM + s for s in unit.seeds]
    small = train_stack(cfg, unit, data, cfg.small_batch)
    large = train_stack(cfg, unit, data, cfg.large_batch, large_init)
    splits = {s: (getattr(data, s).x.to(unit.runtime.device), getattr(data, s).y.to(unit.runtime.device))
              for s in SPLITS}
    init = build_members(NETS.get(cfg.model)(cfg, data), list(unit.seeds), member_dtype(unit))
    curves = [{"seed": s, "net": net, **_curve(cfg, a, b, splits), **_init_path(cfg, start, a, splits)}
              for s, start, a, b in zip(unit.seeds, init, small.models, large.models)]
    runs = (_runs(cfg, condition(net, cfg.small_batch), small, data, curves, 0.0, -1)
            + _runs(cfg, condition(net, cfg.large_batch), large, data, curves, 1.0, +1))
    return {"runs": runs, "curves": curves}


def _curve(cfg: Config, model_a, model_b, splits) -> dict:
    points = alphas(cfg)
    c = interpolation_curve(model_a, model_b, F.cross_entropy, _batch_accuracy, splits, points, cfg.eval_batch,
                            bn_stats=cfg.bn_stats)
    out = {"alphas": c.alphas.tolist(), "bn_stats": cfg.bn_stats if has_batchnorm(model_a) else None}
    for s in SPLITS:
        out[f"{s}_loss"], out[f"{s}_acc"] = c.loss[s].tolist(), c.accuracy[s].tolist()
    if has_batchnorm(model_a):  # the other kind of statistics beside it, to show what it changes
        other = next(k for k in BN_STATS if k != cfg.bn_stats)
        alt = interpolation_curve(model_a, model_b, F.cross_entropy, None, {"train": splits["train"]}, points,
                                  cfg.eval_batch, bn_stats=other, bn_inputs=splits["train"][0])
        out["other_bn_stats"], out["train_loss_other_bn"] = other, alt.loss["train"].tolist()
    return out


def _init_path(cfg: Config, start, solution, splits) -> dict:
    """Goodfellow et al.'s path: from the initial weights to the (small-batch) solution, training loss."""
    c = interpolation_curve(start, solution, F.cross_entropy, None, {"train": splits["train"]}, INIT_ALPHAS,
                            cfg.eval_batch, bn_stats=cfg.bn_stats)
    return {"init_alphas": c.alphas.tolist(), "init_train_loss": c.loss["train"].tolist()}


def _runs(cfg: Config, name: str, fit, data, curves, endpoint: float, side: int) -> list[dict]:
    """One run per seed; `side` says on which side of the endpoint (α) the flank lies."""
    own = split_metrics(fit.models, data, SPLITS)
    ref = own if cfg.bn_stats == "interpolate" else split_metrics(
        [endpoint_model(m, cfg.bn_stats, data.train.x) for m in fit.models], data, SPLITS)
    runs = []
    for i, curve in enumerate(curves):
        metrics = {k: float(v[i]) for k, v in own.items()}
        for d in cfg.flanks:
            metrics[flank_name(d)] = _at(curve, "train_loss", endpoint + side * d) - _at(curve, "train_loss", endpoint)
        metrics["endpoint_error"] = max(abs(_at(curve, f"{s}_loss", endpoint) - float(ref[f"{s}_loss"][i]))
                                        for s in SPLITS)
        metrics["endpoint_scale"] = max(float(ref[f"{s}_loss"][i]) for s in SPLITS)
        loss = fit.history["loss"][i]
        runs.append({"condition": name, "seed": curve["seed"], "batch_size": int(name.rsplit("-", 1)[1]),
                     "metrics": metrics, "curves": {"loss": loss.tolist()}, "still_improving": still_improving(loss),
                     **divergence(fit, i)})
    return runs


def flank_name(d: float) -> str:
    return f"flank_rise_{round(d * 100)}"


def _at(curve: dict, key: str, alpha: float) -> float:
    return float(np.interp(alpha, curve["alphas"], curve[key]))


# ---- claims, summary and answer ------------------------------------------------------------------

def claims(cfg: Config) -> list[Claim]:
    out = []
    for net in nets(cfg):
        small, large = condition(net, cfg.small_batch), condition(net, cfg.large_batch)
        out += [
            Claim(f"{net}: the training loss rises faster {cfg.flanks[0]:g}·‖θ_large − θ_small‖ outside the "
                  f"large-batch solution than outside the small-batch one (a sharper basin along the line)",
                  "Keskar et al. 2017, Figure 3", flank_name(cfg.flanks[0]), "directional", a=large, b=small),
            Claim(f"{net}: the small-batch model reaches a higher test accuracy than the large-batch one",
                  "Keskar et al. 2017", "test_acc", "directional", a=small, b=large),
            Claim(f"{net}: on the straight path from the initial weights to the small-batch solution the training "
                  "loss stays below the chord between its ends (approximately convex, no obstacle)",
                  "Goodfellow et al. 2015", "init_chord_excess", "threshold", a=net, direction="lower",
                  threshold=0.0, table="pairs"),
        ]
    return out


def summarize(cfg: Config, unit_results: list[dict], standard: dict) -> dict:
    conditions = standard["conditions"]
    curves = sorted((c for r in unit_results for c in r["curves"]), key=lambda c: (list(nets(cfg)).index(c["net"]),
                                                                                    c["seed"]))
    pairs = {net: {"runs": [{"seed": c["seed"], "metrics": _segment(c)} for c in curves if c["net"] == net]}
             for net in nets(cfg)}
    ratios = {net: paired_contrast(conditions, condition(net, cfg.large_batch), condition(net, cfg.small_batch),
                           "train_loss") for net in nets(cfg)}
    flanks = [flank_name(d) for d in cfg.flanks]
    describe_conditions(conditions, (*OWN, *flanks))
    tables = [_pair_table(pairs)] + ([_bn_table(curves)] if any(c.get("train_loss_other_bn") for c in curves) else [])
    return {"table": main_table(conditions, (*OWN, *flanks), "The trained endpoints, over seeds"),
            "curves": curves, "pairs": pairs, "train_loss_ratio": ratios, "tables": tables,
            "sanity": [_endpoint_sanity(conditions)],
            "captions": {"interpolation.png": "Loss and accuracy along θ(α) = (1−α)·θ_small + α·θ_large, one row per "
                                              "network; circles are the trained models. A sharper basin shows as the "
                                              "steeper wall; for the BatchNorm net the dotted line is the training "
                                              "loss with the endpoints' statistics mixed linearly."}}


def chord_excess(alphas, loss) -> float | None:
    """The largest excess of the loss over the chord between its values at α = 0 and 1, over the
    interior points of [0, 1] (> 0: a bump; < 0: below the chord everywhere, as a convex path)."""
    a, loss = np.asarray(alphas, dtype=float), np.asarray(loss, dtype=float)
    ends = np.interp(0.0, a, loss), np.interp(1.0, a, loss)
    inside = (a > 0) & (a < 1)
    chord = (1 - a[inside]) * ends[0] + a[inside] * ends[1]
    return float(np.max(loss[inside] - chord)) if inside.any() else None


def _segment(curve: dict) -> dict:
    """Per seed: the path from the initial weights (its chord excess), and the segment between the
    solutions: its chord excess and the barrier above the higher endpoint."""
    a, loss = np.asarray(curve["alphas"]), np.asarray(curve["train_loss"])
    top = max(_at(curve, "train_loss", 0.0), _at(curve, "train_loss", 1.0))
    return {"init_chord_excess": chord_excess(curve["init_alphas"], curve["init_train_loss"]),
            "chord_excess": chord_excess(a, loss), "barrier": float(max(loss[(a >= 0) & (a <= 1)].max() - top, 0.0))}


def _pair_table(pairs: dict) -> dict:
    rows = []
    for net, p in pairs.items():
        for m in ("init_chord_excess", "chord_excess", "barrier"):
            s = stats.describe([r["metrics"][m] for r in p["runs"]], m)
            rows.append([net, m, f"{s['value']:.3g}" if s["value"] is not None else "n/a",
                         interval_text(m, s["ci95"], effect=True, log=False), s["n"]])
    return {"title": "Straight paths, per seed: the largest training-loss excess over the chord from the initial "
                     "weights to the small-batch solution (init_chord_excess) and between the two solutions, and the "
                     "barrier above the higher solution (mean, 95% CI)", "columns": ["net", "measure", "mean", "95% CI",
                                                                                    "seeds"], "rows": rows}


def _bn_table(curves: list[dict]) -> dict:
    bn = [c for c in curves if c.get("train_loss_other_bn")]
    rows = []
    for alpha in BN_ALPHAS:
        cells = [stats.describe([_at(c, key, alpha) for c in bn], "train_loss") for key in ("train_loss",
                                                                                             "train_loss_other_bn")]
        rows.append([f"{alpha:g}"] + [f"{s['value']:.3g} {interval_text('train_loss', s['ci95'])}" for s in cells])
    names = (bn[0]["bn_stats"], bn[0]["other_bn_stats"])
    return {"title": f"BatchNorm net: training loss at θ(α) with its statistics {names[0]}d (used) and "
                     f"{names[1]}d (geometric mean [95% CI] over seeds)",
            "columns": ["α", f"{names[0]}d statistics", f"{names[1]}d statistics"], "rows": rows}


def _endpoint_sanity(conditions: dict) -> dict:
    runs = [r for c in conditions.values() for r in c["runs"]]
    worst = max(r["metrics"]["endpoint_error"] - ENDPOINT_RTOL * (1 + r["metrics"]["endpoint_scale"]) for r in runs)
    error = max(r["metrics"]["endpoint_error"] for r in runs)
    return sanity("the interpolation's endpoints reproduce the two trained models' train and test losses "
                  "(statistics as the curve takes them)", worst <= 0,
                  f"largest |endpoint loss − trained model's loss| over {len(runs)} models: {error:.2g} "
                  f"(tolerance {ENDPOINT_RTOL:g}·(1 + loss))")


def answer(cfg: Config, results: dict) -> str:
    by_net = {}
    checks = results["checks"]
    for i, net in enumerate(nets(cfg)):
        by_net[net] = checks[3 * i: 3 * i + 3]
    main = net_name(cfg)
    flank, acc, chord = by_net[main]
    verdicts = (flank["verdict"], acc["verdict"])
    verdict = ("supported" if all(v == "supported" for v in verdicts)
               else "contradicted" if "contradicted" in verdicts else "inconclusive")
    text = f"{opening(verdict)} {main}: {_sentence(cfg, main, results, flank, acc, chord)}"
    for net in list(by_net)[1:]:
        f, a, c = by_net[net]
        text += f"; {net} (statistics {cfg.bn_stats}d at each θ(α)): {_sentence(cfg, net, results, f, a, c)}"
    return text + _still_improving(results.get("convergence", {})) + "."


def _still_improving(convergence: dict) -> str:
    k, n = (sum(c[key] for c in convergence.values()) for key in ("still_improving", "runs"))
    return (f"; {k} of {n} endpoint runs were still improving at the budget (training loss down > 1% over the "
            f"last 10% of epochs), so both sit on slopes, not at minima" if k else "")


def _sentence(cfg: Config, net: str, results: dict, flank: dict, acc: dict, chord: dict) -> str:
    metric = flank["metric"]
    ratio = results["train_loss_ratio"][net]
    return (f"loss rise {cfg.flanks[0]:g} outside the endpoint, large − small batch, "
            f"{effect_text(metric, flank['effect'], False)} {interval_text(metric, flank['ci95'], True, False)} "
            f"({flank['verdict']}); test accuracy, small − large, {effect_text('test_acc', acc['effect'], False)} "
            f"{interval_text('test_acc', acc['ci95'], True, False)} ({acc['verdict']}); path from the initial "
            f"weights below its chord: {chord['verdict']}; the endpoints are not at matched training loss: batch-{cfg.large_batch}'s is "
            f"{ratio['text']} batch-{cfg.small_batch}'s")


def setup(cfg: Config) -> str:
    names = ", ".join(nets(cfg))
    return (f"data {cfg.data}, nets {names} (hidden {'-'.join(map(str, cfg.hidden))}), {cfg.optimizer} lr {cfg.lr:g} "
            f"momentum {cfg.momentum:g}, batch {cfg.small_batch} vs {cfg.large_batch}, {cfg.epochs} epochs, "
            f"{'same' if cfg.same_init else 'independent'} start; α in [{cfg.alpha_min:g}, {cfg.alpha_max:g}], "
            f"BatchNorm statistics {cfg.bn_stats}d at each θ(α)")


# ---- figures -----------------------------------------------------------------------------------

def figures(results: dict, folder) -> list[str]:
    return _interpolation_figure(results, folder) + fig.training_loss_figure(
        results["conditions"], folder, "Training of the endpoints (mean and 95% band over seeds)", fontsize=7)


def _interpolation_figure(results: dict, folder) -> list[str]:
    by_net: dict[str, list] = {}
    for c in results["curves"]:
        by_net.setdefault(c["net"], []).append(c)
    f, axes = fig.new_figure(ncols=2, nrows=len(by_net), size=(10, 3.8 * len(by_net)))
    axes = np.asarray(axes).reshape(len(by_net), 2)
    for row, (net, curves) in zip(axes, by_net.items()):
        for ax, kind, label in ((row[0], "loss", "cross-entropy loss"), (row[1], "acc", "accuracy")):
            for j, split in enumerate(SPLITS):
                fig.curve_band(ax, [c[f"{split}_{kind}"] for c in curves], label=split, color=fig.color(j),
                               x=curves[0]["alphas"], xlabel="α  (θ = (1−α)·θ_small + α·θ_large)", ylabel=label)
            if kind == "loss" and curves[0].get("train_loss_other_bn"):
                mean = np.exp(np.mean(np.log(np.maximum([c["train_loss_other_bn"] for c in curves], 1e-300)), 0))
                ax.plot(curves[0]["alphas"], mean, ls=":", color=fig.color(0),
                        label=f"train, statistics {curves[0]['other_bn_stats']}d")
            _mark_endpoints(ax, results["conditions"], net, kind)
            ax.set_title(net, fontsize=9, pad=14)  # above the endpoint labels
            ax.legend(fontsize=7)
    f.suptitle("Linear interpolation between the small- and large-batch solutions (mean and 95% band over seeds)")
    return fig.save(f, folder, "interpolation")


def _mark_endpoints(ax, conditions: dict, net: str, kind: str) -> None:
    """Dotted lines at α = 0 and 1, and the trained models' own values as markers."""
    mine = [(n, c) for n, c in conditions.items() if n.startswith(f"{net}/")]
    for alpha, (name, c) in zip((0.0, 1.0), mine):
        ax.axvline(alpha, color="0.5", ls=":", lw=1)
        ax.text(alpha, 1.0, f" {name.split('/')[1]}", transform=ax.get_xaxis_transform(), fontsize=8, va="bottom",
                ha="center")
        for j, split in enumerate(SPLITS):
            s = c["summary"][f"{split}_{kind}"]
            ax.plot([alpha], [s["value"]], marker="o", mfc="none", color=fig.color(j), ms=8)


STUDY = register(Study("interpolation", "Along the line between a small-batch and a large-batch solution, does the "
                       "small-batch one sit in the flatter basin and generalize better?",
                       PRESETS, run_unit, summarize, figures, runtime_s="~1 min",
                       seeds={"smoke": 3, "default": 10, "paper": 10}, units=units,
                       metrics=OWN, claims=claims,
                       answer=answer, setup=setup))
