"""Models: plain `nn.Module` members built from explicit seeds, and their stacked form."""

from dlstudies.models.builders import ACTIVATIONS, MODELS, build_members, count_params, init_module
from dlstudies.models import conv  # noqa: F401  (registers the stacked conv layers)
from dlstudies.models import norms  # noqa: F401  (registers the stacked BatchNorm1d and LayerNorm)
from dlstudies.models.stacked import STACKED_LAYERS, StackedNet

__all__ = ["ACTIVATIONS", "MODELS", "STACKED_LAYERS", "StackedNet", "build_members", "count_params", "init_module"]
