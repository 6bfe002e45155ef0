"""The image classifiers of the flatness studies (random-labels, interpolation, sensitivity) and how
they train: a network registry `NETS`, the validation of the network fields their Configs share
(model, channels, hidden, norm), and `train_stack`. Not a study (listed in NOT_STUDIES).
"""

from __future__ import annotations

from torch import nn

from dlstudies.config import Runtime, require
from dlstudies.data import load_data
from dlstudies.data.base import subsample
from dlstudies.engine import TrainSpec, fixed_epochs
from dlstudies.models.builders import NORMS
from dlstudies.models.conv import cnn
from dlstudies.optim import OptSpec
from dlstudies.registry import Registry
from dlstudies.studies.base import Unit
from dlstudies.studies.training import fit_members, image_mlp

NETS: Registry = Registry("network")


@NETS.register("cnn")
def _cnn(cfg, data):
    return lambda: cnn(data.input_shape, cfg.channels, cfg.hidden, data.n_classes)


@NETS.register("mlp")
def _mlp(cfg, data):
    return image_mlp(data, cfg.hidden, act=nn.ReLU, norm=NORMS.get(cfg.norm))


def check_net(cfg) -> None:
    """Validation of the network fields (model, channels, hidden, norm) every flatness Config has."""
    NETS.get(cfg.model)
    NORMS.get(cfg.norm)
    require(cfg.model == "mlp" or cfg.norm == "none", "norm applies to model=mlp only (conv layers here have no norm)")
    require(all(c >= 1 for c in (*cfg.channels, *cfg.hidden)), "channels and hidden must be >= 1")
    require(cfg.model != "cnn" or len(cfg.channels) >= 1, "model=cnn needs at least one channel count")


def load_split_data(cfg, runtime: Runtime):
    return subsample(load_data(cfg.data, runtime.data_dir), cfg.n_train, cfg.n_test)


def train_stack(cfg, unit: Unit, data, batch_size: int, init_seeds=None):
    """One stack of the unit's seeds at one batch size; init_seeds (default: the seeds) set the start."""
    spec = TrainSpec(fixed_epochs(cfg.epochs), batch_size, device=unit.runtime.device)
    return fit_members(unit, NETS.get(cfg.model)(cfg, data), OptSpec(cfg.optimizer, cfg.lr, cfg.momentum),
                       data.train.x, data.train.y, spec, init_seeds=init_seeds)
