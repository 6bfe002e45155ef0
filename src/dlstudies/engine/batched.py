"""The batched engine: M members trained at once as one stack, each with its own sample order.

Three paths, one result: stacked MLPs (Linear + elementwise activations, cross-entropy or squared
error) take the compiled kernel of `kernel.py` on the CPU where a C++ compiler is found, else the
hand-fused path of `fused.py`; every other model takes the autograd path here.

What each path guarantees (tests hold them to it):
- "kernel": every member's numbers (losses, probes, traces, snapshots, trained weights) are a
  function of its seed, settings, dtype and machine alone, bitwise: the same alone, in any stack,
  and whoever else stops early. Evaluation of trained MLPs (`predict_members`) likewise.
- "fused" and "autograd": each member's numbers agree with the reference engine to rounding
  (float64: ~1e-15 per step), but the last bits depend on the stack (its size M, which members
  stopped), because torch's kernels change with the shapes they are given; under chaos
  (Adam, RMSProp in pattern mode) that difference grows to visible size within tens of epochs.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from typing import Sequence

import numpy as np
import torch
from torch import nn

from dlstudies.engine import fused, kernel
from dlstudies.engine.evaluate import PROBE_CHUNK
from dlstudies.engine.losses import LOSSES
from dlstudies.engine.record import EpochLog, FitResult, Keeper, Snapshots, modules_holding
from dlstudies.engine.schedule import fixed_epochs, member_order
from dlstudies.engine.spec import TrainSpec, batches, order_targets
from dlstudies.errors import UsageError
from dlstudies.models import conv
from dlstudies.models.stacked import StackedNet
from dlstudies.optim import OptSpec, StackedOptimizer

PATHS = ("auto", "kernel", "fused", "autograd")
# Samples per forward/backward of a CNN's convolutions within a large batch on the autograd path:
# measured (benchmarks/probes.py), a batch of 512 as 8 x 64 runs about 2x faster per step on one
# thread, its activations staying in the cache; 32-64 are the fastest of 16-512 (benchmarks/conv.py).
MICRO_BATCH = 64


def fit_batched(members: Sequence[nn.Module], opts: Sequence[OptSpec], x: torch.Tensor, y: torch.Tensor,
                spec: TrainSpec, seeds: Sequence[int], *, path: str = "auto") -> FitResult:
    """`path`: "auto" takes the compiled kernel (kernel.py) where it applies, else the hand-fused
    path (fused.py) where that applies, else autograd; "kernel" or "fused" insists on that path (a
    UsageError says why it does not apply); "autograd" takes neither. On a GPU the data go to the
    device once per fit and a step reads nothing back: the host reads each epoch's values once."""
    spec, moved = _kernel_stays_on_cpu(members, x, y, spec, path)
    x, y = x.to(spec.device, members[0].parameters().__next__().dtype), y.to(spec.device)
    net = StackedNet([_on(m, spec.device) for m in members])
    order = member_order(spec.order, order_targets(y, spec, net.M, len(x)), seeds)
    log, keeper = EpochLog(spec.stop, net.M), Keeper(spec, net.M)
    taken, fast = _fast_trainer(net, opts, x, y, spec, path)
    opt = StackedOptimizer(opts, net.flat) if taken != "kernel" else None
    fast = fast(opt) if callable(fast) else fast
    traces, snaps = [], Snapshots(spec.snapshot_every, spec.stop.max_epochs)
    snaps.after(0, net.flat)
    predict = fast.predict if taken == "kernel" else _inputs_once(lambda inputs: stacked_predict(net, inputs), spec.device)
    micro = micro_size(net, spec) if fast is None else 0
    taken = path_name(taken, micro, net, x) + ("-cpu" if moved else "")
    for epoch in range(spec.stop.max_epochs):
        if fast is not None:  # keeps stopped members frozen itself, and has no buffers to hold
            losses, trace = fast.epoch(order(epoch), epoch < spec.trace_epochs)
        else:
            held = _hold_stopped(net, log.active)
            losses, trace = _epoch(net, opt, x, y, order(epoch).to(spec.device), spec, epoch < spec.trace_epochs, micro)
            _put_back(net, held)
            trace = _stopped_as_nan(trace, log.active)
        traces += [trace] if trace is not None else []
        log.end_epoch(epoch, losses, _probe(predict, spec.probes))
        keeper.end_epoch(epoch, losses, lambda probes: _probe(predict, probes), log.active, net.member_state)
        if opt is not None and not log.active.all():  # log.active is on the host: no read of the device
            opt.set_active(log.active.to(spec.device))
        if fast is not None:
            fast.set_active(log.active)
        snaps.after(epoch + 1, net.flat)
        if not log.active.any():
            break
    holding = functools.partial(modules_holding, members=members, device=net.flat.device)
    kept = keeper.result(net.member_state, holding, taken)
    trained = holding([net.member_state(i) for i in range(net.M)])
    return log.result(_join(traces), trained, snaps.result(net.flat), taken, kept)


def _kernel_stays_on_cpu(members, x, y, spec: TrainSpec, path: str) -> tuple[TrainSpec, bool]:
    """(the spec to train with, whether it moved to the CPU). A pattern-mode MLP (one sample per step)
    asked for on a GPU trains on the CPU's compiled kernel instead: a GPU step is ~20 kernel launches
    for a few hundred multiply-adds, the kernel's 0.2-2 us per member. One line says so."""
    if torch.device(spec.device).type == "cpu" or spec.batch_size != 1 or path not in ("auto", "kernel"):
        return spec, False
    on_cpu = dataclasses.replace(spec, device="cpu")
    net = StackedNet([_on(m, "cpu") for m in members])
    if fused.why_not(net, x.cpu(), y.cpu(), on_cpu) or kernel.why_not(net, on_cpu) or kernel.library() is None:
        return spec, False
    kernel.say_once(f"pattern-mode MLP (batch size 1): trained on the CPU's compiled kernel, not {spec.device} "
                    "(faster there); engine path kernel-cpu")
    return on_cpu, True


def _inputs_once(predict, device: str):
    """`predict` that moves each input set to `device` once per fit: a probe passes the same tensors
    (or the same chunks of them) every epoch. Keyed by the memory an input views, which the key's
    entry keeps alive; on the CPU nothing moves."""
    if torch.device(device).type == "cpu":
        return predict
    moved: dict = {}

    def run(inputs: torch.Tensor) -> torch.Tensor:
        key = (inputs.data_ptr(), inputs.shape, inputs.stride(), inputs.dtype, inputs.device)
        if key not in moved:
            moved[key] = (inputs, inputs.to(device))
        return predict(moved[key][1])
    return run


def _on(member: nn.Module, device: str) -> nn.Module:
    """The member itself where it is on `device` already (StackedNet copies its parameters and
    never writes to it), else a copy moved there (Module.to moves in place)."""
    if all(p.device == torch.device(device) for p in member.parameters()):
        return member
    return copy.deepcopy(member).to(device)


def _fast_trainer(net: StackedNet, opts, x, y, spec: TrainSpec, path: str):
    """(the path taken, its trainer: None for autograd, or a function of the StackedOptimizer)."""
    if path not in PATHS:
        raise UsageError(f"path must be one of {', '.join(PATHS)}, got {path!r}")
    reason = fused.why_not(net, x, y, spec) if path != "autograd" else "path='autograd'"
    if path in ("kernel", "fused") and reason is not None:
        raise UsageError(f"the {path} path does not apply: {reason}")
    if reason is not None:
        return "autograd", None
    if path in ("auto", "kernel"):
        why = kernel.why_not(net, spec) or (None if kernel.library() else "no compiled kernel on this machine")
        if why is None:
            return "kernel", kernel.KernelTrainer(net, list(opts), x, y, spec)
        if path == "kernel":
            raise UsageError(f"the kernel path does not apply: {why}")
    return "fused", lambda opt: fused.FusedTrainer(net, opt, x, y, spec)


def path_name(taken: str, micro: int, net: StackedNet, x: torch.Tensor) -> str:
    """The path as results.json records it (engine_paths): its micro-batches, and how a CNN's first
    convolution (the one on the most pixels) convolves the inputs `x` ("autograd-micro64-membersconv"),
    since both change a member's last bits."""
    name = f"{taken}-micro{micro}" if micro else taken
    convolves = any(type(m).__name__ == "Conv2d" for m in net.template.modules())
    return f"{name}-{conv.conv_layout(net.flat.device, x.shape[-2:])}conv" if convolves else name


def _stopped_as_nan(trace: dict | None, active: torch.Tensor) -> dict | None:
    # As the fused path and the reference engine record it: a stopped member has no steps.
    if trace is None or bool(active.all()):
        return trace
    rows = active.to(next(iter(trace.values())).device).unsqueeze(1)
    return {k: torch.where(rows, v, torch.full_like(v, float("nan"))) for k, v in trace.items()}


def _hold_stopped(net: StackedNet, active: torch.Tensor):
    """Stopped members' buffers (BatchNorm running statistics), which a training-mode forward moves in
    place for the whole stack; put back after the epoch, a stopped member stays exactly where it stopped.
    `active` is on the host, so that asking whether any stopped reads nothing from the device."""
    if bool(active.all()) or not net.buffers:
        return None, {}
    rows = (~active).nonzero().flatten().to(net.flat.device)  # indices, not a mask: no device-side nonzero
    return rows, {k: v.index_select(0, rows) for k, v in net.buffers.items()}


def _put_back(net: StackedNet, held) -> None:
    rows, saved = held
    for k, v in saved.items():
        net.buffers[k].index_copy_(0, rows, v)


def _join(traces: list[dict]) -> dict[str, np.ndarray] | None:
    return {k: torch.cat([t[k] for t in traces], 1).cpu().numpy() for k in traces[0]} if traces else None


def micro_size(net: StackedNet, spec: TrainSpec) -> int:
    """Samples per forward/backward of the layers before the dense head (`_batch_grad`) within a
    batch; 0: the whole batch. Never with BatchNorm (its statistics are the whole batch's). Auto
    (`spec.micro_batch` None): MICRO_BATCH for CNNs on the CPU, whose activations outgrow the cache;
    MLPs and GPUs keep whole batches."""
    names = {type(m).__name__ for m in net.template.modules()}
    batch_norm = any(n.startswith("BatchNorm") for n in names)
    if spec.micro_batch and batch_norm:
        raise UsageError(f"micro_batch={spec.micro_batch}: not with BatchNorm in the model (its statistics are the batch's)")
    auto = MICRO_BATCH if "Conv2d" in names and torch.device(spec.device).type == "cpu" else 0  # a GPU has no such cache
    size = spec.micro_batch if spec.micro_batch is not None else auto
    return size if not batch_norm and 0 < size < spec.batch_size else 0


def _batch_grad(net: StackedNet, loss_fn, x, targets, rows, micro: int):
    """(each member's mean loss over the batch, the flat gradient of their sum: net's buffer, valid
    until the next step). With micro-batches the layers before the dense head (a CNN's convolutions)
    run on `micro` samples at a time, whose activations stay in the cache, and autograd sums their
    gradients over the micro-batches; the head runs on the whole batch, one matrix product per
    layer. Measured on the paper CNNs (benchmarks/conv.py), 1.05-1.2x faster than the whole network
    per micro-batch with the micro-batches' gradients summed, which computed the head's (M, P)-sized
    gradients once per micro-batch."""
    grad, k = net.zero_grad(), net.head_start
    if micro:
        parts = batches(rows.shape[1], micro)
        features = torch.cat([net.forward(x[rows[:, part]], True, slice(0, k)) for part in parts], 1)
        out = net.forward(features, True, slice(k, None))
    else:
        out = net.forward(x[rows], training=True)
    losses = loss_fn(out, targets(rows))
    net.accumulate_grad(losses.sum())
    return losses.detach(), grad


def target_rows(y: torch.Tensor, member_targets: bool):
    """rows (M, B) -> their (M, B, ...) targets: of shared targets y (n, ...), or with
    `member_targets` of each member's own row of y (M, n, ...)."""
    if not member_targets:
        return lambda rows: y[rows]
    members = torch.arange(len(y), device=y.device).unsqueeze(1)
    return lambda rows: y[members, rows]


def _epoch(net, opt, x, y, idx, spec: TrainSpec, tracing: bool, micro: int = 0):
    loss_fn = LOSSES.get(spec.loss).stacked
    total = torch.zeros(net.M, dtype=torch.float64, device=x.device)
    trace: dict[str, list] = {"loss": [], "grad_norm": []}
    targets = target_rows(y, spec.member_targets)
    for b in batches(idx.shape[1], spec.batch_size):
        step_losses, grad = _batch_grad(net, loss_fn, x, targets, idx[:, b], micro)
        opt.step(net.flat, grad)
        total += step_losses * (b.stop - b.start)
        if tracing:
            trace["loss"].append(step_losses.unsqueeze(1))
            trace["grad_norm"].append(grad.norm(dim=1, keepdim=True))
    return total / idx.shape[1], {k: torch.cat(v, 1) for k, v in trace.items()} if tracing else None


def _probe(predict, probes) -> dict[str, torch.Tensor]:
    return {k: v for probe in probes for k, v in probe(predict).items()}


@torch.no_grad()
def stacked_predict(net: StackedNet, x: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """Outputs of every member on the same inputs, in eval mode: (M, N, ...); `chunk` samples per
    forward (default: PROBE_CHUNK on the CPU, where small chunks stay in the cache, 4096 on a GPU)."""
    chunk = chunk or (PROBE_CHUNK if net.flat.device.type == "cpu" else 4096)
    x = x.to(net.flat.device, net.flat.dtype)
    outs = [net.forward(x[b].expand(net.M, *x[b].shape), training=False) for b in batches(len(x), chunk)]
    return torch.cat(outs, 1)


def predict_members(models: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """Stacked eval-mode outputs of trained plain members, whichever engine trained them: (M, N, ...).

    Each member's outputs do not depend on the others: MLPs run in the compiled kernel (members in
    lanes), other models one member at a time (a stack's batched kernels change with its size)."""
    net = StackedNet(list(models))
    device = next(models[0].parameters()).device
    if kernel.why_not(net, TrainSpec(fixed_epochs(1), device=str(device))) is None and \
            fused.architecture_reason(net) is None and x.dim() == 2 and kernel.library() is not None:
        return kernel.predict_stack(net, x).to(device)
    return torch.cat([stacked_predict(StackedNet([m]), x) for m in models])


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()
