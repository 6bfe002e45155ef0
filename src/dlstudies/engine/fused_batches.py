"""The mini-batch layout of the hand-fused path: the stack stays (m, P), a Linear is a batched
matrix product (`baddbmm`) into preallocated buffers, one set of buffers per batch size."""

from __future__ import annotations

import torch

from dlstudies.engine.fused import CHUNK_BYTES, _Linear
from dlstudies.models.stacked import StackedNet
from dlstudies.optim import StackedOptimizer


class Batches:
    """Mini-batches: the stack stays (m, P); a layer is a batched matrix product."""

    def __init__(self, ops: list, net: StackedNet, opt: StackedOptimizer, x, y, loss):
        self.ops, self.x, self.loss = ops, x, loss
        self.y = loss.batch_targets(y)
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
            self.workspaces[B] = _BatchWorkspace(self.ops, self.store, self.grad, B, self.loss)
        return self.workspaces[B]


class _BatchLinear:
    """x W^T + b as a batched matrix product; backward, the weight gradient as another (the bias
    gradient, with one sample per step, is the output's gradient buffer itself) and g W."""

    def __init__(self, W, gW, b, gb, input_grad: bool, one: bool):
        self.W, self.Wt, self.gW, self.b, self.gb = W, W.transpose(1, 2), gW, b, gb
        self.input_grad, self.one = input_grad, one

    def forward(self, a, out) -> None:
        if self.b is None:
            torch.bmm(a, self.Wt, out=out)
        else:
            torch.baddbmm(self.b, a, self.Wt, out=out)

    def backward(self, a, y, g, g_in) -> None:
        if self.one:
            torch.mul(g.transpose(1, 2), a, out=self.gW)
        else:
            torch.bmm(g.transpose(1, 2), a, out=self.gW)
            if self.gb is not None:
                torch.sum(g, 1, out=self.gb)
        if self.input_grad:
            torch.bmm(g, self.W, out=g_in)


class _BatchAct:
    """An elementwise activation in place (over its Linear's output, which backward does not need)."""

    def __init__(self, act, inplace: bool):
        self.act, self.inplace = act, inplace

    def forward(self, a, out) -> None:
        if not self.inplace:
            out.copy_(a)
        getattr(out, self.act.inplace)()

    def backward(self, a, y, g, g_in) -> None:
        self.act.backward(g, y, g_in)


class _BatchWorkspace:
    """Views and buffers for one batch size: the forward values, the gradient of each, the loss."""

    def __init__(self, ops: list, flat: torch.Tensor, grad: torch.Tensor, B: int, loss):
        m, kw = flat.shape[0], {"dtype": flat.dtype, "device": flat.device}
        self.B, self.loss = B, loss
        self.first = next(k for k, op in enumerate(ops) if isinstance(op, _Linear))  # below it, no gradient
        self.layers = []
        self.values: list[torch.Tensor | None] = [None]  # values[k] is the input of op k; [0] is the batch
        self.grads: list[torch.Tensor | None] = [None]  # grads[k]: gradient of the loss w.r.t. values[k]
        width = ops[self.first].n_in
        for k, op in enumerate(ops):
            if isinstance(op, _Linear):
                width = op.n_out
                W, gW = (t[:, op.weight:op.weight + op.n_out * op.n_in].view(m, op.n_out, op.n_in) for t in (flat, grad))
                b = None if op.bias is None else flat[:, op.bias:op.bias + op.n_out].unsqueeze(1)
                gb = None if op.bias is None else grad[:, op.bias:op.bias + op.n_out]
                out = torch.empty(m, B, width, **kw)
                # With one sample per step the bias gradient is the output's gradient: it lives there.
                g_out = gb.unsqueeze(1) if (gb is not None and B == 1) else torch.empty(m, B, width, **kw)
                self.layers.append(_BatchLinear(W, gW, b, gb, k > self.first, B == 1))
            else:
                inplace = k > 0 and isinstance(ops[k - 1], _Linear)  # a Linear's output is not needed backward
                out = self.values[k] if inplace else torch.empty(m, B, width, **kw)
                g_out = torch.empty(m, B, width, **kw)
                self.layers.append(_BatchAct(op, inplace))
            self.values.append(out)
            self.grads.append(g_out)
        self.scratch = torch.empty(m, B, width, **kw)  # log-probabilities, or the residual
        self.square = torch.empty(m, B, width, **kw)
        self.picked = torch.empty(m, B, 1, **kw)
        self.minus = torch.full((m, B, 1), -1.0 / B, **kw)

    def step(self, xb: torch.Tensor, yb: torch.Tensor, loss_out: torch.Tensor) -> None:
        """Forward, loss (into loss_out, (m,)), backward (into the flat gradient)."""
        values, grads = self.values, self.grads
        values[0] = xb
        for k, layer in enumerate(self.layers):
            layer.forward(values[k], values[k + 1])
        self.loss.batch_step(values[-1], yb, loss_out, grads[-1], self)
        for k in range(len(self.layers) - 1, self.first - 1, -1):
            self.layers[k].backward(values[k], values[k + 1], grads[k + 1], grads[k])
