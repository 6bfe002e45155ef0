"""digits36: the built-in stand-in for report A's 36-feature, 5-class data.

scikit-learn's bundled 8x8 handwritten digits, classes 0-4, area-resampled to 6x6 = 36 features
in [0, 1]. Like report A's data it is small, balanced and 36-dimensional; it ships with
scikit-learn, so nothing is downloaded.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from dlstudies.data.base import DATASETS, Dataset, stratified_splits


def area_resample(images: np.ndarray, size: int) -> np.ndarray:
    """Area-weighted resampling (each output pixel averages the input area it covers)."""
    t = torch.as_tensor(images, dtype=torch.float64).unsqueeze(1)
    return F.adaptive_avg_pool2d(t, size).squeeze(1).numpy() if t.shape[-1] % size == 0 else _area(t, size)


def _area(t: torch.Tensor, size: int) -> np.ndarray:
    # 8 -> 6 is not an integer factor: upsample by nearest to a common multiple, then average.
    n = t.shape[-1]
    lcm = np.lcm(n, size)
    up = F.interpolate(t, scale_factor=lcm // n, mode="nearest")
    return F.avg_pool2d(up, lcm // size).squeeze(1).numpy()


@DATASETS.register("digits36")
def digits36(data_dir: str | None = None) -> Dataset:
    bunch = load_digits()
    keep = bunch.target < 5
    images = bunch.images[keep] / 16.0
    x = area_resample(images, 6).reshape(-1, 36)
    train, val, test = stratified_splits(x, bunch.target[keep])
    source = "scikit-learn 8x8 digits, classes 0-4, area-resampled to 6x6 (bundled, offline)"
    return Dataset("digits36", train, val, test, 5, source)
