"""Property-based: whatever bytes a data file holds and whatever `--set` says, the answer is a valid
dataset or config, or a one-line UsageError; never another exception."""

import dataclasses
import io
import tempfile
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dlstudies.config import apply_overrides, parse_value
from dlstudies.data.tabular import load_tabular
from dlstudies.errors import UsageError
from dlstudies.studies import STUDIES, load_studies

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

load_studies()
CONFIGS = [STUDIES.get(n).presets["smoke"] for n in STUDIES.names()]

# ---- data files ---------------------------------------------------------------------------

cells = st.one_of(
    st.integers(-3, 5).map(str),
    st.floats(allow_nan=True, allow_infinity=True, width=32).map(repr),
    st.sampled_from(["", " ", "abc", "nan", "-inf", "1e999", "0x10", "1,5", "\"2\"", "1e-3", "٣"]),
    st.text(max_size=4),
)
rows = st.lists(cells, min_size=0, max_size=5).map(",".join)
csv_text = st.lists(rows, min_size=0, max_size=40).map("\n".join)


def _well_formed(rows_: int, cols: int, n_classes: int) -> st.SearchStrategy[str]:
    """CSV text that is valid: finite features and integer labels, one row per line."""
    feature = st.floats(-1e6, 1e6, allow_nan=False, width=32).map(repr)
    row = st.tuples(st.lists(feature, min_size=cols, max_size=cols), st.integers(0, n_classes - 1))
    return st.lists(row, min_size=rows_, max_size=rows_).map(
        lambda rs: "\n".join(",".join([*f, str(label)]) for f, label in rs))


def load_or_usage_error(name: str, data: bytes):
    """(dataset, None) or (None, the UsageError's message) for a file `name` holding `data`."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        try:
            return load_tabular(path), None
        except UsageError as err:
            assert str(path) in str(err), f"the message does not name the file: {err}"
            return None, str(err)


def assert_valid(data) -> None:
    splits = [s for s in (data.train, data.val, data.test) if s is not None]
    assert data.n_classes >= 2
    for s in splits:
        assert s.x.dtype == torch.float32 and torch.isfinite(s.x).all()
        assert s.y.dtype == torch.int64 and s.y.ndim == 1 and len(s.y) == len(s.x)
        assert ((s.y >= 0) & (s.y < data.n_classes)).all()
        assert s.x.shape[1:] == data.train.x.shape[1:]


@FAST
@given(csv_text)
def test_any_csv_text_gives_a_valid_dataset_or_a_usage_error(text):
    data, _ = load_or_usage_error("random.csv", text.encode())
    if data is not None:
        assert_valid(data)


@FAST
@given(st.integers(10, 40), st.integers(1, 4), st.integers(2, 3), st.data())
def test_well_formed_csv_loads_every_row(n_rows, cols, n_classes, draw):
    text = draw.draw(_well_formed(n_rows, cols, n_classes))
    data, error = load_or_usage_error("good.csv", text.encode())
    if data is None:  # allowed only where the file really is unusable: one class, or too few to split
        assert "single class" in error or "too small to split stratified" in error, error
        return
    assert_valid(data)
    assert sum(len(s) for s in (data.train, data.val, data.test)) == n_rows
    assert data.input_shape == (cols,)


def _saved(save, **arrays) -> bytes:
    buf = io.BytesIO()
    save(buf, **arrays)
    return buf.getvalue()


GOOD_NPZ = _saved(np.savez, x=np.arange(40.0).reshape(20, 2), y=np.arange(20) % 2)


@FAST
@given(st.binary(max_size=600))
@example(_saved(np.save, arr=np.eye(3)))  # a plain .npy, which np.load also reads
@example(GOOD_NPZ[: len(GOOD_NPZ) // 2])  # a download cut in half
@example(GOOD_NPZ[:100] + bytes(50) + GOOD_NPZ[150:])  # damaged in the middle
def test_any_bytes_as_npz_give_a_usage_error_or_a_valid_dataset(blob):
    data, _ = load_or_usage_error("random.npz", blob)
    if data is not None:
        assert_valid(data)


arrays = st.sampled_from([np.float64, np.float32, np.int64, np.uint8, np.bool_, np.complex64]).flatmap(
    lambda dtype: st.lists(st.integers(0, 6), min_size=0, max_size=3).map(
        lambda shape: np.resize(np.arange(7, dtype=np.float64) % 3, shape).astype(dtype)))


@FAST
@given(st.dictionaries(st.sampled_from(["x", "y", "z"]), arrays, max_size=3))
def test_any_arrays_in_an_npz_give_a_valid_dataset_or_a_usage_error(named):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "arrays.npz"
        np.savez(path, **named)
        try:
            assert_valid(load_tabular(path))
        except UsageError as err:
            assert str(path) in str(err)


# ---- --set --------------------------------------------------------------------------------

set_pairs = st.lists(st.one_of(
    st.text(max_size=12),
    st.tuples(st.sampled_from(sorted({f.name for c in CONFIGS for f in dataclasses.fields(c)})),
              st.one_of(st.text(max_size=8), st.integers(-5, 10**6).map(str),
                        st.floats(allow_nan=True, allow_infinity=True).map(repr),
                        st.sampled_from(["none", "true", "0", "1e-3", "-1", "1,2", "", "adam", "relu"]))
              ).map("=".join),
), max_size=3)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: type(c).__module__.rsplit(".", 1)[-1])
@FAST
@given(pairs=set_pairs)
def test_any_set_gives_a_valid_config_or_a_usage_error(cfg, pairs):
    try:
        new = apply_overrides(cfg, pairs)
    except UsageError:
        return
    assert type(new) is type(cfg)
    for field in dataclasses.fields(new):
        value = getattr(new, field.name)
        assert not (isinstance(value, float) and not np.isfinite(value)), (field.name, value)


def _values_of(hint):
    """Values of a config field's type, as the parser must read them back."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if type(None) in args:
        return st.one_of(st.none(), _values_of(next(a for a in args if a is not type(None))))
    if origin is tuple:
        return st.lists(_values_of(args[0]), min_size=1, max_size=3).map(tuple)
    return {int: st.integers(-10**9, 10**9), float: st.floats(allow_nan=False, allow_infinity=False),
            bool: st.booleans(), str: st.text("abcdefgh-_.0123456789", min_size=1, max_size=8)}[hint]


def _written(value) -> str:
    if isinstance(value, tuple):
        return ",".join(_written(v) for v in value)
    return "none" if value is None else repr(value) if isinstance(value, float) else str(value)


@pytest.mark.parametrize("hint", [int, float, bool, str, int | None, tuple[int, ...], tuple[str, ...], float | None])
@FAST
@given(st.data())
def test_set_values_round_trip(hint, data):
    value = data.draw(_values_of(hint))
    assert parse_value(_written(value), hint) == value
