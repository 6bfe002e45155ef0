"""The hand-fused path of the batched engine: stacked MLPs trained without an autograd graph.

For an `nn.Sequential` of `Linear` layers and elementwise activations (Tanh, ReLU, Sigmoid,
Identity) on cross-entropy or squared error, the forward and backward passes are written out on
stacked tensors, each kernel writing into a preallocated buffer (`out=`), the gradients straight
into one flat buffer laid out as the parameters are, and the optimizer then updates the whole
stack in place (fused kernels where they apply, see `dlstudies.optim`). A step is a fixed list of
about twenty kernel calls and allocates nothing.

Two layouts, chosen by the batch size:
- pattern mode (one sample per step): the stack is kept transposed, `(P, m)`, member index
  innermost, each Linear stored as `(out, in + 1, m)` with its bias as the weight of a constant
  input 1. A layer is then elementwise work vectorised across members: `W x + b` is one broadcast
  multiply and one sum over the input axis, the weight-and-bias gradient one outer product written
  in place, instead of M tiny matrix products (which CPU batched-GEMM kernels do one by one). The
  loss of each step is read off the stored log-probabilities once per chunk of steps.
- mini-batches: the stack stays `(m, P)` and layers are batched matrix products (`baddbmm`).

Each loss is one object (`fused_losses.py`); the mini-batch layout is in `fused_batches.py`.

Members that stop (converged or diverged) leave the working stack: their parameters are written
back to the full stack once and are never touched again, so a stopped member is exactly frozen and
costs nothing while the others go on. Every other model (norm layers, convolutions, other losses)
takes the autograd path of `batched.py`; tests hold both paths to the reference engine.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dlstudies.engine.fused_losses import FUSED_LOSSES
from dlstudies.engine.spec import TrainSpec, batches
from dlstudies.models.stacked import StackedNet
from dlstudies.optim import StackedOptimizer

# activation -> (backward from the activation's output, as autograd computes it)
_ACTIVATIONS = {
    nn.Tanh: ("tanh_", lambda g, y, out: torch.ops.aten.tanh_backward.grad_input(g, y, grad_input=out)),
    nn.Sigmoid: ("sigmoid_", lambda g, y, out: torch.ops.aten.sigmoid_backward.grad_input(g, y, grad_input=out)),
    nn.ReLU: ("relu_", lambda g, y, out: torch.ops.aten.threshold_backward.grad_input(g, y, 0, grad_input=out)),
}
_LOSSES = tuple(FUSED_LOSSES)
CHUNK_BYTES = 16 << 20  # inputs of an epoch are gathered per member in chunks of about this size


@dataclass(frozen=True)
class _Linear:
    weight: int  # offset of the weight in the flat parameter row
    bias: int | None
    n_in: int
    n_out: int


@dataclass(frozen=True)
class _Act:
    inplace: str  # name of the in-place tensor method
    backward: object


def why_not(net: StackedNet, x: torch.Tensor, y: torch.Tensor, spec: TrainSpec) -> str | None:
    """None where the fused path applies to this fit, else the reason it does not."""
    if spec.member_targets:
        return "targets of each member's own (member_targets)"
    reason = architecture_reason(net)
    if reason is not None:
        return reason
    if spec.loss not in _LOSSES:
        return f"loss {spec.loss!r} (fused: {', '.join(_LOSSES)})"
    if x.dim() != 2 or not x.is_floating_point():
        return f"inputs of shape {tuple(x.shape)}: the fused path takes (N, features)"
    n_out = [layer for layer in net.template if type(layer) is nn.Linear][-1].out_features
    if spec.loss == "cross_entropy" and (y.dim() != 1 or y.is_floating_point()):
        return "cross-entropy targets that are not one class index per sample"
    if spec.loss == "mse" and (y.dim() != 2 or y.shape[1] != n_out or y.dtype != x.dtype):
        return f"squared-error targets of shape {tuple(y.shape)} and dtype {y.dtype}: fused takes (N, {n_out}), {x.dtype}"
    return None


def architecture_reason(net: StackedNet) -> str | None:
    """None where the stack is a plain MLP (Linear and elementwise activations), else why not."""
    template = net.template
    if type(template) is not nn.Sequential:
        return f"the model is a {type(template).__name__}, not an nn.Sequential"
    kinds = [type(layer) for layer in template]
    unknown = sorted({k.__name__ for k in kinds if k not in (nn.Linear, nn.Identity, *_ACTIVATIONS)})
    if unknown:
        return f"layers other than Linear and elementwise activations: {', '.join(unknown)}"
    if nn.Linear not in kinds:
        return "no Linear layer"
    if net.buffers:
        return "the model has buffers"
    if not all(p.requires_grad for p in template.parameters()):
        return "a parameter with requires_grad=False"
    return None


class FusedTrainer:
    """Trains the active members of a StackedNet epoch by epoch; the caller keeps the EpochLog."""

    def __init__(self, net: StackedNet, opt: StackedOptimizer, x: torch.Tensor, y: torch.Tensor, spec: TrainSpec):
        from dlstudies.engine.fused_batches import Batches

        self.net, self.spec = net, spec
        self.rows = torch.arange(net.M)  # members still training, as rows of the full stack
        kind = _Pattern if spec.batch_size == 1 else Batches
        self.impl = kind(_compile(net), net, opt, x, y, FUSED_LOSSES[spec.loss])

    @torch.no_grad()
    def epoch(self, order: torch.Tensor, tracing: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        """One epoch over each member's sample order (M, N): the (M,) mean loss, and when tracing
        {"loss", "grad_norm"} per step as (M, steps). Members that stopped get NaN.

        The trained parameters are in `net.flat` when this returns.
        """
        idx = order[self.rows]
        spans = batches(idx.shape[1], self.spec.batch_size)
        losses, norms = self.impl.epoch(idx, spans, tracing)  # (steps, m)
        step_losses = losses.t()
        counts = torch.tensor([b.stop - b.start for b in spans], dtype=torch.float64, device=losses.device)
        mean = (step_losses.to(torch.float64) * counts).sum(1) / idx.shape[1]
        self.impl.write_back(self.net.flat, self.rows.to(self.net.flat.device))
        trace = {"loss": self._full(step_losses), "grad_norm": self._full(norms.t())} if tracing else None
        return self._full(mean), trace

    def set_active(self, active: torch.Tensor) -> None:
        """Drop the members that stopped from the working stack (their parameters are in net.flat)."""
        keep = active.cpu()[self.rows]
        if not bool(keep.all()):
            positions = keep.nonzero().flatten()
            self.rows = self.rows[positions]
            self.impl.keep(positions)

    def _full(self, values: torch.Tensor) -> torch.Tensor:
        out = torch.full((self.net.M, *values.shape[1:]), float("nan"), dtype=values.dtype, device=values.device)
        out[self.rows.to(values.device)] = values
        return out


def _compile(net: StackedNet) -> list:
    ops = []
    for name, layer in net.template.named_children():
        if type(layer) is nn.Linear:
            bias = net.offsets[f"{name}.bias"] if layer.bias is not None else None
            ops.append(_Linear(net.offsets[f"{name}.weight"], bias, layer.in_features, layer.out_features))
        elif type(layer) in _ACTIVATIONS:
            ops.append(_Act(*_ACTIVATIONS[type(layer)]))
        # Identity: nothing to do, forward or backward
    return ops


class _PatternLinear:
    """W [a, 1] in pattern mode: a broadcast multiply and a sum over the input axis; backward, the
    weight-and-bias gradient as one outer product written in place, and W^T g where it is needed."""

    def __init__(self, W, gW, hb: int, tmp, out, n_in: int, input_grad: bool):
        self.W, self.gW, self.hb, self.out, self.input_grad = W, gW, hb, out, input_grad
        o, m = W.shape[0], W.shape[2]
        self.fwd_tmp = tmp[:o * (n_in + hb) * m].view(o, n_in + hb, m)
        self.bwd_tmp = tmp[:o * n_in * m].view(o, n_in, m)
        self.W_in = W[:, :n_in]

    def forward(self, a) -> None:
        torch.sum(torch.mul(self.W, a if self.hb else a[:, :-1], out=self.fwd_tmp), 1, out=self.out)

    def backward(self, a, g_col, g, y, g_in) -> None:
        torch.mul(g_col, a if self.hb else a[:, :-1], out=self.gW)  # outer product g [a, 1]
        if self.input_grad:
            torch.sum(torch.mul(self.W_in, g_col, out=self.bwd_tmp), 0, out=g_in)  # W^T g


class _PatternAct:
    """An elementwise activation in place; after a Linear it overwrites that Linear's output (which
    backward does not need), else it writes a copy of its input first."""

    def __init__(self, act: "_Act", out, inplace: bool):
        self.act, self.out, self.inplace = act, out, inplace

    def forward(self, a) -> None:
        if not self.inplace:
            self.out.copy_(a[0, :-1])
        getattr(self.out, self.act.inplace)()

    def backward(self, a, g_col, g, y, g_in) -> None:
        self.act.backward(g, y, g_in)


class _Pattern:
    """One sample per step. The stack is transposed, (P, m), its rows reordered so that each Linear
    is a block (out, in + 1, m): weights, then the bias as the weight of a constant input 1. Values
    are (width, m) rows of buffers (width + 1, m) whose last row is that constant 1."""

    def __init__(self, ops: list, net: StackedNet, opt: StackedOptimizer, x, y, loss):
        self.ops, self.loss = ops, loss
        self.first = next(k for k, op in enumerate(ops) if isinstance(op, _Linear))  # below it, no gradient
        self.x = torch.cat([x, torch.ones_like(x[:, :1])], 1)  # the constant input of the first bias
        self.y = y
        perm = []
        for op in ops:
            if isinstance(op, _Linear):
                for o in range(op.n_out):
                    perm += range(op.weight + o * op.n_in, op.weight + (o + 1) * op.n_in)
                    perm += [op.bias + o] if op.bias is not None else []
        self.perm = torch.tensor(perm, device=net.flat.device)  # store row r is parameter perm[r]
        self._use(net.flat[:, self.perm].t().contiguous(), opt, torch.arange(net.M), self.perm)

    def _use(self, store: torch.Tensor, opt: StackedOptimizer, positions: torch.Tensor, columns=None) -> None:
        self.store, self.grad = store, torch.zeros_like(store)
        if len(opt.select(positions).groups) == 1:  # the optimizer steps the transposed stack directly
            self.opt = opt.select(positions, like=store.t(), columns=columns)
            self.opt_step = self.opt.bind(store.t(), self.grad.t())
        else:
            # Several rules: each steps a block of members, which in the transposed stack is a block
            # of columns, a poor layout for elementwise kernels. So the optimizer keeps its own
            # (m, P) copy, where each block is contiguous rows: the gradient is copied in and the
            # parameters out, two copies per step.
            params = store.t().contiguous()
            self.opt = opt.select(positions, like=params, columns=columns)
            self.opt_step = self._mirrored(self.opt.bind(params, grad := torch.zeros_like(params)), params, grad)
        self._buffers(store.shape[1], {"dtype": store.dtype, "device": store.device})

    def _mirrored(self, opt_step, params: torch.Tensor, grad: torch.Tensor):
        store_t, grad_t = self.store.t(), self.grad.t()

        def step() -> None:
            grad.copy_(grad_t)
            opt_step()
            store_t.copy_(params)
        return step

    def keep(self, positions: torch.Tensor) -> None:
        self._use(self.store.index_select(1, positions.to(self.store.device)), self.opt, positions)

    def write_back(self, flat: torch.Tensor, rows: torch.Tensor) -> None:
        flat.index_put_((rows.unsqueeze(1), self.perm.unsqueeze(0)), self.store.t())

    def _buffers(self, m: int, kw: dict) -> None:
        ops = self.ops
        big = max(op.n_out * (op.n_in + 1) for op in ops if isinstance(op, _Linear))
        tmp = torch.empty(big * m, **kw)  # products before the sum over an axis
        width, at = ops[self.first].n_in, 0
        values, rows, grads, cols = [None], [None], [None], [None]  # [k]: input of op k and its gradient
        self.layers = []
        for k, op in enumerate(ops):
            if isinstance(op, _Linear):
                o, i, hb = op.n_out, op.n_in, int(op.bias is not None)
                W, gW = (t[at:at + o * (i + hb)].view(o, i + hb, m) for t in (self.store, self.grad))
                at += o * (i + hb)
                buf = torch.ones(o + 1, m, **kw)
                self.layers.append(_PatternLinear(W, gW, hb, tmp, buf[:o], i, k > self.first))
                width = o
            else:
                inplace = k > 0 and isinstance(ops[k - 1], _Linear)  # a Linear's output is not needed backward
                buf = rows[k].squeeze(0) if inplace else torch.ones(width + 1, m, **kw)
                self.layers.append(_PatternAct(op, buf[:width], inplace))
            values.append(buf[:width])
            rows.append(buf.unsqueeze(0))  # (1, width + 1, m): broadcast over a Linear's outputs
            grads.append(torch.empty(width, m, **kw))
            cols.append(grads[-1].unsqueeze(1))  # (width, 1, m): broadcast over a Linear's inputs
        self.values, self.rows, self.grads, self.cols = values, rows, grads, cols

    def epoch(self, idx: torch.Tensor, spans: list, tracing: bool):
        m, n = idx.shape
        kw = {"dtype": self.store.dtype, "device": self.store.device}
        losses = torch.empty(n, m, **kw)
        norms = torch.empty(n, m, **kw) if tracing else None
        C = self.values[-1].shape[0]
        chunk = max(1, CHUNK_BYTES // (m * (self.x.shape[1] + 3 * C) * self.x.element_size()))
        for c in range(0, n, chunk):
            rows = idx[:, c:c + chunk].t().to(self.x.device)  # (steps, m)
            xs = self.x[rows].transpose(1, 2).unsqueeze(1).contiguous()  # (steps, 1, in + 1, m)
            targets, outs, context = self.loss.chunk(self.y, rows, C, kw)
            for s, (x, out, target) in enumerate(zip(xs.unbind(0), outs.unbind(0), targets.unbind(0)), c):
                self._step(x, out, target)
                if tracing:
                    torch.linalg.vector_norm(self.grad, dim=0, out=norms[s])
                self.opt_step()
            self.loss.losses(outs, context, losses[c:c + len(rows)])
        return losses, norms

    def _step(self, x: torch.Tensor, out: torch.Tensor, target: torch.Tensor) -> None:
        """x (1, in + 1, m); out (C, m) and target (C, m) as the loss object's chunk made them.
        Forward, loss gradient, backward into self.grad."""
        rows, a = self.rows, x  # the current value as a (1, width + 1, m) row
        for k, layer in enumerate(self.layers):
            layer.forward(a)
            a = rows[k + 1]
        self.loss.step(self.values[-1], out, target, self.grads[-1])
        for k in range(len(self.layers) - 1, self.first - 1, -1):
            self.layers[k].backward(x if k == 0 else rows[k], self.cols[k + 1], self.grads[k + 1],
                                    self.values[k + 1], self.grads[k])
