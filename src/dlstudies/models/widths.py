"""Layer widths for a parameter budget, so that "equal parameter counts" are equal.

Deep-vs-shallow comparisons (studies `function-fit`, `image-depth`) are only fair when the
models have the same number of parameters; a uniform hidden width rarely hits a budget (at
depth 8 and ~571 parameters the two nearest uniform widths miss by 7% and 15%). The solvers
here search a few near-uniform shapes and solve one free width exactly: the parameter count is
linear in any single width, so two evaluations of the count give the best integer for it.

Counts are closed-form (`mlp_count`, `cnn_count`) and match `count_params` of the models built
by `models.builders.mlp` and `models.conv.cnn` (the tests hold them to it).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

# A shape is accepted as "on budget" within this relative error; among such shapes the
# most regular one wins (a shape that is 0.01% closer is not worth a lopsided network).
# Two shapes solved for the same target then differ by at most 2 * SLACK < MATCH_TOLERANCE.
SLACK = 0.004
# Two models count as "equal parameter counts" when they differ by at most this fraction.
MATCH_TOLERANCE = 0.01


@dataclass(frozen=True)
class Widths:
    """A solved shape: hidden widths (MLP hidden layers, or a CNN's fc layers), conv channels."""

    hidden: tuple[int, ...]
    n_params: int
    target: int
    channels: tuple[int, ...] = ()

    @property
    def relative_error(self) -> float:
        return abs(self.n_params - self.target) / self.target


def mlp_count(n_in: int, hidden: Sequence[int], n_out: int) -> int:
    """Parameters of `mlp([n_in, *hidden, n_out])`: weights and biases of each Linear layer."""
    sizes = [n_in, *hidden, n_out]
    return sum((a + 1) * b for a, b in itertools.pairwise(sizes))


def cnn_count(input_shape: Sequence[int], channels: Sequence[int], hidden: Sequence[int], n_classes: int,
              kernel: int = 3, pool: int = 2) -> int:
    """Parameters of `cnn(input_shape, channels, hidden, n_classes, kernel, pool)` (same-padded convs)."""
    c, h, w = input_shape
    total = 0
    for out in channels:
        total += (c * kernel * kernel + 1) * out
        c, h, w = out, h // pool, w // pool
    return total + mlp_count(c * h * w, hidden, n_classes)


def solve_linear(count: Callable[[int], int], target: int) -> list[int]:
    """The integers >= 1 around the solution of count(v) = target, for a count linear in v."""
    slope = count(2) - count(1)
    v = 1 + (target - count(1)) / slope if slope else 1
    return sorted({max(1, int(v)), max(1, int(v) + 1)})


def _best(candidates: Iterable[Widths], irregularity: Callable[[Widths], float]) -> Widths:
    # Errors within SLACK tie, so regularity decides among them; beyond it the closest wins.
    return min(candidates, key=lambda s: (max(s.relative_error, SLACK), irregularity(s), s.relative_error))


def uniform_width(n_in: int, n_out: int, depth: int, target: int) -> int:
    """The uniform hidden width whose count is closest to `target` (the count grows with the width)."""
    w = 1
    while mlp_count(n_in, [w * 2] * depth, n_out) <= target:
        w *= 2
    lo, hi = w, w * 2  # count(lo) <= target < count(hi), or lo = 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if mlp_count(n_in, [mid] * depth, n_out) <= target else (lo, mid)
    return min((lo, hi), key=lambda v: abs(mlp_count(n_in, [v] * depth, n_out) - target))


def _prefixes(w: int, length: int) -> Iterable[list[int]]:
    # The first k layers one wider than the rest: steps of about 2w in the count.
    for base in (w - 1, w):
        for k in range(length + 1):
            if base >= 1:
                yield [base + 1] * k + [base] * (length - k)


def _shapes(w: int, depth: int) -> Iterable[list[int]]:
    """Hidden widths but the last: a near-uniform prefix, then a pivot layer that may range from
    half to twice w (the count's steps in the last width alone can be too coarse to hit 1%)."""
    if depth == 1:
        yield []
        return
    for prefix in _prefixes(w, depth - 2):
        for pivot in range(max(1, w // 2), 2 * w + 1):
            yield [*prefix, pivot]


def mlp_widths(n_in: int, n_out: int, depth: int, target: int) -> Widths:
    """Hidden widths of an MLP with `depth` hidden layers whose count is closest to `target`.

    Near-uniform: of the shapes within SLACK of the target (see `_shapes`; the last hidden width
    is solved exactly), the one with the smallest spread of widths; else the closest.
    """
    if depth < 1 or target < 1:
        raise ValueError(f"depth and target must be >= 1, got depth {depth}, target {target}")
    w = uniform_width(n_in, n_out, depth, target)
    candidates = []
    for head in _shapes(w, depth):
        for last in solve_linear(lambda v, head=head: mlp_count(n_in, [*head, v], n_out), target):
            shape = (*head, last)
            candidates.append(Widths(shape, mlp_count(n_in, shape, n_out), target))
    return _best(candidates, lambda s: max(s.hidden) - min(s.hidden))


def cnn_widths(input_shape: Sequence[int], channels: Sequence[int], n_classes: int, target: int,
               kernel: int = 3, pool: int = 2) -> Widths:
    """A CNN with the given conv channels and one hidden fc layer, its count closest to `target`.

    The fc width is solved exactly; the last conv's channel count may move (within half to twice
    the given one) when the fc width alone steps too coarsely, as it does after a large feature map.
    """
    *first, last = channels
    candidates = []
    for c in range(max(1, last // 2), 2 * last + 1):
        conv = (*first, c)
        count = lambda h, conv=conv: cnn_count(input_shape, conv, [h], n_classes, kernel, pool)
        candidates += [Widths((h,), count(h), target, conv) for h in solve_linear(count, target)]
    return _best(candidates, lambda s: abs(s.channels[-1] - last))


def match_error(counts: Sequence[int]) -> float:
    """The largest relative difference between any two counts."""
    return (max(counts) - min(counts)) / min(counts)
