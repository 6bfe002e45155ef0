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

Members that stop (converged or diverged) leave the working stack: their parameters are written
back to the full stack once and are never touched again, so a stopped member is exactly frozen and
costs nothing while the others go on. Every other model (norm layers, convolutions, other losses)
takes the autograd path of `batched.py`; tests hold both paths to the reference engine.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dlstudies.engine.spec import TrainSpec, batches
from dlstudies.models.stacked import StackedNet
from dlstudies.optim import StackedOptimizer

# activation -> (backward from the activation's output, as autograd computes it)
_ACTIVATIONS = {
    nn.Tanh: ("tanh_", lambda g, y, out: torch.ops.aten.tanh_backward.grad_input(g, y, grad_input=out)),
    nn.Sigmoid: ("sigmoid_", lambda g, y, out: torch.ops.aten.sigmoid_backward.grad_input(g, y, grad_input=out)),
    nn.ReLU: ("relu_", lambda g, y, out: torch.ops.aten.threshold_backward.grad_input(g, y, 0, grad_input=out)),
}
_LOSSES = ("cross_entropy", "mse")
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
        self.net, self.spec, self.ce = net, spec, spec.loss == "cross_entropy"
        self.rows = torch.arange(net.M)  # members still training, as rows of the full stack
        kind = _Pattern if spec.batch_size == 1 else _Batches
        self.impl = kind(_compile(net), net, opt, x, y, spec)

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
        if self.ce:
            step_losses = step_losses.neg()  # the buffer holds log-probabilities of the targets
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


class _Pattern:
    """One sample per step. The stack is transposed, (P, m), its rows reordered so that each Linear
    is a block (out, in + 1, m): weights, then the bias as the weight of a constant input 1. Values
    are (width, m) rows of buffers (width + 1, m) whose last row is that constant 1."""

    def __init__(self, ops: list, net: StackedNet, opt: StackedOptimizer, x, y, spec: TrainSpec):
        self.ops, self.ce = ops, spec.loss == "cross_entropy"
        self.first = next(k for k, op in enumerate(ops) if isinstance(op, _Linear))  # below it, no gradient
        self.n_in = ops[self.first].n_in
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
            # of columns, a poor layout for elementwise kernels (and none for the fused ones). So the
            # optimizer keeps its own (m, P) copy, where each block is contiguous rows: the gradient
            # is copied in and the parameters out, two copies per step.
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
        store, grad, ops = self.store, self.grad, self.ops
        big = max(op.n_out * (op.n_in + 1) for op in ops if isinstance(op, _Linear))
        tmp = torch.empty(big * m, **kw)  # products before the sum over an axis
        width, at = self.n_in, 0
        values, rows, grads, cols = [None], [None], [None], [None]  # [k]: input of op k and its gradient
        self.fwd, self.bwd = [], []
        for k, op in enumerate(ops):
            if isinstance(op, _Linear):
                o, i, hb = op.n_out, op.n_in, int(op.bias is not None)
                W = store[at:at + o * (i + hb)].view(o, i + hb, m)
                gW = grad[at:at + o * (i + hb)].view(o, i + hb, m)
                at += o * (i + hb)
                buf = torch.ones(o + 1, m, **kw)
                out = buf[:o]
                self.fwd.append((True, W, hb, tmp[:o * (i + hb) * m].view(o, i + hb, m), out))
                self.bwd.append((True, W[:, :i], gW, hb, tmp[:o * i * m].view(o, i, m), k > self.first))
                width = o
            else:
                inplace = k > 0 and isinstance(ops[k - 1], _Linear)  # a Linear's output is not needed backward
                buf = rows[k].squeeze(0) if inplace else torch.ones(width + 1, m, **kw)
                out = buf[:width]
                self.fwd.append((False, op.inplace, inplace, None, out))
                self.bwd.append((False, op.backward))
            values.append(out)
            rows.append(buf.unsqueeze(0))  # (1, width + 1, m): broadcast over a Linear's outputs
            grads.append(torch.empty(width, m, **kw))
            cols.append(grads[-1].unsqueeze(1))  # (width, 1, m): broadcast over a Linear's inputs
        self.values, self.rows, self.grads, self.cols = values, rows, grads, cols
        self.scale = 2.0 / width  # squared error: d/dz mean((z - y)^2)
        self.dtype = store.dtype

    def epoch(self, idx: torch.Tensor, spans: list, tracing: bool):
        m, n = idx.shape
        kw = {"dtype": self.store.dtype, "device": self.store.device}
        losses = torch.empty(n, m, **kw)
        norms = torch.empty(n, m, **kw) if tracing else None
        per_step = m * (self.x.shape[1] + 3 * self.values[-1].shape[0]) * self.x.element_size()
        chunk = max(1, CHUNK_BYTES // per_step)
        step, opt_step, grad = self._step, self.opt_step, self.grad
        for c in range(0, n, chunk):
            rows = idx[:, c:c + chunk].t().to(self.x.device)  # (steps, m)
            xs = self.x[rows].transpose(1, 2).unsqueeze(1).contiguous()  # (steps, 1, in + 1, m)
            if self.ce:
                y = self.y[rows].unsqueeze(1)  # (steps, 1, m)
                outs = torch.empty(len(rows), self.values[-1].shape[0], m, **kw)  # log-probabilities
                targets = torch.zeros_like(outs).scatter_(1, y, -1.0)  # d loss / d log-probabilities
            else:
                targets = self.y[rows].transpose(1, 2).contiguous()  # (steps, C, m)
                outs = torch.empty_like(targets)  # residuals
            for s, (x, out, target) in enumerate(zip(xs.unbind(0), outs.unbind(0), targets.unbind(0)), c):
                step(x, out, target)
                if tracing:
                    torch.linalg.vector_norm(grad, dim=0, out=norms[s])
                opt_step()
            if self.ce:
                torch.gather(outs, 1, y, out=losses[c:c + len(rows)].unsqueeze(1))
            else:
                torch.mean(outs.square(), 1, out=losses[c:c + len(rows)])
        return losses, norms

    def _step(self, x: torch.Tensor, out: torch.Tensor, target: torch.Tensor) -> None:
        """x (1, in + 1, m); out (C, m) receives the log-probabilities (or residuals); target (C, m):
        minus the one-hot target (or the target). Forward, loss gradient, backward into self.grad."""
        values, rows, grads, cols = self.values, self.rows, self.grads, self.cols
        a = x  # the current value as a (1, width + 1, m) row
        for k, (linear, f1, f2, tmp, y) in enumerate(self.fwd):
            if linear:  # W x + b, summed over the input axis
                torch.sum(torch.mul(f1, a if f2 else a[:, :-1], out=tmp), 1, out=y)
            else:
                if not f2:
                    y.copy_(a[0, :-1])
                getattr(y, f1)()
            a = rows[k + 1]
        if self.ce:
            lsm = torch.log_softmax(values[-1], 0, out=out)
            # d/dz of -log softmax(z)[y] = softmax(z) - onehot(y), as autograd computes it
            torch._log_softmax_backward_data(target, lsm, 0, self.dtype, out=grads[-1])
        else:
            torch.mul(torch.sub(values[-1], target, out=out), self.scale, out=grads[-1])
        for k in range(len(self.bwd) - 1, self.first - 1, -1):
            back = self.bwd[k]
            if back[0]:
                _, W, gW, hb, tmp, input_grad = back
                a = x if k == 0 else rows[k]
                torch.mul(cols[k + 1], a if hb else a[:, :-1], out=gW)  # outer product g [a, 1]
                if input_grad:
                    torch.sum(torch.mul(W, cols[k + 1], out=tmp), 0, out=grads[k])  # W^T g
            else:
                back[1](grads[k + 1], values[k + 1], grads[k])


class _Batches:
    """Mini-batches: the stack stays (m, P); a layer is a batched matrix product."""

    def __init__(self, ops: list, net: StackedNet, opt: StackedOptimizer, x, y, spec: TrainSpec):
        self.ops, self.x, self.ce = ops, x, spec.loss == "cross_entropy"
        self.y = y.unsqueeze(-1) if self.ce else y  # a class index as (1,), for gather and scatter
        self.store = net.flat  # the full stack itself, until a member stops
        self.grad, self.opt, self.workspaces = torch.zeros_like(self.store), opt, {}
        self.opt_step = opt.bind(self.store, self.grad)

    def keep(self, positions: torch.Tensor) -> None:
        self.store = self.store.index_select(0, positions.to(self.store.device))
        self.grad, self.workspaces = torch.zeros_like(self.store), {}
        self.opt = self.opt.select(positions, like=self.store)
        self.opt_step = self.opt.bind(self.store, self.grad)

    def write_back(self, flat: torch.Tensor, rows: torch.Tensor) -> None:
        if self.store is not flat:
            flat.index_copy_(0, rows, self.store)

    def epoch(self, idx: torch.Tensor, spans: list, tracing: bool):
        m, B = idx.shape[0], spans[0].stop - spans[0].start
        kw = {"dtype": self.store.dtype, "device": self.store.device}
        losses = torch.empty(len(spans), m, **kw)  # step-major: a step's row is contiguous
        norms = torch.empty(len(spans), m, **kw) if tracing else None
        chunk = max(1, CHUNK_BYTES // max(1, m * B * self.x.shape[1] * self.x.element_size()))
        for c in range(0, len(spans), chunk):
            lo, hi = spans[c].start, spans[min(c + chunk, len(spans)) - 1].stop
            rows = idx[:, lo:hi].to(self.x.device)
            xs, ys = self.x[rows], self.y[rows]  # (m, samples, ...)
            for s in range(c, min(c + chunk, len(spans))):
                b = spans[s]
                ws = self._workspace(b.stop - b.start)
                ws.step(xs[:, b.start - lo:b.stop - lo], ys[:, b.start - lo:b.stop - lo], losses[s])
                if tracing:
                    torch.linalg.vector_norm(self.grad, dim=1, out=norms[s])
                self.opt_step()
        return losses, norms

    def _workspace(self, B: int):
        if B not in self.workspaces:
            self.workspaces[B] = _BatchWorkspace(self.ops, self.store, self.grad, B, self.ce)
        return self.workspaces[B]


class _BatchWorkspace:
    """Views and buffers for one batch size: the forward values, the gradient of each, the loss."""

    def __init__(self, ops: list, flat: torch.Tensor, grad: torch.Tensor, B: int, ce: bool):
        m, kw = flat.shape[0], {"dtype": flat.dtype, "device": flat.device}
        self.B, self.ce = B, ce
        self.first = next(k for k, op in enumerate(ops) if isinstance(op, _Linear))  # below it, no gradient
        self.fwd, self.bwd = [], []
        self.values: list[torch.Tensor | None] = [None]  # values[k] is the input of op k; [0] is the batch
        self.grads: list[torch.Tensor | None] = [None]  # grads[k]: gradient of the loss w.r.t. values[k]
        width = ops[self.first].n_in
        for k, op in enumerate(ops):
            if isinstance(op, _Linear):
                width = op.n_out
                W = flat[:, op.weight:op.weight + op.n_out * op.n_in].view(m, op.n_out, op.n_in)
                gW = grad[:, op.weight:op.weight + op.n_out * op.n_in].view(m, op.n_out, op.n_in)
                b = None if op.bias is None else flat[:, op.bias:op.bias + op.n_out].unsqueeze(1)
                gb = None if op.bias is None else grad[:, op.bias:op.bias + op.n_out]
                out = torch.empty(m, B, width, **kw)
                # With one sample per step the bias gradient is the output's gradient: it lives there.
                g_out = gb.unsqueeze(1) if (gb is not None and B == 1) else torch.empty(m, B, width, **kw)
                self.fwd.append((True, W.transpose(1, 2), b, out))
                self.bwd.append((True, W, gW, gb, k > self.first))
            else:
                inplace = k > 0 and isinstance(ops[k - 1], _Linear)  # a Linear's output is not needed backward
                out = self.values[k] if inplace else torch.empty(m, B, width, **kw)
                g_out = torch.empty(m, B, width, **kw)
                self.fwd.append((False, op.inplace, inplace, out))
                self.bwd.append((False, op.backward))
            self.values.append(out)
            self.grads.append(g_out)
        self.scratch = torch.empty(m, B, width, **kw)  # log-probabilities, or the residual
        self.square = torch.empty(m, B, width, **kw)
        self.picked = torch.empty(m, B, 1, **kw)
        self.minus = torch.full((m, B, 1), -1.0 / B, **kw)
        self.scale = 2.0 / (B * width)

    def step(self, xb: torch.Tensor, yb: torch.Tensor, loss_out: torch.Tensor) -> None:
        """Forward, loss (into loss_out, (m,)), backward (into the flat gradient)."""
        values, grads = self.values, self.grads
        values[0] = a = xb
        for linear, f1, f2, out in self.fwd:
            if linear:
                if f2 is None:
                    torch.bmm(a, f1, out=out)
                else:
                    torch.baddbmm(f2, a, f1, out=out)
            else:
                if not f2:
                    out.copy_(a)
                getattr(out, f1)()
            a = out
        self._loss(a, yb, loss_out, grads[-1])
        one = self.B == 1
        for k in range(len(self.bwd) - 1, self.first - 1, -1):
            g, back = grads[k + 1], self.bwd[k]
            if back[0]:
                _, W, gW, gb, input_grad = back
                if one:
                    torch.mul(g.transpose(1, 2), values[k], out=gW)
                else:
                    torch.bmm(g.transpose(1, 2), values[k], out=gW)
                    if gb is not None:
                        torch.sum(g, 1, out=gb)
                if input_grad:
                    torch.bmm(g, W, out=grads[k])
            else:
                back[1](g, values[k + 1], grads[k])

    def _loss(self, z: torch.Tensor, yb: torch.Tensor, loss_out: torch.Tensor, g: torch.Tensor) -> None:
        B = self.B
        if self.ce:
            lsm = torch.log_softmax(z, 2, out=self.scratch)
            if B == 1:
                torch.gather(lsm, 2, yb, out=loss_out.view(-1, 1, 1))
            else:
                torch.mean(torch.gather(lsm, 2, yb, out=self.picked), 1, out=loss_out.view(-1, 1))
            # d/dz of the mean over the batch of -log softmax(z)[y]: (softmax(z) - onehot(y)) / B
            torch.exp(lsm, out=g)
            if B > 1:
                g.mul_(1.0 / B)
            g.scatter_add_(2, yb, self.minus)
        else:
            diff = torch.sub(z, yb, out=self.scratch)
            torch.mean(torch.mul(diff, diff, out=self.square).flatten(1), 1, out=loss_out)
            torch.mul(diff, self.scale, out=g)
