"""The compiled path of the batched engine: stacked MLPs trained a whole epoch per C++ call.

`csrc/mlp_kernel.cpp` keeps members in SIMD lanes (block-major storage padded to the lane width),
fuses forward, backward and update, and masks stopped members in their lanes, so each member's
arithmetic is the same whatever else shares the stack: its numbers are a function of its seed,
settings, dtype and machine alone. It is built on first use through `torch.utils.cpp_extension`
(ninja) and cached under the user's cache folder, keyed by the source, the compiler and the CPU's
flags; concurrent builds (several workers) wait on a file lock. Without a compiler one line says
so and the fused path runs instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from dlstudies.engine.spec import TrainSpec
from dlstudies.errors import UsageError

try:
    import fcntl
except ImportError:  # not POSIX: no lock, concurrent first builds may each compile
    fcntl = None
from dlstudies.models.stacked import StackedNet
from dlstudies.optim import OPTIMIZERS, OptSpec, settings

SOURCE = Path(__file__).parent / "csrc" / "mlp_kernel.cpp"
CFLAGS = ["-O3", "-march=native", "-fno-math-errno", "-std=c++17"]
ACTS = {nn.Tanh: 1, nn.ReLU: 2, nn.Sigmoid: 3}
RULES = {name: OPTIMIZERS.get(name).kernel for name in OPTIMIZERS}  # rule -> number in the kernel
HYPER = ("lr", "momentum", "beta1", "beta2", "eps", "alpha")  # the kernel's order (enum Hyper)
LOSS_IDS = {"cross_entropy": 0, "mse": 1}
_V, _P = ctypes.c_void_p, ctypes.c_int64
_I = ctypes.c_int


def compiler() -> str | None:
    """The C++ compiler torch.utils.cpp_extension would use, or None."""
    return shutil.which(os.environ.get("CXX", "c++"))


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dlstudies" / "kernel"


def _cpu_flags() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    return platform.machine() + platform.processor()


def build_key(cxx: str) -> str:
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    parts = [SOURCE.read_bytes(), version.encode(), _cpu_flags().encode(), " ".join(CFLAGS).encode(),
             torch.__version__.encode()]
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]


_said: set[str] = set()


def say_once(line: str) -> None:
    if line not in _said:
        _said.add(line)
        print(f"dlstudies: {line}", file=sys.stderr)


@lru_cache(maxsize=1)
def _library_cached(cxx: str):
    key = build_key(cxx)
    where = cache_dir() / key
    where.mkdir(parents=True, exist_ok=True)
    name = f"dls_mlp_{key}"
    so = where / f"{name}.so"
    with open(where / "build.lock", "w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)  # a second worker waits here while the first compiles
        if not so.exists():
            _build(name, where)
    return _declare(ctypes.CDLL(str(so)))


def _build(name: str, where: Path) -> None:
    from torch.utils import cpp_extension

    if shutil.which("ninja") is None:
        with contextlib.suppress(ImportError):
            import ninja  # the pip package ships the binary
            os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
    cpp_extension.load(name, [str(SOURCE)], extra_cflags=CFLAGS, build_directory=str(where),
                       is_python_module=False, verbose=False)


def library():
    """The compiled kernel (built on first use), or None where it cannot be had (one line says why)."""
    cxx = compiler()
    if cxx is None:
        say_once("no C++ compiler found (set CXX or install g++): the MLP kernel is off, the fused path runs")
        return None
    try:
        return _library_cached(cxx)
    except Exception as err:  # noqa: BLE001 - any build failure means the fused path runs
        say_once(f"the MLP kernel did not build ({type(err).__name__}: {str(err).splitlines()[0][:120]}); "
                  "the fused path runs")
        return None


def _declare(lib):
    lib.dls_lanes.argtypes, lib.dls_lanes.restype = [_I], _I
    lib.dls_epoch.argtypes = [_I, _I, _V, _V, _V, _V, _I, _P, _V, _V, _V, _V, _P, _P, _I, _I, _P, _V, _V, _V, _V,
                              _V, _V, _V, _V, _V, _V]
    lib.dls_predict.argtypes = [_I, _I, _V, _V, _V, _V, _I, _P, _P, _V, _V, _P, _P, _V]
    return lib


def why_not(net: StackedNet, spec: TrainSpec) -> str | None:
    """None where the kernel can train this (fused-eligible) stack, else the reason it cannot."""
    if torch.device(spec.device).type != "cpu":
        return f"device {spec.device} (the kernel runs on the CPU)"
    if net.flat.dtype not in (torch.float32, torch.float64):
        return f"dtype {net.flat.dtype} (the kernel takes float32 and float64)"
    return None


class Layout:
    """An MLP's layers as the kernel reads them, and members' places in the lanes."""

    def __init__(self, net: StackedNet, groups: list[int]):
        self.pre, dims, weight, bias, acts = [], [], [], [], []
        for name, layer in net.template.named_children():
            if type(layer) is nn.Linear:
                dims.append(layer.in_features)
                weight.append(net.offsets[f"{name}.weight"])
                bias.append(net.offsets[f"{name}.bias"] if layer.bias is not None else -1)
                acts.append([])
            elif type(layer) in ACTS:
                (acts[-1] if acts else self.pre).append(layer)  # before the first Linear: applied to inputs
        dims.append(next(lay for lay in reversed(net.template) if type(lay) is nn.Linear).out_features)
        self.max_acts = max(1, *map(len, acts))
        self.n_layers, self.P, self.C = len(weight), net.P, dims[-1]
        self.dims = torch.tensor(dims, dtype=torch.int32)
        self.weight, self.bias = torch.tensor(weight), torch.tensor(bias)
        self.acts = torch.tensor([[ACTS[type(a)] for a in row] + [0] * (self.max_acts - len(row)) for row in acts],
                                 dtype=torch.int32)
        self.dtype = net.flat.dtype
        self.lib = library()  # looked up once: a fit calls it every epoch
        self.W = self.lib.dls_lanes(self.dtype.itemsize)
        self._place(groups)

    def _place(self, groups: list[int]) -> None:
        """Members of one group (update rule) fill blocks of their own, in order; the rest of a block pads."""
        slot, rules, at = [0] * len(groups), [], 0
        for g in sorted(set(groups)):
            mine = [j for j, k in enumerate(groups) if k == g]
            for k, j in enumerate(mine):
                slot[j] = at + k
            n_blocks = -(-len(mine) // self.W)
            rules += [g] * n_blocks
            at += n_blocks * self.W
        self.slot, self.rules, self.blocks = torch.tensor(slot), torch.tensor(rules, dtype=torch.int32), len(rules)

    def net_args(self) -> list:
        return [self.dtype.itemsize, self.n_layers, self.dims.data_ptr(), self.weight.data_ptr(),
                self.bias.data_ptr(), self.acts.data_ptr(), self.max_acts, self.P]

    def to_lanes(self, flat: torch.Tensor) -> torch.Tensor:
        rows = flat.new_zeros(self.blocks * self.W, flat.shape[1])
        rows[self.slot] = flat
        return rows.view(self.blocks, self.W, -1).transpose(1, 2).contiguous()  # (blocks, P, W)

    def from_lanes(self, store: torch.Tensor) -> torch.Tensor:
        return store.transpose(1, 2).reshape(self.blocks * self.W, -1)[self.slot]

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.dtype)
        for act in self.pre:  # the same for every member: torch computes it, once
            x = act(x)
        return x.contiguous()

    def predict(self, store: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Eval-mode outputs of every member on the same inputs, (M, N, C)."""
        x = self.inputs(x.cpu())
        out = torch.empty(self.blocks * self.W, len(x), self.C, dtype=self.dtype)
        self.lib.dls_predict(*self.net_args(), self.blocks, store.data_ptr(), x.data_ptr(), len(x), x.shape[1],
                              out.data_ptr())
        return out[self.slot]


class KernelTrainer:
    """Trains a StackedNet epoch by epoch in the kernel; the caller keeps the EpochLog."""

    def __init__(self, net: StackedNet, opts: list[OptSpec], x: torch.Tensor, y: torch.Tensor, spec: TrainSpec):
        self.net, self.spec = net, spec
        self.lay = lay = Layout(net, [RULES[o.name] for o in opts])
        self.store = lay.to_lanes(net.flat.detach().cpu())
        self.s0, self.s1 = torch.zeros_like(self.store), torch.zeros_like(self.store)
        self.powers = torch.ones(lay.blocks, 2, lay.W, dtype=torch.float64)  # Adam: beta1^t, beta2^t
        hyper = torch.zeros(lay.blocks * lay.W, len(HYPER), dtype=torch.float64)
        hyper[lay.slot] = torch.tensor([[settings(o)[k] for k in HYPER] for o in opts], dtype=torch.float64)
        self.hyper = hyper.view(lay.blocks, lay.W, -1).transpose(1, 2).contiguous()
        self.on = torch.zeros(lay.blocks * lay.W, dtype=torch.uint8)
        self.on[lay.slot] = 1
        self.x = lay.inputs(x.cpu())
        self.labels = y.cpu().long().contiguous() if spec.loss == "cross_entropy" else torch.zeros(1, dtype=torch.long)
        if len(self.labels) and not 0 <= int(self.labels.min()) <= int(self.labels.max()) < lay.C:
            raise UsageError(f"class labels must lie in 0..{lay.C - 1} (the model's outputs), got "
                             f"{int(self.labels.min())}..{int(self.labels.max())}")
        self.targets = y.cpu().to(lay.dtype).contiguous() if spec.loss == "mse" else self.x

    def epoch(self, order: torch.Tensor, tracing: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        """One epoch over each member's sample order (M, N): the (M,) mean loss, and when tracing
        {"loss", "grad_norm"} per step as (M, steps); members that stopped get NaN. The trained
        parameters are in `net.flat` when this returns."""
        lay, n = self.lay, order.shape[1]
        lanes = torch.zeros(lay.blocks * lay.W, n, dtype=torch.int64)
        lanes[lay.slot] = order.cpu()
        steps = -(-n // self.spec.batch_size)
        mean = torch.zeros(lay.blocks * lay.W, dtype=torch.float64)
        tl, tn = (torch.empty(steps if tracing else 0, lay.blocks * lay.W, dtype=lay.dtype) for _ in range(2))
        trace_ptrs = (tl.data_ptr(), tn.data_ptr()) if tracing else (None, None)
        data = [self.x.data_ptr(), self.labels.data_ptr(), self.targets.data_ptr(), lanes.data_ptr(), n,
                self.x.shape[1], LOSS_IDS[self.spec.loss], min(self.spec.batch_size, n)]
        stack = [lay.blocks, lay.rules.data_ptr(), self.store.data_ptr(), self.s0.data_ptr(), self.s1.data_ptr(),
                 self.powers.data_ptr(), self.hyper.data_ptr(), self.on.data_ptr()]
        lay.lib.dls_epoch(*lay.net_args(), *data, *stack, mean.data_ptr(), *trace_ptrs)
        self.net.flat.copy_(lay.from_lanes(self.store))
        active = self.on[lay.slot].bool()
        trace = {"loss": self._stopped_nan(tl.t()[lay.slot], active),
                 "grad_norm": self._stopped_nan(tn.t()[lay.slot], active)} if tracing else None
        return self._stopped_nan(mean[lay.slot], active), trace

    @staticmethod
    def _stopped_nan(values: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        rows = active.reshape(-1, *[1] * (values.dim() - 1))
        return torch.where(rows, values, torch.full_like(values, float("nan")))

    def set_active(self, active: torch.Tensor) -> None:
        """Stopped members stay in their lanes, masked: the others' arithmetic does not change."""
        self.on[self.lay.slot] = active.cpu().to(torch.uint8)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.lay.predict(self.store, x).to(self.spec.device)


def predict_stack(net: StackedNet, x: torch.Tensor) -> torch.Tensor:
    """Eval-mode outputs of a plain MLP stack computed in the kernel, (M, N, C)."""
    lay = Layout(net, [0] * net.M)
    return lay.predict(lay.to_lanes(net.flat.detach().cpu()), x)
