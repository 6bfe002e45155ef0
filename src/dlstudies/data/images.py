"""digits: the offline default image dataset.

scikit-learn's bundled 8x8 handwritten digits, all 10 classes, as (N, 1, 8, 8) float32 images in
[0, 1] (the pixels are counts 0-16). It ships with scikit-learn, so the image studies run with no
files and no network; fashion-mnist and mnist (idx.py) are the full-size alternatives.
"""

from __future__ import annotations

from sklearn.datasets import load_digits

from dlstudies.data.base import DATASETS, Dataset, stratified_splits

PIXEL_MAX = 16.0  # the digits' pixels count 4x4 blocks of a 32x32 bitmap: 0..16


@DATASETS.register("digits")
def digits(data_dir: str | None = None) -> Dataset:
    bunch = load_digits()
    images = (bunch.images / PIXEL_MAX)[:, None]  # channel axis for the conv layers
    train, val, test = stratified_splits(images, bunch.target)
    source = "scikit-learn 8x8 digits, 10 classes (bundled, offline)"
    return Dataset("digits", train, val, test, 10, source)
