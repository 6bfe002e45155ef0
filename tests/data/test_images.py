"""digits (bundled 8x8) and mnist1d (generated offline): shapes, ranges, splits, determinism."""

import torch

from dlstudies.data import load_data
from dlstudies.data.mnist1d_data import generate, mnist1d
from generation import generated_twice_alike  # tests/data/generation.py


def test_digits_shapes_and_range():
    data = load_data("digits")
    assert data.n_classes == 10 and data.input_shape == (1, 8, 8)
    assert len(data.train) + len(data.val) + len(data.test) == 1797
    for split in (data.train, data.val, data.test):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert float(split.x.min()) >= 0.0 and float(split.x.max()) <= 1.0
    assert float(data.train.x.max()) == 1.0


def test_digits_splits_are_stratified():
    data = load_data("digits")
    overall = torch.cat([data.train.y, data.val.y, data.test.y]).bincount().double()
    for split in (data.train, data.val, data.test):
        share = split.y.bincount(minlength=10).double() / len(split)
        assert torch.allclose(share, overall / overall.sum(), atol=0.01)


def test_mnist1d_shapes():
    data = mnist1d()
    assert data.n_classes == 10 and data.input_shape == (40,)
    assert (len(data.train), len(data.val), len(data.test)) == (3600, 400, 1000)
    assert data.train.x.dtype == torch.float32 and data.train.y.dtype == torch.int64
    assert data.val.y.bincount().min() >= 35  # the 10% holdout is stratified
    everything = torch.cat([data.train.x, data.val.x, data.test.x])
    assert abs(float(everything.mean())) < 1e-3 and abs(float(everything.std()) - 1) < 1e-3


def test_mnist1d_is_deterministic_and_leaves_global_rngs_alone():
    # Two uncached generations (a small one: the same code path as the full 5000, 10x faster),
    # the second after the global generators were moved, must agree exactly.
    first = generated_twice_alike(generate, 500)
    assert first[0].shape == (400, 40) and first[2].shape == (100, 40)


def test_mnist1d_calls_agree():
    a, b = mnist1d(), mnist1d()
    for x, y in zip((a.train, a.val, a.test), (b.train, b.val, b.test)):
        assert torch.equal(x.x, y.x) and torch.equal(x.y, y.y)
