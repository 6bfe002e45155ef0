"""pretraining: does greedy stacked-autoencoder pre-training beat random init, and more so with few labels?

    dlstudies run pretraining           # ~1.5 min at default scale on 2 cores (10 seeds)

Report A (Task 3) trained three auto-associative networks greedily, each on the codes of the one
before (AANN1 36-28-20-28-36, AANN2 20-17-13-17-20, AANN3 13-10-7-10-13; MSE, Adam, mini-batches,
unlabeled data), copied their encoder weights into a 36-28-20-17-13-10-7-5 classifier and
fine-tuned it (lr 0.005) beside a randomly initialised control. It found the pre-trained model a
little better and faster. Here every seed repeats the whole pipeline, the pre-trained classifier
and its control share the output layer's initial weights and the sample order, and the comparison
is repeated with 10%, 25% and 100% of the labels. Literature: Erhan et al. (2010, "Why does
unsupervised pre-training help deep learning?") find pre-training acts as a regulariser whose
benefit is largest when labelled data are scarce.

Both arms get the same fine-tuning budget and the same stopping (METHOD.md §3): validation-based
early stopping — training ends once the validation loss has not improved for `patience` epochs,
or at `max_epochs` — and the weights of the best validation epoch are kept. A control halted on a
plateau by report A's |Δ loss| < `tolerance` rule could otherwise pass for a pre-training benefit;
that rule's epoch is still read off the same fit and reported, labelled as such. Every member
trains for `max_epochs` with nothing stopping it and the stopping is read off its per-epoch
validation loss afterwards: exact, because members are independent (a member stopped at epoch e
is the same member at epoch e), and every accuracy is read at the member's best epoch. Each run
records its best-validation epoch and its training accuracy there, whether the patience rule
fired (`converged`) and whether the validation loss was still falling at the end (`still_improving`).

Choices (report A is silent): tanh units everywhere and a linear reconstruction layer; the
encoder of an AANN is its first half (36-28-20 for AANN1), whose output codes train the next
AANN; AANNs train on the training split's features without labels, lr 0.001, batch 32, until
|Δ loss| < 1e-6; the fine-tuning batch size is 32; a label fraction keeps a class-balanced subset
of the training split, the same for every seed, while validation uses the whole validation split
for every fraction and both arms. AANN1 of all seeds trains as one stack (they share the raw
input); deeper AANNs train per seed, because each seed's codes differ and the engine feeds one
input tensor to a whole stack.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from dlstudies.analysis import stats
from dlstudies.analysis.claims import Claim, opening
from dlstudies.config import MAX_EPOCHS, ints, require
from dlstudies.data import load_data
from dlstudies.data.base import subsample
from dlstudies.engine import ENGINES, StopRule, TrainSpec, predict_members
from dlstudies.engine.evaluate import loss_probe, mean_loss
from dlstudies.models.builders import ACTIVATIONS, build_members, mlp
from dlstudies.optim import OptSpec
from dlstudies.report import figures as fig
from dlstudies.studies.base import Study, StudyConfig, Unit, register
from dlstudies.studies.normalization import check_of, effect_of
from dlstudies.studies.results import cell, describe_conditions, still_improving, stop_epoch
from dlstudies.studies.training import fit_members, member_dtype, split_probe

METRICS = ("best_val_epochs", "train_loss", "train_acc", "val_acc", "test_acc", "stop_rule_epochs")
CONDITIONS = ("pretrained", "control")
# AANN initial weights come from their own stream, so that they are not the control's weights.
AANN_STREAM = 2_000_003


@dataclass(frozen=True)
class Config(StudyConfig):
    data: str = "mnist1d36"
    encoder: tuple[int, ...] = (28, 20, 17, 13, 10, 7)  # the classifier's hidden layers
    layers_per_aann: int = 2  # AANN k pre-trains hidden layers 2k-1 and 2k
    activation: str = "tanh"
    ae_lr: float = 0.001
    ae_batch_size: int = 32
    ae_tolerance: float = 1e-6
    ae_max_epochs: int = 500
    lr: float = 0.005
    batch_size: int = 32
    tolerance: float = 1e-4  # report A's fine-tuning stop rule: read off the fit and reported, stops nothing
    max_epochs: int = 500  # the fine-tuning budget of both arms
    # Epochs without a lower validation loss before fine-tuning stops, long enough to cross a plateau:
    # in pilot runs on mnist1d36 the controls' best validation epoch with all labels came at 214-298,
    # after plateaus that a patience of 50 mistook for convergence (one control stopped at 50% train acc).
    patience: int = field(default=100, metadata={"rule": ints(1, MAX_EPOCHS)})
    fractions: tuple[float, ...] = (0.1, 0.25, 1.0)  # of the training labels used to fine-tune
    n_train: int | None = None  # None: the whole training split
    seed_chunk: int = 3  # AANN2 and AANN3 train per seed anyway: small chunks let two workers share them

    def validate(self):
        ACTIVATIONS.get(self.activation)
        require(self.layers_per_aann >= 1 and len(self.encoder) % self.layers_per_aann == 0 and self.encoder,
                f"encoder {self.encoder} must split into AANNs of layers_per_aann={self.layers_per_aann} layers")
        require(all(0 < f <= 1 for f in self.fractions) and self.fractions,
                f"fractions must be in (0, 1], got {self.fractions}")
        for name in ("ae_lr", "lr", "ae_tolerance", "tolerance"):
            require(getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("ae_batch_size", "batch_size", "ae_max_epochs", "max_epochs"):
            require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")


PRESETS = {"smoke": Config(ae_max_epochs=20, max_epochs=30, patience=10, n_train=200), "default": Config(),
           "paper": Config(max_epochs=1000, patience=200)}


def aann_sizes(cfg: Config, n_in: int) -> list[list[int]]:
    """[[36, 28, 20, 28, 36], [20, 17, 13, 17, 20], ...]: each encoder half mirrored."""
    path, k = [n_in, *cfg.encoder], cfg.layers_per_aann
    halves = [path[i:i + k + 1] for i in range(0, len(cfg.encoder), k)]
    return [half + half[-2::-1] for half in halves]


def condition(kind: str, fraction: float) -> str:
    return f"{kind}@{fraction}"


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




# ---- fine-tuning, pre-trained beside control, stopped on the validation loss ---------------------

def _with_encoder(model: nn.Sequential, linears: list[nn.Linear]) -> nn.Sequential:
    """The classifier with its first Linear layers replaced by the AANN encoders' (the output layer stays)."""
    targets = [m for m in model if isinstance(m, nn.Linear)]
    for target, source in zip(targets, linears):
        target.load_state_dict(source.state_dict())
    return model


def labelled_subset(data, fraction: float):
    """A class-balanced share of the training labels (at least one per class); val and test stay whole."""
    return subsample(data, max(data.n_classes, round(fraction * len(data.train))))


def finetune(cfg: Config, unit: Unit, data, fraction: float, encoders: dict) -> list[dict]:
    labelled = labelled_subset(data, fraction)
    seeds = list(unit.seeds)
    sizes = [data.input_shape[0], *cfg.encoder, data.n_classes]
    builder = lambda: mlp(sizes, act=ACTIVATIONS.get(cfg.activation))  # noqa: E731
    control = build_members(builder, seeds, member_dtype(unit))
    pretrained = [_with_encoder(copy.deepcopy(m), encoders[s]) for m, s in zip(control, seeds)]
    probes = (split_probe(labelled), loss_probe("val_loss", data.val.x, data.val.y, "cross_entropy"))
    spec = TrainSpec(StopRule(cfg.max_epochs), cfg.batch_size, probes=probes, device=unit.runtime.device)
    fit = ENGINES.get(unit.runtime.engine)(pretrained + control, [OptSpec("adam", cfg.lr)] * (2 * len(seeds)),
                                           labelled.train.x, labelled.train.y, spec, seeds * 2)
    names = [(condition(kind, fraction), s) for kind in CONDITIONS for s in seeds]
    return [_run(cfg, fit, i, name, seed) for i, (name, seed) in enumerate(names)]


def early_stop(val_loss, patience: int) -> tuple[int, int, bool]:
    """Validation early stopping on a finished curve: (best epoch index, index of the last epoch
    trained, whether the patience rule fired). Training ends at the first epoch `patience` epochs
    after the best so far; a non-finite loss never counts as an improvement."""
    x = np.asarray([np.nan if v is None else v for v in val_loss], dtype=float)
    best = 0
    for e in range(1, len(x)):
        if np.isfinite(x[e]) and not x[e] >= x[best]:  # also replaces a non-finite best
            best = e
        elif e - best >= patience:
            return best, e, True
    return best, len(x) - 1, False


def _run(cfg: Config, fit, i: int, name: str, seed: int) -> dict:
    h = {k: v[i, :fit.epochs[i]] for k, v in fit.history.items()}
    best, last, fired = early_stop(h["val_loss"], cfg.patience)
    # Best-validation weights come from before any divergence: they stay valid unless no epoch was finite.
    broken, diverged = not np.isfinite(h["val_loss"][best]), bool(fit.diverged[i])
    metrics = {"best_val_epochs": best + 1, "train_loss": float(h["loss"][best]),
               **{k: float(h[k][best]) for k in ("train_acc", "val_acc", "test_acc")},
               "stop_rule_epochs": stop_epoch(h["loss"], cfg.tolerance)[0] + 1}
    if broken:  # the weights are broken: what they read says nothing
        metrics = dict.fromkeys(metrics)
    return {"condition": name, "seed": seed, "metrics": metrics, "stopped_epoch": last + 1,
            "curves": {k: h[k][:last + 1].tolist() for k in ("loss", "val_loss", "train_acc", "val_acc")},
            "confusion": {s: h[f"{s}_confusion"][best].tolist() for s in ("train", "test")},
            # Still improving only means something for a run the budget cut off: a fired patience rule
            # already says the validation loss stopped improving.
            "converged": fired, "still_improving": not fired and still_improving(h["val_loss"][:last + 1]),
            "diverged": diverged,
            "diverged_epoch": int(fit.diverged_epoch[i]) if fit.diverged[i] else None}


# ---- claims, summary and answer ---------------------------------------------------------------

BENEFIT = "benefit_gap"  # pre-trained minus control test accuracy, per seed (a signed difference of fractions)


def benefit_name(fraction: float) -> str:
    return f"benefit@{fraction}"


def claims(cfg: Config) -> list[Claim]:
    out = [Claim(f"Pre-training raises test accuracy over random initialisation with {f:.0%} of the labels",
                 "Erhan et al. 2010" + ("; report A, Task 3" if f == 1 else ""), "test_acc", "directional",
                 a=condition("pretrained", f), b=condition("control", f)) for f in cfg.fractions]
    scarce, full = min(cfg.fractions), max(cfg.fractions)
    out.append(Claim(f"Pre-training helps more when labels are scarce: its test-accuracy benefit with {scarce:.0%} "
                     f"of the labels exceeds its benefit with {full:.0%}", "Erhan et al. 2010", BENEFIT, "directional",
                     a=benefit_name(scarce), b=benefit_name(full), table="benefit"))
    out.append(Claim(f"The pre-trained classifier reaches its best validation loss in fewer epochs than its control "
                     f"({full:.0%} of the labels, same budget and stopping)", "report A, Task 3", "best_val_epochs",
                     "directional", a=condition("pretrained", full), b=condition("control", full), direction="lower"))
    return out


def summarize(cfg: Config, unit_results: list[dict], standard: dict) -> dict:
    conditions = standard["conditions"]
    benefit = describe_conditions(_benefits(cfg, conditions), (BENEFIT,))
    aanns = _merge_aanns(unit_results)
    return {"benefit": benefit, "aanns": aanns,
            "tables": [_benefit_table(benefit), _aann_table(aanns), _stopping_table(conditions)],
            "captions": CAPTIONS}


def _benefits(cfg: Config, conditions: dict) -> dict:
    """{benefit@f: {"runs": [{"seed", "metrics": {benefit_gap}}]}}: pre-trained minus control test accuracy per seed."""
    out = {}
    for f in cfg.fractions:
        pre, ctl = ({r["seed"]: r["metrics"]["test_acc"] for r in conditions[condition(k, f)]["runs"]} for k in CONDITIONS)
        out[benefit_name(f)] = {"runs": [{"seed": s, "metrics": {BENEFIT: None if pre[s] is None or ctl.get(s) is None
                                                                 else pre[s] - ctl[s]}} for s in sorted(pre)]}
    return out


def _merge_aanns(unit_results: list[dict]) -> dict:
    records = sorted((r for u in unit_results for r in u["aanns"]), key=lambda r: (r["aann"], r["seed"]))
    merged: dict[str, dict] = {}
    for r in records:
        entry = merged.setdefault(f"AANN{r['aann']}", {"sizes": r["sizes"], "runs": []})
        entry["runs"].append({k: r[k] for k in ("seed", "epochs", "train_mse", "test_mse", "curve", "diverged")})
    for entry in merged.values():
        entry["summary"] = {m: stats.describe([r[m] for r in entry["runs"]], m)
                            for m in ("epochs", "train_mse", "test_mse")}
    return merged


def helps(checks: list[dict]) -> str:
    """The verdict on "does pre-training beat random init" over the label fractions: supported where
    some fraction shows a benefit and none shows harm, contradicted for the reverse, else inconclusive."""
    verdicts = {c["verdict"] for c in checks}
    if "supported" in verdicts and "contradicted" not in verdicts:
        return "supported"
    return "contradicted" if "contradicted" in verdicts and "supported" not in verdicts else "inconclusive"


def answer(cfg: Config, results: dict) -> str:
    per = [check_of(results, metric="test_acc", a=condition("pretrained", f)) for f in cfg.fractions]
    more = check_of(results, metric=BENEFIT)
    parts = [f"{f:.0%} of the labels {effect_of(c)} ({c['verdict']})" for f, c in zip(cfg.fractions, per)]
    text = (f"{opening(helps(per))} pre-training changed test accuracy (pre-trained minus control, both arms with the "
            f"same budget and validation early stopping) with " + ", ".join(parts)
            + f"; more with scarce labels: {more['verdict']} "
            f"({min(cfg.fractions):.0%} minus {max(cfg.fractions):.0%}: {effect_of(more)}).")
    return text + _stopping_note(results)


def _stopping_note(results: dict) -> str:
    """Runs the patience rule never stopped (still at max_epochs) or whose validation loss was still falling."""
    runs = [(name, r) for name, c in results["conditions"].items() for r in c["runs"]]
    open_ = [name for name, r in runs if not r["converged"]]
    falling = [name for name, r in runs if r["still_improving"]]
    if not open_:
        return " Every run's early stopping fired before the budget ran out."
    return (f" {len(open_)} of {len(runs)} runs reached the budget before their patience ran out"
            f" ({', '.join(sorted(set(open_)))}), {len(falling)} with a validation loss still falling there.")


def _benefit_table(benefit: dict) -> dict:
    rows = [[name.partition("@")[2], cell(b["summary"][BENEFIT], BENEFIT), b["summary"][BENEFIT]["n"]]
            for name, b in benefit.items()]
    return {"title": "Benefit of pre-training per label fraction: pre-trained minus control test accuracy, "
                     "per seed then averaged (the interaction claim compares these per-seed values)",
            "columns": ["fraction of labels", "benefit (mean [95% CI])", "n"], "rows": rows}


def _stopping_table(conditions: dict) -> dict:
    rows = [[name, sum(r["converged"] for r in c["runs"]), sum(r["still_improving"] for r in c["runs"]),
             cell(stats.describe([r["stopped_epoch"] for r in c["runs"]], "stopped_epochs"), "stopped_epochs")]
            for name, c in conditions.items()]
    return {"title": "Early stopping per condition: runs whose patience rule fired, runs the budget cut off while "
                     "their validation loss still fell, and the epoch training stopped",
            "columns": ["condition", "stopped by patience", "still improving",
                        "stopped at epoch (geometric mean [95% CI])"],
            "rows": rows}


def _aann_table(aanns: dict) -> dict:
    rows = [[name, "-".join(map(str, a["sizes"]))] + [cell(a["summary"][m], m) for m in ("epochs", "train_mse", "test_mse")]
            for name, a in aanns.items()]
    return {"title": "Auto-associative networks: reconstruction loss (MSE) after pre-training",
            "columns": ["network", "sizes", "epochs", "train MSE", "test MSE"], "rows": rows}


def setup(cfg: Config) -> str:
    return (f"data {cfg.data}; greedy AANNs, {cfg.layers_per_aann} hidden layers each (Adam lr "
            f"{cfg.ae_lr:g}, ≤ {cfg.ae_max_epochs} epochs); classifier in-{'-'.join(map(str, cfg.encoder))}-out "
            f"{cfg.activation}, Adam lr {cfg.lr:g}, batch {cfg.batch_size}, ≤ {cfg.max_epochs} epochs, early stopping "
            f"on the validation loss with patience {cfg.patience} (best weights kept), both arms")




# ---- figures ---------------------------------------------------------------------------------

CAPTIONS = {
    "finetune_loss.png": "Fine-tuning per label fraction, pre-trained beside control (mean and 95% band over seeds): "
                         "training loss (top) and validation loss (bottom, which the early stopping watches), "
                         "each run until it stopped.",
    "label_fractions.png": "Test accuracy at the best validation epoch per label fraction, and the per-seed benefit "
                           "of pre-training (above the dashed zero: pre-training helps).",
    "aann_reconstruction.png": "Reconstruction loss of each auto-associative network while it pre-trains.",
}


def figures(results: dict, folder) -> list[str]:
    conditions, fractions = results["conditions"], [float(f) for f in results["config"]["fractions"]]
    return (_aann_curves(results["aanns"], folder) + _finetune_curves(conditions, fractions, folder)
            + _labels_figure(conditions, results["benefit"], fractions, folder) + fig.confusion_grid(conditions, folder))


def _aann_curves(aanns: dict, folder) -> list[str]:
    f, axes = fig.new_figure(ncols=len(aanns), size=(3.8 * len(aanns), 3.2))
    colors = fig.condition_colors(list(CONDITIONS) + list(aanns))  # after the conditions' own colours
    for ax, (name, a) in zip(np.atleast_1d(axes), aanns.items()):
        fig.curve_band(ax, [r["curve"] for r in a["runs"]], label=name, color=colors[name])
        ax.set(title=f"{name} ({'-'.join(map(str, a['sizes']))})", xlabel="epoch", ylabel="reconstruction loss (MSE)")
    fig.share_y(axes, ranges=False)  # each AANN reconstructs its own input: one scale, not one range
    return fig.save(f, folder, "aann_reconstruction")


def _finetune_curves(conditions: dict, fractions: list[float], folder) -> list[str]:
    f, axes = fig.new_figure(ncols=len(fractions), nrows=2, size=(3.8 * len(fractions), 6.4), sharey=True)
    axes = np.asarray(axes).reshape(2, -1)
    colors = fig.condition_colors(CONDITIONS)
    for j, frac in enumerate(fractions):
        for row, curve in enumerate(("loss", "val_loss")):
            for kind in CONDITIONS:
                fig.curve_band(axes[row, j], [r["curves"][curve] for r in conditions[condition(kind, frac)]["runs"]],
                               label=kind, color=colors[kind])
            axes[row, j].set(title=f"{frac:.0%} of the labels", xlabel="epoch")
            axes[row, j].legend(fontsize=7)
    axes[0, 0].set_ylabel("training loss (cross-entropy)")
    axes[1, 0].set_ylabel("validation loss (cross-entropy)")
    return fig.save(f, folder, "finetune_loss")


def _labels_figure(conditions: dict, benefit: dict, fractions: list[float], folder) -> list[str]:
    f, (left, right) = fig.new_figure(ncols=2, size=(10, 3.8))
    for k, kind in enumerate(CONDITIONS):
        fig.errorbar_x(left, fractions, [conditions[condition(kind, fr)]["summary"]["test_acc"] for fr in fractions],
                       label=kind, color=fig.color(k), log_x=True, xlabel="fraction of training labels",
                       ylabel="test accuracy at the best validation epoch")
    left.set(title="Test accuracy (mean, 95% CI)")
    left.legend()
    fig.errorbar_x(right, fractions, [benefit[benefit_name(fr)]["summary"][BENEFIT] for fr in fractions],
                   color=fig.color(2), log_x=True, xlabel="fraction of training labels",
                   ylabel="pre-trained - control test accuracy")
    right.axhline(0, color="0.5", lw=0.8, ls="--")
    right.set(title="Benefit of pre-training (mean, 95% CI)")
    for ax in (left, right):  # a tick at every fraction trained, 25% included
        ax.set_xticks(fractions, [f"{fr:.0%}" for fr in fractions])
        ax.minorticks_off()
    return fig.save(f, folder, "label_fractions")


STUDY = register(Study(
    "pretraining", "Does stacked-autoencoder pre-training beat random initialisation, and more so when labels are "
    "scarce?", PRESETS, run_unit, summarize, figures, runtime_s="~1.5 min", seeds={"smoke": 3, "default": 10, "paper": 10},
    metrics=METRICS, claims=claims, answer=answer, setup=setup))
