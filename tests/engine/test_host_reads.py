"""No host synchronisation per training step: on a GPU every read of a device tensor's value by the
host (`.item()`, `bool(t)`, `.cpu()`, a boolean mask, ...) waits for the device. Counted here on the
CPU with a TorchFunctionMode: the reads of a fit of E epochs of S steps grow with E, never with S."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from dlstudies.engine import TrainSpec, batched, fixed_epochs, kernel
from dlstudies.engine.batched import fit_batched
from dlstudies.engine.evaluate import loss_accuracy_probe
from dlstudies.models.builders import build_members, mlp
from dlstudies.models.conv import cnn
from dlstudies.optim import OptSpec

# Calls that read a tensor's value on the host, or whose output size depends on values (a sync on a GPU).
READS = {"__bool__", "item", "__float__", "__int__", "__index__", "tolist", "numpy", "cpu", "nonzero", "argwhere",
         "masked_select", "unique", "equal", "allclose"}


def _to_host(func, args, kwargs) -> bool:
    if getattr(func, "__name__", "") != "to":
        return False
    wanted = [a for a in (*args[1:], kwargs.get("device")) if isinstance(a, (str, torch.device))]
    return any(torch.device(a).type == "cpu" for a in wanted)


def _masked(func, args) -> bool:
    if getattr(func, "__name__", "") not in ("__getitem__", "__setitem__"):
        return False
    index = args[1] if isinstance(args[1], tuple) else (args[1],)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in index)


class HostReads(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        if name in READS or _to_host(func, args, kwargs) or _masked(func, args):
            self.calls.append(name)
        return func(*args, **kwargs)


def _cnn_fit(epochs: int, steps: int):
    g = torch.Generator().manual_seed(0)
    n = 16 * steps
    x, y = torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)
    members = build_members(lambda: cnn((1, 8, 8), (2,), (6,), 3), [0, 1])
    spec = TrainSpec(fixed_epochs(epochs), 16, micro_batch=8, trace_epochs=epochs,
                     probes=(loss_accuracy_probe("train", x, y, "cross_entropy"),))
    return lambda: fit_batched(members, [OptSpec("adam", 0.01)] * 2, x, y, spec, [0, 1])


def _mlp_fit(epochs: int, steps: int, path: str = "fused", norm=None, batch: int = 8):
    g = torch.Generator().manual_seed(0)
    n = batch * steps
    x, y = torch.randn(n, 5, generator=g), torch.randint(0, 3, (n,), generator=g)
    members = build_members(lambda: mlp([5, 6, 3], norm=norm), [0, 1, 2])
    spec = TrainSpec(fixed_epochs(epochs), batch, trace_epochs=1, probes=(loss_accuracy_probe("train", x, y, "cross_entropy"),))
    return lambda: fit_batched(members, [OptSpec("nesterov", 0.01, 0.9)] * 3, x, y, spec, [0, 1, 2], path=path)


FITS = {"cnn autograd, micro-batches": _cnn_fit,
        "mlp fused, mini-batches": _mlp_fit,
        "mlp fused, pattern mode": lambda e, s: _mlp_fit(e, s, batch=1),
        "mlp batchnorm autograd": lambda e, s: _mlp_fit(e, s, path="autograd", norm=nn.BatchNorm1d)}


def _reads(make, epochs: int, steps: int) -> int:
    fit = make(epochs, steps)
    with HostReads() as mode:
        fit()
    return len(mode.calls)


@pytest.mark.parametrize("name", list(FITS))
def test_host_reads_grow_with_epochs_not_steps(name):
    make = FITS[name]
    base = _reads(make, 2, 3)
    assert _reads(make, 2, 12) == base  # four times the steps: not one read more
    per_epoch = (_reads(make, 4, 3) - base) / 2
    # Per epoch: the one read of the epoch's values (loss, probes), then book-keeping on host tensors,
    # which the counter cannot tell from device tensors on the CPU (it counts every such call).
    assert 0 < per_epoch <= 32, per_epoch


def test_the_counter_sees_a_read_per_step():
    """The counter itself: a loop with .item() per step is counted once per step."""
    with HostReads() as mode:
        t = torch.ones(3)
        for _ in range(5):
            (t * 2).sum().item()
            bool(t.any())
            t[t > 0] = 1.0
            t.to("cpu")
    assert len(mode.calls) == 20


def test_probe_inputs_move_to_the_device_once_per_fit():
    moves, seen = [], []
    x = torch.randn(10, 3)
    predict = batched._inputs_once(lambda inputs: seen.append(inputs.device) or inputs, "meta")
    real_to = torch.Tensor.to

    def counting_to(self, *args, **kwargs):
        moves.append(args)
        return real_to(self, *args, **kwargs)

    torch.Tensor.to = counting_to
    try:
        for _ in range(3):  # three epochs, each probing the set whole and in two chunks
            predict(x), predict(x[:5]), predict(x[5:])
    finally:
        torch.Tensor.to = real_to
    assert len(moves) == 3 and all(d.type == "meta" for d in seen) and len(seen) == 9


def test_pattern_mode_mlp_asked_for_on_a_gpu_trains_on_the_cpu_kernel(capsys):
    if kernel.library() is None:
        pytest.skip("no compiled kernel on this machine")
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, 5, generator=g), torch.randint(0, 3, (30,), generator=g)
    members = build_members(lambda: mlp([5, 6, 3]), [0, 1])
    fit = lambda device: fit_batched(members, [OptSpec("adam", 0.01)] * 2, x, y,  # noqa: E731
                                     TrainSpec(fixed_epochs(2), 1, device=device), [0, 1])
    on_gpu, on_cpu = fit("cuda"), fit("cpu")  # no GPU is needed: the fit never goes there
    assert on_gpu.path == "kernel-cpu" and on_cpu.path == "kernel"
    assert (on_gpu.history["loss"] == on_cpu.history["loss"]).all()
    assert "CPU's compiled kernel" in capsys.readouterr().err
