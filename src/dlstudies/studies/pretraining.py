"""pretraining: does greedy stacked-autoencoder pre-training beat random init, and more so with few labels?

    dlstudies run pretraining           # ~1 min at default scale on 2 cores

Report A (Task 3) trained three auto-associative networks greedily, each on the codes of the one
before (AANN1 36-28-20-28-36, AANN2 20-17-13-17-20, AANN3 13-10-7-10-13; MSE, Adam, mini-batches,
unlabeled data), copied their encoder weights into a 36-28-20-17-13-10-7-5 classifier and
fine-tuned it (lr 0.005, stop at |Δ loss| < 1e-4) beside a randomly initialised control. It found
the pre-trained model a little better and faster. Here every seed repeats the whole pipeline, the
pre-trained classifier and its control share the output layer's initial weights and the sample
order, and the comparison is repeated with 10%, 25% and 100% of the labels. Literature: Erhan et
al. (2010, "Why does unsupervised pre-training help deep learning?") find pre-training acts as a
regulariser whose benefit is largest when labelled data are scarce.

Choices (report A is silent): tanh units everywhere and a linear reconstruction layer; the
encoder of an AANN is its first half (36-28-20 for AANN1), whose output codes train the next
AANN; AANNs train on the training split's features without labels, lr 0.001, batch 32, until
|Δ loss| < 1e-6; the fine-tuning batch size is 32; a label fraction keeps a class-balanced subset
of the training split, the same for every seed. AANN1 of all seeds trains as one stack (they
share the raw input); deeper AANNs train per seed, because each seed's codes differ and the
engine feeds one input tensor to a whole stack.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dlstudies.analysis import stats
from dlstudies.config import Runtime, require
from dlstudies.data import load_data
from dlstudies.data.base import subsample
from dlstudies.engine import ENGINES, StopRule, TrainSpec, predict_members
from dlstudies.engine.evaluate import accuracy_probe, mean_loss
from dlstudies.models.builders import ACTIVATIONS, build_members, mlp
from dlstudies.optim import OptSpec
from dlstudies.report import figures as fig
from dlstudies.studies.base import Study, Unit, register, seed_chunks
from dlstudies.studies.results import (
    add_summaries,
    compare,
    diverged_runs,
    fmt_ci,
    fmt_diff,
    fmt_p,
    group_runs,
    summary_table,
)
from dlstudies.studies.training import classifier_runs, fit_members, member_dtype

METRICS = ("epochs", "final_loss", "train_acc", "val_acc", "test_acc")
CONDITIONS = ("pretrained", "control")
# AANN initial weights come from their own stream, so that they are not the control's weights.
AANN_STREAM = 2_000_003


@dataclass(frozen=True)
class Config:
    data: str = "digits36"
    encoder: tuple[int, ...] = (28, 20, 17, 13, 10, 7)  # the classifier's hidden layers
    layers_per_aann: int = 2  # AANN k pre-trains hidden layers 2k-1 and 2k
    activation: str = "tanh"
    ae_lr: float = 0.001
    ae_batch_size: int = 32
    ae_tolerance: float = 1e-6
    ae_max_epochs: int = 500
    lr: float = 0.005
    batch_size: int = 32
    tolerance: float = 1e-4
    max_epochs: int = 1000
    fractions: tuple[float, ...] = (0.1, 0.25, 1.0)  # of the training labels used to fine-tune
    n_train: int | None = None  # None: the whole training split
    seed_chunk: int = 3  # AANN2 and AANN3 train per seed anyway: small chunks let two workers share them

    def __post_init__(self):
        ACTIVATIONS.get(self.activation)
        require(self.layers_per_aann >= 1 and len(self.encoder) % self.layers_per_aann == 0 and self.encoder,
                f"encoder {self.encoder} must split into AANNs of layers_per_aann={self.layers_per_aann} layers")
        require(all(0 < f <= 1 for f in self.fractions) and self.fractions, f"fractions must be in (0, 1], got {self.fractions}")
        for name in ("ae_lr", "lr", "ae_tolerance", "tolerance"):
            require(getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("ae_batch_size", "batch_size", "ae_max_epochs", "max_epochs"):
            require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")


PRESETS = {"smoke": Config(ae_max_epochs=20, max_epochs=30, n_train=200), "default": Config(), "paper": Config()}


def aann_sizes(cfg: Config, n_in: int) -> list[list[int]]:
    """[[36, 28, 20, 28, 36], [20, 17, 13, 17, 20], ...]: each encoder half mirrored."""
    path, k = [n_in, *cfg.encoder], cfg.layers_per_aann
    halves = [path[i:i + k + 1] for i in range(0, len(cfg.encoder), k)]
    return [half + half[-2::-1] for half in halves]


def condition(kind: str, fraction: float) -> str:
    return f"{kind}@{fraction}"


def units(cfg: Config, seeds: tuple[int, ...], runtime: Runtime) -> list[Unit]:
    return [Unit("pretraining", cfg, chunk, runtime) for chunk in seed_chunks(seeds, cfg.seed_chunk)]


def run_unit(unit: Unit) -> dict:
    cfg: Config = unit.config
    data = subsample(load_data(cfg.data, unit.runtime.data_dir), cfg.n_train)
    encoders, aanns = pretrain(cfg, unit, data)
    runs = [r for f in cfg.fractions for r in finetune(cfg, unit, data, f, encoders)]
    return {"runs": runs, "aanns": aanns}


# ---- greedy layer-wise pre-training ---------------------------------------------------------

def pretrain(cfg: Config, unit: Unit, data) -> tuple[dict[int, list[nn.Linear]], list[dict]]:
    """Every seed's encoder Linear layers, in order, and one record per (AANN, seed)."""
    seeds = list(unit.seeds)
    codes = {s: (data.train.x, data.test.x) for s in seeds}  # the inputs of the next AANN, per seed
    encoders: dict[int, list[nn.Linear]] = {s: [] for s in seeds}
    records = []
    for k, sizes in enumerate(aann_sizes(cfg, data.input_shape[0])):
        for group in ([seeds] if k == 0 else [[s] for s in seeds]):
            fit = _fit_aann(cfg, unit, sizes, codes[group[0]][0], group, k)
            for i, s in enumerate(group):
                encoder = fit.models[i][: 2 * cfg.layers_per_aann]  # (Linear, act) per layer of the first half
                records.append(_aann_record(k, sizes, s, fit, i, codes[s]))
                encoders[s] += [m for m in encoder if isinstance(m, nn.Linear)]
                codes[s] = tuple(_encode(encoder, c) for c in codes[s])
    return encoders, records


def _fit_aann(cfg: Config, unit: Unit, sizes: list[int], x: torch.Tensor, seeds: list[int], k: int):
    builder = lambda: mlp(sizes, act=ACTIVATIONS.get(cfg.activation))  # noqa: E731
    spec = TrainSpec(StopRule(cfg.ae_max_epochs, cfg.ae_tolerance), cfg.ae_batch_size, loss="mse",
                     device=unit.runtime.device)
    return fit_members(unit, builder, OptSpec("adam", cfg.ae_lr), x, x, spec, seeds,  # targets = inputs
                       init_seeds=[AANN_STREAM * (k + 1) + s for s in seeds])


@torch.no_grad()
def _encode(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return encoder(x.to(next(encoder.parameters()).dtype))


def _aann_record(k: int, sizes: list[int], seed: int, fit, i: int, codes: tuple) -> dict:
    model = fit.models[i]
    mse = {split: float(mean_loss(predict_members([model], c), c, "mse")[0]) for split, c in zip(("train", "test"), codes)}
    n = int(fit.epochs[i])
    return {"aann": k + 1, "sizes": sizes, "seed": seed, "epochs": n, "train_mse": mse["train"],
            "test_mse": mse["test"], "curve": fit.history["loss"][i, :n].tolist(), "diverged": bool(fit.diverged[i])}


# ---- fine-tuning, pre-trained beside control -------------------------------------------------

def _with_encoder(model: nn.Sequential, linears: list[nn.Linear]) -> nn.Sequential:
    """The classifier with its first Linear layers replaced by the AANN encoders' (the output layer stays)."""
    targets = [m for m in model if isinstance(m, nn.Linear)]
    for target, source in zip(targets, linears):
        target.load_state_dict(source.state_dict())
    return model


def finetune(cfg: Config, unit: Unit, data, fraction: float, encoders: dict) -> list[dict]:
    labelled = subsample(data, max(data.n_classes, round(fraction * len(data.train))))
    seeds = list(unit.seeds)
    sizes = [data.input_shape[0], *cfg.encoder, data.n_classes]
    builder = lambda: mlp(sizes, act=ACTIVATIONS.get(cfg.activation))  # noqa: E731
    control = build_members(builder, seeds, member_dtype(unit))
    pretrained = [_with_encoder(copy.deepcopy(m), encoders[s]) for m, s in zip(control, seeds)]
    probes = (accuracy_probe("train_acc", labelled.train.x, labelled.train.y), accuracy_probe("val_acc", data.val.x, data.val.y))
    spec = TrainSpec(StopRule(cfg.max_epochs, cfg.tolerance), cfg.batch_size, probes=probes, device=unit.runtime.device)
    fit = ENGINES.get(unit.runtime.engine)(pretrained + control, [OptSpec("adam", cfg.lr)] * (2 * len(seeds)),
                                           labelled.train.x, labelled.train.y, spec, seeds * 2)
    names = [(condition(kind, fraction), s) for kind in CONDITIONS for s in seeds]
    return classifier_runs(fit, labelled, names)


# ---- statistics ------------------------------------------------------------------------------

def summarize(cfg: Config, unit_results: list[dict]) -> dict:
    conditions = add_summaries(group_runs(unit_results), METRICS)
    aanns = _merge_aanns(unit_results)
    benefits = {f: _benefit(conditions, f) for f in cfg.fractions}
    comparisons = [c for f in cfg.fractions for m, hib in (("test_acc", True), ("train_acc", True), ("epochs", False))
                   for c in compare(conditions, m, hib, [(condition("pretrained", f), condition("control", f))])]
    erhan = _erhan(cfg, benefits)
    tables = [summary_table("Per condition, over seeds", conditions, METRICS, percent=METRICS[2:]),
              _benefit_table(benefits), _aann_table(aanns)]
    return {"conditions": conditions, "comparisons": comparisons + ([erhan["comparison"]] if erhan else []),
            "tables": tables, "aanns": aanns, "benefits": {str(f): b for f, b in benefits.items()},
            "checks": _checks(cfg, conditions, erhan), "answer": _answer(cfg, benefits, erhan),
            "diverged": diverged_runs(conditions)}


def _merge_aanns(unit_results: list[dict]) -> dict:
    records = sorted((r for u in unit_results for r in u["aanns"]), key=lambda r: (r["aann"], r["seed"]))
    merged: dict[str, dict] = {}
    for r in records:
        entry = merged.setdefault(f"AANN{r['aann']}", {"sizes": r["sizes"], "runs": []})
        entry["runs"].append({k: r[k] for k in ("seed", "epochs", "train_mse", "test_mse", "curve", "diverged")})
    for entry in merged.values():
        entry["summary"] = {m: stats.summary([r[m] for r in entry["runs"]]) for m in ("epochs", "train_mse", "test_mse")}
    return merged


def _benefit(conditions: dict, fraction: float) -> dict:
    """Pre-trained minus control test accuracy, per seed, with its summary and paired test."""
    pre, ctl = condition("pretrained", fraction), condition("control", fraction)
    cmp = compare(conditions, "test_acc", True, [(pre, ctl)])[0]
    values = [a - b if a is not None and b is not None else None
              for a, b in zip(*[[r["metrics"]["test_acc"] for r in conditions[c]["runs"]] for c in (pre, ctl)])]
    return {"values": values, "summary": stats.summary(values), "p_value": cmp["p_value"], "test": cmp["test"],
            "wins": cmp["wins"][pre], "n": cmp["n"], "effect_size_dz": effect_size(values)}


def effect_size(values) -> float | None:
    """Cohen's d_z of paired differences: their mean over their standard deviation."""
    x = np.array([v for v in values if v is not None], dtype=float)
    if len(x) < 2 or np.std(x, ddof=1) == 0:
        return None
    return float(np.mean(x) / np.std(x, ddof=1))


def _erhan(cfg: Config, benefits: dict) -> dict | None:
    """Benefit at the scarcest labels minus benefit with the most labels, per seed."""
    scarce, full = min(cfg.fractions), max(cfg.fractions)
    if scarce == full:
        return None
    cmp = stats.paired_comparison("test_acc_benefit", f"benefit@{scarce}", benefits[scarce]["values"],
                                  f"benefit@{full}", benefits[full]["values"], higher_is_better=True)
    diff = [a - b if a is not None and b is not None else None
            for a, b in zip(benefits[scarce]["values"], benefits[full]["values"])]
    return {"comparison": cmp, "effect_size_dz": effect_size(diff), "scarce": scarce, "full": full}


def _dz(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _checks(cfg: Config, conditions: dict, erhan: dict | None) -> list[dict]:
    checks = []
    if erhan is not None:
        cmp = erhan["comparison"]
        lo = cmp["ci95"][0]
        checks.append(stats.check(
            f"Pre-training helps more when labels are scarce (test-accuracy benefit at {erhan['scarce']:.0%} "
            f"of the labels larger than at {erhan['full']:.0%})", "Erhan et al. 2010", lo is not None and lo > 0,
            f"benefit difference, mean [95% CI]: {fmt_diff(cmp)}, Cohen's d_z = "
            f"{_dz(erhan['effect_size_dz'])}, p = {fmt_p(cmp['p_value'])} ({cmp['test']}), larger in "
            f"{cmp['wins'][cmp['a']]} of {cmp['n']} seeds"))
    full = max(cfg.fractions)
    cmp = compare(conditions, "epochs", False, [(condition("pretrained", full), condition("control", full))])[0]
    checks.append(stats.check(
        "The pre-trained classifier converges in fewer epochs than its randomly initialised control",
        "report A, Task 3", cmp["wins"][cmp["a"]] > cmp["wins"][cmp["b"]],
        f"{cmp['a']} stopped sooner in {cmp['wins'][cmp['a']]} of {cmp['n']} seeds; mean difference "
        f"{cmp['diff']:+.3g} epochs (95% CI [{cmp['ci95'][0]:.3g}, {cmp['ci95'][1]:.3g}], p = {fmt_p(cmp['p_value'])})"))
    return checks


def _answer(cfg: Config, benefits: dict, erhan: dict | None) -> str:
    parts = [f"at {f:.0%} of the labels {fmt_ci(b['summary'], True, bounded=False)}" for f, b in benefits.items()]
    text = "Pre-training changed test accuracy (mean [95% CI] over seeds) " + ", ".join(parts)
    if erhan is not None:
        cmp = erhan["comparison"]
        lo, hi = cmp["ci95"]
        verdict = "more" if lo is not None and lo > 0 else ("less" if hi is not None and hi < 0 else "not measurably more")
        text += (f"; it helped {verdict} with scarce labels (benefit at {erhan['scarce']:.0%} minus at "
                 f"{erhan['full']:.0%}: {fmt_diff(cmp)}, "
                 f"d_z = {_dz(erhan['effect_size_dz'])}, p = {fmt_p(cmp['p_value'])}, {cmp['n']} seeds)")
    return text + "."


def _benefit_table(benefits: dict) -> dict:
    rows = [[f"{f:.0%}", fmt_ci(b["summary"], True, bounded=False), fmt_p(b["p_value"]), b["test"], _dz(b["effect_size_dz"]),
             f"{b['wins']} of {b['n']}"] for f, b in benefits.items()]
    return {"title": "Benefit of pre-training (pre-trained - control test accuracy) per label fraction",
            "columns": ["labels", "benefit (mean [95% CI])", "p", "test", "Cohen's d_z", "seeds favouring pre-training"],
            "rows": rows}


def _aann_table(aanns: dict) -> dict:
    rows = [[name, "-".join(map(str, a["sizes"]))] + [fmt_ci(a["summary"][m]) for m in ("epochs", "train_mse", "test_mse")]
            for name, a in aanns.items()]
    return {"title": "Auto-associative networks: reconstruction loss (MSE) after pre-training",
            "columns": ["network", "sizes", "epochs", "train MSE", "test MSE"], "rows": rows}


# ---- figures ---------------------------------------------------------------------------------

def figures(results: dict, folder) -> list[str]:
    conditions, fractions = results["conditions"], [float(f) for f in results["config"]["fractions"]]
    return (_aann_curves(results["aanns"], folder) + _finetune_curves(conditions, fractions, folder)
            + _labels_figure(conditions, results["benefits"], fractions, folder) + fig.confusion_grid(conditions, folder))


def _aann_curves(aanns: dict, folder) -> list[str]:
    f, axes = fig.new_figure(ncols=len(aanns), size=(3.8 * len(aanns), 3.2))
    colors = fig.condition_colors(list(CONDITIONS) + list(aanns))  # after the conditions' own colours
    for ax, (name, a) in zip(np.atleast_1d(axes), aanns.items()):
        fig.curve_band(ax, [r["curve"] for r in a["runs"]], label=name, color=colors[name])
        ax.set(title=f"{name} ({'-'.join(map(str, a['sizes']))})", xlabel="epoch", ylabel="reconstruction loss (MSE)")
    return fig.save(f, folder, "aann_reconstruction")


def _finetune_curves(conditions: dict, fractions: list[float], folder) -> list[str]:
    f, axes = fig.new_figure(ncols=len(fractions), size=(3.8 * len(fractions), 3.4), sharey=True)
    colors = fig.condition_colors(CONDITIONS)
    for ax, frac in zip(np.atleast_1d(axes), fractions):
        for kind in CONDITIONS:
            name = condition(kind, frac)
            fig.curve_band(ax, [r["curves"]["loss"] for r in conditions[name]["runs"]], label=kind, color=colors[kind])
        ax.set(title=f"fine-tuning, {frac:.0%} of the labels", xlabel="epoch")
        ax.legend()
    np.atleast_1d(axes)[0].set_ylabel("training loss (cross-entropy)")
    return fig.save(f, folder, "finetune_loss")


def _labels_figure(conditions: dict, benefits: dict, fractions: list[float], folder) -> list[str]:
    f, (left, right) = fig.new_figure(ncols=2, size=(10, 3.8))
    for k, kind in enumerate(CONDITIONS):
        fig.errorbar_x(left, fractions, [conditions[condition(kind, fr)]["summary"]["test_acc"] for fr in fractions],
                       label=kind, color=fig.color(k), log_x=True, xlabel="fraction of training labels",
                       ylabel="test accuracy")
    left.set(title="Test accuracy (mean, 95% CI)")
    left.legend()
    fig.errorbar_x(right, fractions, [benefits[str(fr)]["summary"] for fr in fractions], color=fig.color(2), log_x=True,
                   xlabel="fraction of training labels", ylabel="pre-trained - control test accuracy")
    right.axhline(0, color="0.5", lw=0.8, ls="--")
    right.set(title="Benefit of pre-training (mean, 95% CI)")
    for ax in (left, right):  # a tick at every fraction trained, 25% included
        ax.set_xticks(fractions, [f"{fr:.0%}" for fr in fractions])
        ax.minorticks_off()
    return fig.save(f, folder, "label_fractions")


STUDY = register(Study("pretraining", "Does stacked-autoencoder pre-training beat random initialisation, and more so "
                       "when labels are scarce?", PRESETS, run_unit, summarize, figures, units=units, runtime_s="~1 min"))
