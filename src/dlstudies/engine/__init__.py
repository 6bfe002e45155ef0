"""fit(): train a stack of members; two engines behind one signature."""

from dlstudies.engine.batched import fit_batched, predict_members
from dlstudies.engine.losses import LOSSES
from dlstudies.engine.record import FitResult
from dlstudies.engine.reference import fit_reference
from dlstudies.engine.schedule import ORDERS, StopRule, fixed_epochs
from dlstudies.engine.spec import TrainSpec
from dlstudies.registry import Registry

ENGINES: Registry = Registry("engine")
ENGINES.register("batched")(fit_batched)
ENGINES.register("reference")(fit_reference)

__all__ = ["ENGINES", "LOSSES", "ORDERS", "FitResult", "StopRule", "TrainSpec", "fit_batched", "fit_reference",
           "fixed_epochs", "predict_members"]
