"""The width solver: equal parameter budgets are equal within 1%, counted on the built models."""

import pytest

from dlstudies.models import count_params
from dlstudies.models.builders import mlp
from dlstudies.models.conv import cnn
from dlstudies.models.widths import (
    MATCH_TOLERANCE,
    cnn_count,
    cnn_widths,
    match_error,
    mlp_count,
    mlp_widths,
)


@pytest.mark.parametrize("budget", [300, 571, 1000, 5000])
@pytest.mark.parametrize("depth", range(1, 9))
def test_mlp_widths_hit_the_budget_within_one_percent(depth, budget):
    solved = mlp_widths(1, 1, depth, budget)
    built = count_params(mlp([1, *solved.hidden, 1]))
    assert len(solved.hidden) == depth and min(solved.hidden) >= 1
    assert built == solved.n_params
    assert abs(built - budget) <= MATCH_TOLERANCE * budget


@pytest.mark.parametrize("n_in, n_out, budget", [(64, 10, 4810), (64, 10, 20000), (784, 10, 50890)])
def test_image_mlps_of_all_depths_match_each_other(n_in, n_out, budget):
    counts = [count_params(mlp([n_in, *mlp_widths(n_in, n_out, d, budget).hidden, n_out])) for d in range(1, 9)]
    assert match_error(counts) <= MATCH_TOLERANCE


def test_shapes_stay_near_uniform_when_the_budget_allows():
    # The 571-parameter nets of report B: no layer far wider than the others.
    for depth in range(2, 9):
        hidden = mlp_widths(1, 1, depth, 571).hidden
        assert max(hidden) - min(hidden) <= max(hidden) // 2, hidden


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28)])
def test_shallow_and_deep_cnns_have_equal_counts(shape):
    shallow = cnn_widths(shape, (16,), 10, cnn_count(shape, (16,), (32,), 10))
    deep = cnn_widths(shape, (8, 16, 32), 10, shallow.n_params)
    built = [count_params(cnn(shape, s.channels, s.hidden, 10)) for s in (shallow, deep)]
    assert built == [shallow.n_params, deep.n_params]
    assert match_error(built) <= MATCH_TOLERANCE


def test_closed_form_counts_agree_with_built_models():
    assert mlp_count(3, (5, 4), 2) == count_params(mlp([3, 5, 4, 2]))
    assert cnn_count((1, 8, 8), (3, 4), (7,), 4) == count_params(cnn((1, 8, 8), (3, 4), (7,), 4))


def test_solver_rejects_impossible_requests():
    with pytest.raises(ValueError):
        mlp_widths(1, 1, 0, 571)
