"""The optimizers study's model takes the fused engine path (it is most of the suite's time), and
image data reaches it flattened."""

import torch

from dlstudies.config import Runtime, apply_overrides
from dlstudies.engine.fused import why_not
from dlstudies.engine.schedule import StopRule
from dlstudies.engine.spec import TrainSpec
from dlstudies.models import StackedNet, build_members
from dlstudies.studies import STUDIES, load_studies
from dlstudies.studies.optimizers import _setup


def _net(overrides):
    load_studies()
    study = STUDIES.get("optimizers")
    cfg = apply_overrides(study.presets["smoke"], overrides)
    unit = study.work_units(cfg, (0, 1), Runtime())[0]
    data, dtype, builder = _setup(cfg, unit)
    return data, StackedNet(build_members(builder, [0, 1], dtype))


def test_feature_vectors_take_the_fused_path():
    data, net = _net([])
    assert why_not(net, data.train.x, data.train.y, TrainSpec(StopRule(1))) is None


def test_images_are_flattened_for_the_mlp():
    data, net = _net(["data=digits"])
    out = net.forward(data.train.x[:4].expand(2, *data.train.x[:4].shape))
    assert out.shape == (2, 4, 10) and torch.isfinite(out).all()
