"""The studies of STUDIES.md, one module each; each registers itself on import."""

from __future__ import annotations

import importlib
import pkgutil

from dlstudies.studies.base import STUDIES, Study, Unit, register

__all__ = ["STUDIES", "Study", "Unit", "register", "load_studies", "ordered_studies"]

# The order of STUDIES.md: report A's studies, then report B's.
ORDER = ("optimizers", "normalization", "pretraining", "function-fit", "image-depth", "weight-trajectory",
         "grad-norm", "minimal-ratio", "loss-surface", "random-labels", "params-generalization",
         "interpolation", "sensitivity")

NOT_STUDIES = {"base", "results", "training", "image_nets"}  # shared modules, not studies


def load_studies() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name not in NOT_STUDIES:
            importlib.import_module(f"{__name__}.{info.name}")


def ordered_studies() -> list[Study]:
    load_studies()
    rank = {name: i for i, name in enumerate(ORDER)}
    return [STUDIES.get(n) for n in sorted(STUDIES.names(), key=lambda n: (rank.get(n, len(ORDER)), n))]
