"""Book-keeping shared by both engines: who is still training, histories, and the fit's result."""

from __future__ import annotations

import contextlib
import copy
import time
from contextvars import ContextVar
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from dlstudies import progress
from dlstudies.engine.schedule import StopRule


@dataclass
class FitResult:
    """What one fit of M members produced; arrays have the member axis first."""

    epochs: np.ndarray  # epochs each member trained
    converged: np.ndarray  # stopped by the tolerance rule
    diverged: np.ndarray
    diverged_epoch: np.ndarray  # -1 where the member did not diverge
    history: dict[str, np.ndarray]  # name -> (M, epochs run); NaN after a member stopped
    trace: dict[str, np.ndarray] | None  # "loss", "grad_norm": (M, steps) per step of the traced epochs
    models: list[nn.Module] = field(default_factory=list)
    snapshots: np.ndarray | None = None  # (M, n, P) flat parameters at epochs 0, k, 2k, ... (TrainSpec.snapshot_every)
    path: str = ""  # the engine path that trained the members: "kernel", "fused", "autograd" or "reference"
    kept: "FitResult | None" = None  # the fit under TrainSpec.keep, read off this one (no trace, no snapshots)

    @staticmethod
    def concat(parts: list["FitResult"]) -> "FitResult":
        """Members fitted separately (reference engine) as one result."""
        cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
        return FitResult(
            cat("epochs"), cat("converged"), cat("diverged"), cat("diverged_epoch"),
            {k: _padded_cat([p.history[k] for p in parts]) for k in parts[0].history},
            None if parts[0].trace is None else {k: _padded_cat([p.trace[k] for p in parts]) for k in parts[0].trace},
            [m for p in parts for m in p.models],
            None if parts[0].snapshots is None else np.concatenate([p.snapshots for p in parts]),
            parts[0].path,
            None if parts[0].kept is None else FitResult.concat([p.kept for p in parts]),
        )

    def final(self, name: str = "loss") -> np.ndarray:
        """Each member's last recorded value of a history."""
        h = self.history[name]
        last = np.maximum(self.epochs - 1, 0)
        return h[np.arange(len(h)), last]


# What the fits run inside a collector report; context variables, so that threads (dask) and
# nested collectors each see only their own fits.
_TAKEN: ContextVar[list[str] | None] = ContextVar("engine_paths", default=None)
# CPU seconds per fit: how `dlstudies plan` tells the training (which grows with the epoch budget)
# from a unit's other work (measures on the trained models).
_FIT_SECONDS: ContextVar[list[float] | None] = ContextVar("fit_seconds", default=None)


@contextlib.contextmanager
def _collecting(var: ContextVar):
    collected: list = []
    token = var.set(collected)
    try:
        yield collected
    finally:
        var.reset(token)


def _note(var: ContextVar, value) -> None:
    collected = var.get()
    if collected is not None:
        collected.append(value)


def paths_taken():
    """Collects the `path` of every fit that `note_path` reports inside the block, in order."""
    return _collecting(_TAKEN)


def note_path(result: FitResult) -> FitResult:
    _note(_TAKEN, result.path)
    return result


def fit_seconds():
    """Collects the CPU seconds (`time.process_time`) of every fit the engines run inside the block."""
    return _collecting(_FIT_SECONDS)


@contextlib.contextmanager
def training_phase():
    """The CPU seconds of the block, noted as one fit's: every fit of the engines, and training that
    runs outside them (minimal-ratio's L-BFGS phase), which `dlstudies plan` must scale with its step
    budget as it scales the fits rather than take for measures that run once per trained model."""
    start = time.process_time()
    try:
        yield
    finally:
        _note(_FIT_SECONDS, time.process_time() - start)


def _padded_cat(arrays: list[np.ndarray]) -> np.ndarray:
    """Members' (1, steps, ...) records stacked; a member that stopped sooner is NaN after its end.
    A probe may record more than a number per epoch (a confusion matrix): only axis 1 is padded."""
    width = max(a.shape[1] for a in arrays)
    pad = lambda a: np.pad(a, [(0, 0), (0, width - a.shape[1])] + [(0, 0)] * (a.ndim - 2),  # noqa: E731
                           constant_values=np.nan)
    return np.concatenate([pad(a.astype(float)) for a in arrays])


def to_host(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The epoch's values (loss, probes) as float64 on the host, in one read of the device: each read
    waits for the device to finish, so they are gathered into one tensor first."""
    device = next(iter(values.values())).device
    flat = torch.cat([v.detach().to(device, torch.float64).reshape(-1) for v in values.values()]).cpu()
    parts = flat.split([v.numel() for v in values.values()])
    return {k: p.view(v.shape) for (k, v), p in zip(values.items(), parts)}


class EpochLog:
    """Tracks which members are active and records their epoch values; decides who stops."""

    def __init__(self, stop: StopRule, M: int, counted: bool = True):
        self.stop, self.counted = stop, counted  # counted: the progress bar counts its epochs
        self.active = torch.ones(M, dtype=torch.bool)
        self.previous = torch.full((M,), float("nan"), dtype=torch.float64)
        self.epochs = np.zeros(M, dtype=np.int64)
        self.converged = np.zeros(M, dtype=bool)
        self.diverged = np.zeros(M, dtype=bool)
        self.diverged_epoch = np.full(M, -1, dtype=np.int64)
        self.history: dict[str, list[np.ndarray]] = {}
        if counted:
            progress.planned(M * stop.max_epochs)

    def end_epoch(self, epoch: int, loss: torch.Tensor, probes: dict[str, torch.Tensor]) -> None:
        values = to_host({"loss": loss, **probes})
        loss = values["loss"]
        was = self.active.clone()
        self._record(values, was)
        self.epochs[was.numpy()] += 1
        bad = was & ~torch.isfinite(loss)
        done = was & ~bad & (self.stop.converged(self.previous, loss) | self.stop.reached(values))
        self.diverged |= bad.numpy()
        self.diverged_epoch[bad.numpy()] = epoch
        self.converged |= done.numpy()
        self.active &= ~(bad | done)
        self.previous = torch.where(was, loss, self.previous)
        # Members that stopped now give up the rest of their planned epochs: the bar counts them done.
        if self.counted:
            progress.trained(int(was.sum()), int((was & ~self.active).sum()) * (self.stop.max_epochs - epoch - 1))

    def _record(self, values: dict[str, torch.Tensor], was: torch.Tensor) -> None:
        for name, v in values.items():
            v = v.detach().to("cpu", torch.float64).numpy().copy()
            v[~was.numpy()] = np.nan
            self.history.setdefault(name, []).append(v)

    def result(self, trace: np.ndarray | None, models: list[nn.Module], snapshots: np.ndarray | None = None,
               path: str = "", kept: FitResult | None = None) -> FitResult:
        hist = {k: np.stack(v, 1) for k, v in self.history.items()}
        return FitResult(self.epochs, self.converged, self.diverged, self.diverged_epoch, hist, trace, models, snapshots,
                         path, kept)


def modules_holding(states, members, device) -> list[nn.Module]:
    """Copies of the members (on `device`, in eval mode) holding the given states, one per member."""
    out = []
    for state, m in zip(states, members):
        trained = copy.deepcopy(m).to(device)
        trained.load_state_dict(state)
        out.append(trained.eval())
    return out


class Keeper:
    """Where a second rule (`TrainSpec.keep`) would stop each member while the fit trains on under its
    own: the member's state at that epoch, and the history a fit under that rule records (its own
    EpochLog, fed the same epoch losses and the `keep_probes`). A member the fit itself stops first
    is kept where it stopped."""

    def __init__(self, spec, M: int):
        self.probes = spec.keep_probes
        self.log = EpochLog(spec.keep, M, counted=False) if spec.keep is not None else None
        self.states: list[dict | None] = [None] * M

    def end_epoch(self, epoch: int, loss: torch.Tensor, measure, training: torch.Tensor, state) -> None:
        """After the fit's own log took the epoch: `measure(probes)` -> their values now, `training` the
        members the fit still trains, `state(i)` member i's state (a copy) now."""
        if self.log is None or not bool(self.log.active.any()):
            return  # nobody open: the probes are not measured
        was = self.log.active.clone()
        self.log.end_epoch(epoch, loss, measure(self.probes))
        self.log.active &= training
        if epoch + 1 >= self.log.stop.max_epochs:
            self.log.active[:] = False
        for i in (was & ~self.log.active).nonzero().flatten().tolist():
            self.states[i] = state(i)

    def result(self, state, models, path: str) -> FitResult | None:
        """`models(states)` -> the modules holding them; members still open take their state now."""
        if self.log is None:
            return None
        states = [s if s is not None else state(i) for i, s in enumerate(self.states)]
        return self.log.result(None, models(states), None, path)


class Snapshots:
    """Every member's flat parameters (in `named_parameters` order) at epochs 0, k, 2k, ... <= max_epochs.

    A member that stopped early repeats its final parameters (where it stays frozen), so every fit of
    the same spec gives the same number of snapshots whichever engine ran it and whoever stopped.
    """

    def __init__(self, every: int, max_epochs: int):
        self.every, self.count = every, (max_epochs // every + 1 if every else 0)
        self.taken: list[torch.Tensor] = []

    def after(self, epochs_done: int, flat: torch.Tensor) -> None:
        """Called with the (M, P) parameters at the start and after every epoch."""
        if self.every and epochs_done % self.every == 0:
            self.taken.append(flat.detach().cpu().clone())

    def result(self, flat: torch.Tensor) -> np.ndarray | None:
        if not self.every:
            return None
        final = flat.detach().cpu().clone()
        return torch.stack(self.taken + [final] * (self.count - len(self.taken)), 1).numpy()
