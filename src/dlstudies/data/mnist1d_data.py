"""mnist1d: Greydanus's MNIST-1D, generated locally by the mnist1d package.

`make_dataset` with the package's default arguments (seed 42 among them) builds the same 5000
sequences of length 40 every time; `get_dataset` is never called because it downloads. The
package's own 80/20 split gives train and test; a fixed stratified 10% of train is held out as
validation, as for the IDX datasets. Features are (N, 40) float32 exactly as generated: the
generator already centres the whole set and scales it to unit variance, so no further scaling.
Generation takes a few seconds, so the arrays are cached in memory (no files are written).
"""

from __future__ import annotations

import contextlib
import functools
import random

import numpy as np

from dlstudies.data.base import DATASETS, Dataset, as_split
from dlstudies.data.idx import VAL_FRACTION, holdout_indices


@DATASETS.register("mnist1d")
def mnist1d(data_dir: str | None = None) -> Dataset:
    x, y, x_test, y_test = generate()
    keep, held = holdout_indices(y, VAL_FRACTION, "mnist1d")
    source = "MNIST-1D generated offline by the mnist1d package (default arguments, seed 42)"
    return Dataset("mnist1d", as_split(x[keep], y[keep]), as_split(x[held], y[held]),
                   as_split(x_test.copy(), y_test.copy()), 10, source, {"val_fraction": VAL_FRACTION})


@functools.lru_cache(maxsize=2)
def generate(num_samples: int = 5000) -> tuple[np.ndarray, ...]:
    """(x, y, x_test, y_test) from make_dataset's defaults; num_samples other than 5000 is for tests."""
    # Imported here: the package pulls in matplotlib, scipy.interpolate and requests (~1.5 s).
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = num_samples
    with global_rng_restored():
        data = make_dataset(args)
    arrays = (data["x"].astype(np.float32), data["y"].astype(np.int64),
              data["x_test"].astype(np.float32), data["y_test"].astype(np.int64))
    for a in arrays:
        a.flags.writeable = False  # shared by every caller through the cache
    return arrays


@contextlib.contextmanager
def global_rng_restored():
    # make_dataset seeds Python's and numpy's global generators; put them back afterwards so
    # loading data never changes the random state of anything else in the process.
    states = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
