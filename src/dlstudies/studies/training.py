"""How studies train a stack of seeds and read the trained members back: shared by every study.

Not a study (listed in NOT_STUDIES): `fit_members` builds one member per seed and hands the stack
to the engine the run asked for; the rest turn a FitResult and a dataset into the plain data of
results.json (accuracy and confusion per split, the divergence fields every run record carries).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn

from dlstudies.analysis.replay import replayable
from dlstudies.engine import ENGINES, predict_members
from dlstudies.engine.evaluate import accuracy, confusion, mean_loss
from dlstudies.models.builders import build_members, mlp
from dlstudies.optim import OptSpec
from dlstudies.studies.base import Unit


def member_dtype(unit: Unit) -> torch.dtype:
    return getattr(torch, unit.runtime.dtype)


def fit_members(unit: Unit, builder: Callable[[], nn.Module], opt: OptSpec, x: torch.Tensor, y: torch.Tensor, spec,
                seeds: Sequence[int] | None = None, init_seeds: Sequence[int] | None = None):
    """One member per init seed (default: the seeds, default: the unit's), all with the same optimizer
    settings, trained as one stack by the unit's engine; `seeds` set each member's sample order."""
    seeds = list(unit.seeds if seeds is None else seeds)
    members = build_members(builder, list(init_seeds or seeds), member_dtype(unit))
    return ENGINES.get(unit.runtime.engine)(members, [opt] * len(members), x, y, spec, seeds)


def image_mlp(data, hidden: Sequence[int], act: Callable[[], nn.Module], norm=None) -> Callable[[], nn.Module]:
    """Builder of an MLP classifier: inputs (images flattened) -> hidden -> one output per class."""
    sizes = [math.prod(data.input_shape), *hidden, data.n_classes]
    # Flatten only images: a plain MLP on feature vectors stays eligible for the fused engine path.
    flatten = len(data.input_shape) > 1
    return lambda: mlp(sizes, act=act, norm=norm, flatten=flatten)


@replayable
def split_metrics(models, data, splits: Sequence[str] = ("train", "test")) -> dict:
    """Each trained model's cross-entropy loss and accuracy per split, through the stacked forward
    the trainer itself uses: {"train_loss": (M,), "train_acc": (M,), ...} as numpy arrays."""
    out = {}
    for split in splits:
        s = getattr(data, split)
        outputs = predict_members(models, s.x)
        out[f"{split}_loss"] = mean_loss(outputs, s.y, "cross_entropy").numpy()
        out[f"{split}_acc"] = accuracy(outputs, s.y).numpy()
    return out


def split_accuracy(models, data, splits: Sequence[str] = ("train", "test"), predict=predict_members) -> dict:
    """{split: (M,) accuracy} of the trained models."""
    return {s: accuracy(predict(models, getattr(data, s).x), getattr(data, s).y) for s in splits}


def classify_splits(models, data, splits: Sequence[str], predict=predict_members) -> tuple[dict, dict]:
    """(accuracy per split, confusion counts on train and test), one forward per split."""
    outs = {s: predict(models, getattr(data, s).x) for s in splits}
    acc = {s: accuracy(o, getattr(data, s).y) for s, o in outs.items()}
    cms = {s: confusion(outs[s], getattr(data, s).y, data.n_classes) for s in ("train", "test")}
    return acc, cms


def divergence(fit, i: int) -> dict:
    """The divergence fields of member i's run record."""
    return {"diverged": bool(fit.diverged[i]),
            "diverged_epoch": int(fit.diverged_epoch[i]) if fit.diverged[i] else None}


def classifier_runs(fit, data, names: Sequence[tuple[str, int]], metrics: dict | None = None,
                    splits: Sequence[str] = ("train", "val", "test"), curves: Sequence[str] = ("loss", "train_acc", "val_acc"),
                    predict=predict_members, extra: dict | None = None, stopped: bool = True) -> list[dict]:
    """One run record per member i, named names[i] = (condition, seed): epochs (when `stopped`, a stop
    rule ran), final loss and accuracy per split after `metrics` (first in each record), the curves up
    to the member's last epoch, train/test confusion counts, and whether it converged and diverged."""
    acc, cms = classify_splits(fit.models, data, splits, predict)
    final = fit.final("loss")
    runs = []
    for i, (name, seed) in enumerate(names):
        n = int(fit.epochs[i])
        head = {"epochs": n} if stopped else {}
        measured = {**head, "final_loss": float(final[i]), **{f"{k}_acc": float(v[i]) for k, v in acc.items()}}
        if fit.diverged[i]:  # the weights are broken: their accuracy and epoch count say nothing
            measured = dict.fromkeys(measured)
        run = {"condition": name, "seed": seed, "metrics": {**(metrics or {}), **measured},
               **(extra or {}), "curves": {k: fit.history[k][i, :n].tolist() for k in curves},
               "confusion": {k: cm[i].tolist() for k, cm in cms.items()}}
        if stopped:
            run["converged"] = bool(fit.converged[i])
        runs.append({**run, **divergence(fit, i)})
    return runs


def split_probe(data):
    """Accuracy on every split and train/test confusion after every epoch (one forward per split)."""
    def probe(predict):
        out = {}
        for name in ("train", "val", "test"):
            split = getattr(data, name)
            outputs = predict(split.x)
            out[f"{name}_acc"] = accuracy(outputs, split.y)
            if name != "val":
                out[f"{name}_confusion"] = confusion(outputs, split.y, data.n_classes).double()
        return out
    return probe
