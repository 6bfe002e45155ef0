"""The losses of the hand-fused path, one object per loss: each writes a step's loss and its gradient
with respect to the last layer's outputs, in pattern mode (values (C, m), member index innermost)
and in mini-batches (values (m, B, C))."""

from __future__ import annotations

import torch


class CrossEntropy:
    """Cross-entropy on logits (softmax inside, as F.cross_entropy): targets are class indices."""

    def batch_targets(self, y: torch.Tensor) -> torch.Tensor:
        return y.unsqueeze(-1)  # a class index as (1,), for gather and scatter

    def chunk(self, y: torch.Tensor, rows: torch.Tensor, C: int, kw: dict):
        """For steps `rows` (steps, m): (targets, outputs, context). targets[s] is d loss / d
        log-probabilities (minus the one-hot target); outputs[s] receives the log-probabilities."""
        picked = y[rows].unsqueeze(1)  # (steps, 1, m)
        outs = torch.empty(len(rows), C, rows.shape[1], **kw)
        return torch.zeros_like(outs).scatter_(1, picked, -1.0), outs, picked

    def step(self, z: torch.Tensor, out: torch.Tensor, target: torch.Tensor, grad: torch.Tensor) -> None:
        lsm = torch.log_softmax(z, 0, out=out)
        # d/dz of -log softmax(z)[y] = softmax(z) - onehot(y), as autograd computes it
        torch._log_softmax_backward_data(target, lsm, 0, z.dtype, out=grad)

    def losses(self, outs: torch.Tensor, picked: torch.Tensor, dest: torch.Tensor) -> None:
        torch.gather(outs, 1, picked, out=dest.unsqueeze(1)).neg_()

    def batch_step(self, z: torch.Tensor, yb: torch.Tensor, loss_out: torch.Tensor, g: torch.Tensor, ws) -> None:
        B = z.shape[1]
        lsm = torch.log_softmax(z, 2, out=ws.scratch)
        if B == 1:
            torch.gather(lsm, 2, yb, out=loss_out.view(-1, 1, 1))
        else:
            torch.mean(torch.gather(lsm, 2, yb, out=ws.picked), 1, out=loss_out.view(-1, 1))
        loss_out.neg_()
        # d/dz of the mean over the batch of -log softmax(z)[y]: (softmax(z) - onehot(y)) / B
        torch.exp(lsm, out=g)
        if B > 1:
            g.mul_(1.0 / B)
        g.scatter_add_(2, yb, ws.minus)


class SquaredError:
    """Mean squared error over the outputs (and the batch): targets are (N, C) values."""

    def batch_targets(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def chunk(self, y: torch.Tensor, rows: torch.Tensor, C: int, kw: dict):
        targets = y[rows].transpose(1, 2).contiguous()  # (steps, C, m)
        return targets, torch.empty_like(targets), None  # outputs receive the residuals

    def step(self, z: torch.Tensor, out: torch.Tensor, target: torch.Tensor, grad: torch.Tensor) -> None:
        torch.mul(torch.sub(z, target, out=out), 2.0 / z.shape[0], out=grad)  # d/dz mean((z - y)^2)

    def losses(self, outs: torch.Tensor, picked, dest: torch.Tensor) -> None:
        torch.mean(outs.square(), 1, out=dest)

    def batch_step(self, z: torch.Tensor, yb: torch.Tensor, loss_out: torch.Tensor, g: torch.Tensor, ws) -> None:
        diff = torch.sub(z, yb, out=ws.scratch)
        torch.mean(torch.mul(diff, diff, out=ws.square).flatten(1), 1, out=loss_out)
        torch.mul(diff, 2.0 / (z.shape[1] * z.shape[2]), out=g)


FUSED_LOSSES = {"cross_entropy": CrossEntropy(), "mse": SquaredError()}
