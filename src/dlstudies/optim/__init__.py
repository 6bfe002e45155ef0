"""Optimizers over stacked parameters: M independent optimizers as a few elementwise kernels.

`rules.py` states each update rule once and what the engines need to know about it; `spec.py` is
a member's settings (OptSpec); `stacked.py` steps a stack of members, each with its own settings.
"""

from dlstudies.optim.rules import OPTIMIZERS, Rule
from dlstudies.optim.spec import OptSpec, settings, torch_optimizer
from dlstudies.optim.stacked import StackedOptimizer

__all__ = ["OPTIMIZERS", "OptSpec", "Rule", "StackedOptimizer", "settings", "torch_optimizer"]
