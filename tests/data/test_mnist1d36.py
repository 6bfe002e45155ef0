"""mnist1d36 (report A's shape, generated offline): shape, range, balance, determinism."""


import numpy as np
import torch

from dlstudies.data import describe_datasets, load_data
from dlstudies.data.mnist1d36 import generate, mnist1d36
from generation import generated_twice_alike  # tests/data/generation.py


def test_report_a_shape_range_and_balance():
    data = load_data("mnist1d36")
    assert data.n_classes == 5 and data.input_shape == (36,)
    assert (len(data.train), len(data.val), len(data.test)) == (2000, 500, 500)
    for split, n in ((data.train, 400), (data.val, 100), (data.test, 100)):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert split.y.bincount(minlength=5).tolist() == [n] * 5
        assert float(split.x.min()) >= 0.0 and float(split.x.max()) <= 1.0
    everything = torch.cat([data.train.x, data.val.x, data.test.x])
    assert float(everything.min()) == 0.0 and float(everything.max()) == 1.0  # min-max over the whole set
    assert float(everything.std()) > 0.05  # not squashed into a sliver of [0, 1] by one outlier


def test_splits_hold_distinct_sequences():
    data = load_data("mnist1d36")
    rows = {tuple(r) for s in (data.train, data.val, data.test) for r in s.x.numpy().round(6).tolist()}
    assert len(rows) == 3000


def test_classes_are_separable_but_not_trivially():
    # A nearest-centroid rule on the raw features beats chance (the classes carry signal) without
    # reaching the digits36 ceiling (the task is hard).
    data = load_data("mnist1d36")
    centroids = torch.stack([data.train.x[data.train.y == c].mean(0) for c in range(5)])
    pred = torch.cdist(data.test.x, centroids).argmin(1)
    acc = float((pred == data.test.y).double().mean())
    assert 0.3 < acc < 0.9


def test_generation_is_deterministic_and_leaves_global_rngs_alone():
    first = generated_twice_alike(generate, 60)
    assert first[0].shape == (300, 36) and np.bincount(first[1]).tolist() == [60] * 5


def test_calls_agree_and_listing_names_it():
    a, b = mnist1d36(), mnist1d36()
    for x, y in zip((a.train, a.val, a.test), (b.train, b.val, b.test)):
        assert torch.equal(x.x, y.x) and torch.equal(x.y, y.y)
    line = next(line for line in describe_datasets() if line.startswith("mnist1d36"))
    assert "(36,)" in line and "5 classes" in line and "2000/500/500" in line
