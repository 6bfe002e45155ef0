"""A check both generated data sets share."""

import random

import numpy as np


def generated_twice_alike(generate, n: int):
    """Two uncached generations of `generate(n)`, the second after the global generators were
    moved, agree exactly and leave numpy's and Python's global state where it was; returns the first."""
    first = generate.__wrapped__(n)
    np.random.seed(7)
    random.seed(7)
    before = np.random.get_state()[1].copy(), random.getstate()
    second = generate.__wrapped__(n)
    assert np.array_equal(np.random.get_state()[1], before[0]) and random.getstate() == before[1]
    for a, b in zip(first, second):
        assert np.array_equal(a, b)
    return first
