"""The reference engine: one plain nn.Module and one stock torch.optim optimizer per member, a
Python loop. Slow and obviously right; the batched engine is held to it in the tests."""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn

from dlstudies.engine.losses import LOSSES
from dlstudies.engine.record import EpochLog, FitResult, Keeper, Snapshots, modules_holding
from dlstudies.engine.schedule import member_order
from dlstudies.engine.spec import TrainSpec, batches, order_targets
from dlstudies.optim import OptSpec, torch_optimizer


def fit_reference(members: Sequence[nn.Module], opts: Sequence[OptSpec], x: torch.Tensor, y: torch.Tensor,
                  spec: TrainSpec, seeds: Sequence[int]) -> FitResult:
    order_targets(y, spec, len(members), len(x))  # checked once
    ys = y if spec.member_targets else [y] * len(members)
    parts = [_fit_one(m, o, x, ys[i], spec, s, i, len(members)) for i, (m, o, s) in enumerate(zip(members, opts, seeds))]
    result = FitResult.concat(parts)
    result.path = "reference"
    return result


def _fit_one(member: nn.Module, opt_spec: OptSpec, x, y, spec: TrainSpec, seed: int, i: int, M: int) -> FitResult:
    model = copy.deepcopy(member).to(spec.device)
    x, y = x.to(spec.device, next(model.parameters()).dtype), y.to(spec.device)
    opt = torch_optimizer(opt_spec, model.parameters())
    order = member_order(spec.order, y, [seed], rows=(i, M))  # member i's row of an explicit order
    log, keeper = EpochLog(spec.stop, 1), Keeper(spec, 1)
    state = lambda _: copy.deepcopy(model.state_dict())  # noqa: E731  (member 0 of this one-member fit)
    traces, snaps = [], Snapshots(spec.snapshot_every, spec.stop.max_epochs)
    snaps.after(0, _flat(model))
    for epoch in range(spec.stop.max_epochs):
        loss, trace = _epoch(model, opt, x, y, order(epoch)[0].to(spec.device), spec)
        traces += [trace] if epoch < spec.trace_epochs else []
        log.end_epoch(epoch, loss.reshape(1), _probe(model, spec.probes, spec, i, M))
        keeper.end_epoch(epoch, loss.reshape(1), lambda probes: _probe(model, probes, spec, i, M), log.active, state)
        snaps.after(epoch + 1, _flat(model))
        if not log.active.any():
            break
    trace = {k: torch.cat([t[k] for t in traces]).reshape(1, -1).numpy() for k in traces[0]} if traces else None
    kept = keeper.result(state, lambda states: modules_holding(states, [member], spec.device), "reference")
    return log.result(trace, [model.eval()], snaps.result(_flat(model)), kept=kept)


def _flat(model: nn.Module) -> torch.Tensor:
    """The parameters as one (1, P) row, in the order the batched engine stacks them."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).unsqueeze(0)


def _epoch(model: nn.Module, opt: torch.optim.Optimizer, x, y, idx, spec: TrainSpec):
    loss_fn = LOSSES.get(spec.loss).single
    model.train()
    losses, norms, total = [], [], 0.0
    for b in batches(len(idx), spec.batch_size):
        opt.zero_grad()
        loss = loss_fn(model(x[idx[b]]), y[idx[b]])
        loss.backward()
        norms.append(torch.cat([p.grad.flatten() for p in model.parameters()]).norm().cpu())
        opt.step()
        losses.append(loss.detach().to("cpu", torch.float64))
        total = total + losses[-1] * (b.stop - b.start)
    return total / len(idx), {"loss": torch.stack(losses), "grad_norm": torch.stack(norms).double()}


def _probe(model: nn.Module, probes, spec: TrainSpec, i: int, M: int) -> dict[str, torch.Tensor]:
    """Member i's probe values. With `member_targets` a probe may hold each member's own labels
    (M, N): it is shown member i's outputs in every one of M rows and its row i is kept."""
    model.eval()
    rows = M if spec.member_targets else 1

    @torch.no_grad()
    def predict(inputs: torch.Tensor) -> torch.Tensor:
        out = model(inputs.to(spec.device, next(model.parameters()).dtype))
        return out.expand(rows, *out.shape)

    values = {k: v for probe in probes for k, v in probe(predict).items()}
    return {k: v[i:i + 1] for k, v in values.items()} if spec.member_targets else values
