"""The 1-D regression targets of study B1 and their grids."""

import math

import numpy as np
import pytest
import torch

from dlstudies.data import load_data
from dlstudies.data.functions import TARGETS, function_dataset
from dlstudies.errors import UsageError


def test_f1_at_known_points():
    f1 = TARGETS.get("f1")
    assert f1(np.array([0.1]))[0] == pytest.approx(math.sin(0.5 * math.pi) / (0.5 * math.pi), rel=1e-12)
    assert f1(np.array([0.3]))[0] == pytest.approx(math.sin(1.5 * math.pi) / (1.5 * math.pi), rel=1e-12)
    assert f1(np.array([0.2, 1.0])) == pytest.approx([0.0, 0.0], abs=1e-15)
    assert f1(np.array([1e-9]))[0] == pytest.approx(1.0)


def test_f2_signs():
    f2 = TARGETS.get("f2")
    assert f2(np.array([0.1, 0.3, 0.5, 0.7, 0.9])).tolist() == [1.0, -1.0, 1.0, -1.0, 1.0]
    # at the zeros of sin(5πx), including float32-rounded ones, the sign is 0, not rounding noise
    assert f2(np.array([0.2, 0.4, 0.6, 0.8, 1.0], dtype=np.float32)).tolist() == [0.0] * 5


def test_function_dataset_grids():
    data = function_dataset("f1", n_train=50, n_test=40)
    assert data.n_classes == 0 and data.val is None
    assert data.train.x.shape == (50, 1) and data.test.y.shape == (40, 1)
    assert data.train.x.dtype == torch.float32 and data.train.y.dtype == torch.float32
    x_train, x_test = data.train.x.ravel().double(), data.test.x.ravel().double()
    assert float(x_train.min()) > 0 and float(x_train.max()) == 1.0
    assert torch.allclose(x_train.diff(), torch.full((49,), 1 / 50, dtype=torch.float64), atol=1e-6)
    assert float(x_test.min()) > 0 and float(x_test.max()) < 1.0
    assert not set(x_train.tolist()) & set(x_test.tolist())


def test_targets_match_x():
    for name in TARGETS:
        data = function_dataset(name, n_train=64, n_test=64)
        for split in (data.train, data.test):
            expected = TARGETS.get(name)(split.x.numpy()).astype(np.float32)
            assert np.array_equal(split.y.numpy(), expected)


def test_registered_names():
    assert load_data("functions").meta["target"] == "f1"
    assert load_data("f2").meta["target"] == "f2"


def test_unknown_target_lists_valid_ones():
    with pytest.raises(UsageError, match="f1, f2"):
        function_dataset("f3")
