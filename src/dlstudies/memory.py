"""Planned memory of a run, checked before it starts: a request that cannot fit is refused.

`--set hidden=100000,100000` passes every declared bound (a width of 100,000 can make sense), but
a stack of ten such MLPs needs hundreds of GB: without this check the run swaps or is killed by
the kernel minutes later, with no word. The estimate is a floor, from what the Config says the
run holds at once per worker — parameters with their gradients and optimizer state for every
member of a stack, one batch of activations, the dataset, a float64 Hessian where the study takes
one — so a refused run could not have fitted; one accepted may still need somewhat more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import psutil

from dlstudies.errors import UsageError

DTYPE_BYTES = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2}
COPIES = 4  # parameters, gradients and two optimizer moments (Adam keeps both)
WIDTH_FIELDS = ("hidden", "encoder", "h1", "h2", "mlp_width", "cnn_fc", "channels", "cnn_shallow", "cnn_deep", "budget")


@dataclass(frozen=True)
class Shape:
    """What the data contributes: input shape, outputs per sample, samples held."""

    input_shape: tuple[int, ...]
    n_out: int
    n_samples: int


FUNCTION_DATA = Shape((1,), 1, 0)  # the 1-d target functions (function-fit, minimal-ratio)


def data_shape(data) -> Shape:
    n = len(data.train) + len(data.test) + (len(data.val) if data.val is not None else 0)
    n_out = data.n_classes or (int(data.train.y.shape[1]) if data.train.y.ndim > 1 else 1)
    return Shape(tuple(data.input_shape), n_out, n)


def _widths(cfg: Any, name: str) -> tuple[int, ...]:
    value = getattr(cfg, name, ())
    return tuple(value) if isinstance(value, tuple) else (value,)


def _dense(sizes) -> int:
    return sum(a * b + b for a, b in zip(sizes, sizes[1:]))


def _conv(cfg: Any, shape: Shape) -> tuple[int, int, int]:
    """(conv parameters, flattened features after the convs, activations per sample) of a CNN."""
    channels = _widths(cfg, "channels") or _widths(cfg, "cnn_shallow")
    c, h, w = shape.input_shape if len(shape.input_shape) == 3 else (1, *shape.input_shape, 1)[:3]
    params, acts = 0, 0
    for out in channels:
        params, acts = params + c * out * 9 + out, acts + out * h * w
        c, h, w = out, max(1, h // 2), max(1, w // 2)
    return params, c * h * w, acts


def parameters(cfg: Any, shape: Shape) -> int:
    """Parameters of the largest network of one member (where widths are solved to a budget, the
    budget's: image-depth's shallow models set it)."""
    if hasattr(cfg, "budget"):
        return cfg.budget
    conv_net = getattr(cfg, "model", None) == "cnn"  # then `hidden` is the head after the convs
    chains = [_widths(cfg, n) for n in ("hidden", "encoder", "mlp_width") if hasattr(cfg, n)
              and not (conv_net and n == "hidden")]
    chains += list(zip(_widths(cfg, "h1"), _widths(cfg, "h2")))
    largest = max((_dense((math.prod(shape.input_shape), *c, shape.n_out)) for c in chains), default=0)
    if conv_net or hasattr(cfg, "cnn_shallow"):
        conv, flat, _ = _conv(cfg, shape)
        head = _widths(cfg, "hidden") if conv_net else _widths(cfg, "cnn_fc")
        largest = max(largest, conv + _dense((flat, *head, shape.n_out)))
    return largest


def members(cfg: Any, n_seeds: int) -> int:
    """Models trained in one stack: a unit's seeds, times the conditions and restarts it stacks."""
    chunk = min(getattr(cfg, "seed_chunk", n_seeds), n_seeds)
    return chunk * max(1, len(getattr(cfg, "rules", ()))) * getattr(cfg, "restarts", 1)


def _batch(cfg: Any) -> int:
    # A None batch is all of the data at once, which `n_train` (when set) stands for below.
    sizes = [getattr(cfg, n) for n in ("batch_size", "large_batch", "eval_batch") if getattr(cfg, n, None) is not None]
    return max([*sizes, *getattr(cfg, "batch_sizes", ()), getattr(cfg, "n_train", None) or 0, 1])


def terms(cfg: Any, shape: Shape, n_seeds: int, dtype: str = "float32") -> dict[str, int]:
    """Bytes one worker holds at once, by the setting that sets each part."""
    size, m, p = DTYPE_BYTES.get(dtype, 4), members(cfg, n_seeds), parameters(cfg, shape)
    widths = sum(sum(_widths(cfg, n)) for n in WIDTH_FIELDS if n != "budget")
    per_sample = math.prod(shape.input_shape) + widths + shape.n_out + _conv(cfg, shape)[2] * hasattr(cfg, "channels")
    found = {
        _widest(cfg): m * p * COPIES * size,
        "batch_size": 2 * m * _batch(cfg) * per_sample * size,  # forward activations and their gradients
        "n_train": 2 * shape.n_samples * math.prod(shape.input_shape) * 4,  # float32 data and a subsample
    }
    if hasattr(cfg, "eig_tolerance"):  # the exact float64 Hessian, its autograd graph and eigvalsh workspace
        found[_widest(cfg)] += 3 * p * p * 8
    return found


def _widest(cfg: Any) -> str:
    present = [n for n in WIDTH_FIELDS if hasattr(cfg, n)]
    return max(present, key=lambda n: max(_widths(cfg, n), default=0)) if present else "seed_chunk"


def available_bytes() -> int:
    return int(psutil.virtual_memory().available)


def check_memory(name: str, cfg: Any, shape: Shape, n_seeds: int, workers: int, dtype: str = "float32") -> int:
    """The planned bytes of study `name`, or a UsageError naming the estimate and what to lower."""
    parts = terms(cfg, shape, n_seeds, dtype)
    total = sum(parts.values()) * max(1, workers)
    free = available_bytes()
    if total > free:
        setting = max(parts, key=parts.get)
        now = getattr(cfg, setting, None)
        now = ",".join(map(str, now)) if isinstance(now, tuple) else now
        raise UsageError(f"{name}: this run needs at least {_gb(total)} of memory and {_gb(free)} is available; "
                         f"lower --set {setting} (now {now})" + (f" or --workers (now {workers})" if workers > 1 else ""))
    return total


def _gb(n: float) -> str:
    return f"{n / 1e9:,.1f} GB" if n >= 1e8 else f"{n / 1e6:,.1f} MB"
