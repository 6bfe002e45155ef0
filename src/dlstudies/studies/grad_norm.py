"""grad-norm: how does the gradient norm move while the training loss falls?

    dlstudies run grad-norm             # ~10 s at default scale on 2 cores

Report B recorded the loss and the Euclidean norm of the gradient during training and wrote that
"the gradient norm shows a decreasing trend, particularly in the initial epochs" and then
stabilises while the loss keeps falling. Here both are recorded at every iteration (the norm of
the mini-batch gradient of the batch-mean loss, over all parameters, before the update) for
several seeds, and beside them, once per epoch, the norm of the full-batch gradient (the whole
training set's loss, at that epoch's weights): a mini-batch gradient's norm has a floor set by
sampling noise, so only the full-batch norm can say whether training approaches a critical point. Report B trained on a 1-D function; this study uses a small image classifier
*(chosen)*: an MLP 64-32-10 with ReLU on the bundled 8x8 `digits`, Adam lr 1e-3, batch 32,
30 epochs at default (any dataset, width and optimizer can be set).

Literature: Goodfellow, Bengio & Courville (2016, "Deep Learning", section 8.2.1 and Figure 8.1)
show a network whose gradient norm does not shrink (it grows) throughout a training run that
succeeds: a small gradient is not what training success looks like, and the norm of a
mini-batch gradient stays away from zero anyway because of the sampling noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlstudies.analysis.claims import Claim, opening
from dlstudies.analysis.hessian import gradient_norms
from dlstudies.analysis.measures import effect_text, interval_text, value_text
from dlstudies.data import load_data
from dlstudies.data.base import subsample
from dlstudies.engine import LOSSES, TrainSpec, fixed_epochs
from dlstudies.models.builders import ACTIVATIONS, build_members
from dlstudies.optim import OPTIMIZERS, OptSpec
from dlstudies.report import figures as fig
from dlstudies.studies.base import Study, StudyConfig, register
from dlstudies.studies.results import all_runs, still_improving
from dlstudies.studies.training import divergence, fit_members, image_mlp, member_dtype, split_accuracy

METRICS = ("first_epoch_loss", "final_loss", "initial_full_grad_norm", "final_full_grad_norm", "full_grad_norm_peak_epoch",
           "final_minibatch_grad_norm", "gn_noise_ratio", "train_acc", "test_acc")
SOURCE_B = "report B, \"Optimization\" (gradient norm during training)"
SOURCE_GBC = "Goodfellow, Bengio & Courville 2016, section 8.2.1, Figure 8.1"


@dataclass(frozen=True)
class Config(StudyConfig):
    data: str = "digits"
    hidden: tuple[int, ...] = (32,)
    activation: str = "relu"
    optimizer: str = "adam"
    lr: float = 1e-3
    batch_size: int = 32
    epochs: int = 30
    n_train: int | None = None  # None: the whole training split
    seed_chunk: int = 10  # seeds per work unit, trained as one stack

    def validate(self):
        OPTIMIZERS.get(self.optimizer)
        ACTIVATIONS.get(self.activation)
        if self.epochs < 2:
            from dlstudies.errors import UsageError
            raise UsageError(f"epochs must be >= 2 (first and last epoch are compared), got {self.epochs}")


PRESETS = {"smoke": Config(epochs=3, n_train=200), "default": Config(),
           "paper": Config(data="fashion-mnist", epochs=100)}  # report B's scale: 28x28 images


def run_unit(unit) -> dict:
    cfg: Config = unit.config
    data = subsample(load_data(cfg.data, unit.runtime.data_dir), cfg.n_train)
    builder = image_mlp(data, cfg.hidden, ACTIVATIONS.get(cfg.activation))
    # trace_epochs = all epochs: every iteration's loss and gradient norm; a snapshot per epoch
    # (epoch 0 = the initial weights) gives the full-batch gradient norm there.
    spec = TrainSpec(fixed_epochs(cfg.epochs), cfg.batch_size, trace_epochs=cfg.epochs, snapshot_every=1,
                     device=unit.runtime.device)
    fit = fit_members(unit, builder, OptSpec(cfg.optimizer, cfg.lr), data.train.x, data.train.y, spec)
    template = build_members(builder, unit.seeds[:1], member_dtype(unit))[0]
    full = [gradient_norms(template, LOSSES.get(spec.loss).single, data.train.x, data.train.y, fit.snapshots[i])
            for i in range(len(unit.seeds))]
    acc = split_accuracy(fit.models, data)
    return {"runs": [_run(cfg, fit, acc, full[i], i, s) for i, s in enumerate(unit.seeds)]}


def _per_epoch(steps: np.ndarray, epochs: int) -> np.ndarray:
    """Mean of each epoch's iterations: per-iteration values are too noisy to compare directly."""
    return steps.reshape(epochs, -1).mean(1)


def _run(cfg: Config, fit, acc: dict, full: np.ndarray, i: int, seed: int) -> dict:
    loss, norm = fit.trace["loss"][i], fit.trace["grad_norm"][i]
    loss_ep, norm_ep = _per_epoch(loss, cfg.epochs), _per_epoch(norm, cfg.epochs)
    metrics = {"first_epoch_loss": loss_ep[0], "final_loss": loss_ep[-1], "initial_full_grad_norm": full[0],
               "final_full_grad_norm": full[-1], "full_grad_norm_peak_epoch": int(np.argmax(full)), "final_minibatch_grad_norm": norm_ep[-1],
               "gn_noise_ratio": norm_ep[-1] / full[-1],
               "train_acc": float(acc["train"][i]), "test_acc": float(acc["test"][i])}
    return {"condition": cfg.optimizer, "seed": seed, "metrics": metrics,
            "curves": {"loss": loss.tolist(), "grad_norm": norm.tolist(), "epoch_loss": loss_ep.tolist(),
                       "epoch_grad_norm": norm_ep.tolist(), "full_grad_norm": full.tolist()},
            "still_improving": still_improving(loss_ep), **divergence(fit, i)}


def summarize(cfg: Config, unit_results: list[dict], standard: dict) -> dict:
    runs = all_runs(standard["conditions"])
    return {"endpoints": _endpoints(runs), "steps_per_epoch": len(runs[0]["curves"]["loss"]) // cfg.epochs,
            "captions": CAPTIONS}


def _endpoints(runs: list[dict]) -> dict:
    """Per seed, the full-batch gradient norm at the initial weights and after the last epoch:
    the table the claims read (a `{condition: {"runs": [...]}}` of two "conditions")."""
    def table(key):
        return {"runs": [{"seed": r["seed"], "metrics": {"full_grad_norm": r["metrics"][key]}} for r in runs]}
    return {"end": table("final_full_grad_norm"), "start": table("initial_full_grad_norm")}


def claims(cfg: Config) -> list[Claim]:
    return [
        Claim("The gradient norm decreases during training, particularly in the initial epochs", SOURCE_B,
              "full_grad_norm", "directional", a="end", b="start", direction="lower", table="endpoints"),
        Claim("The gradient norm need not shrink while training succeeds: it can grow over the whole run",
              SOURCE_GBC, "full_grad_norm", "directional", a="end", b="start", direction="higher", table="endpoints"),
    ]


def answer(cfg: Config, results: dict) -> str:
    check = results["checks"][0]
    s = next(iter(results["conditions"].values()))["summary"]
    noise = s["gn_noise_ratio"]
    text = (f"{opening(check['verdict'])} the full-batch gradient norm ended at "
            f"{effect_text('full_grad_norm', check['effect'])} {interval_text('full_grad_norm', check['ci95'], True)} "
            f"of its initial value (geometric mean over {check['n']} seeds) while the loss fell from "
            f"{value_text('final_loss', s['first_epoch_loss']['value'])} to {value_text('final_loss', s['final_loss']['value'])}"
            f"; the mini-batch norm of the last epoch sat {value_text('gn_noise_ratio', noise['value'])}x above the "
            f"full-batch one {interval_text('gn_noise_ratio', noise['ci95'])}, a floor of sampling noise")
    return text + _still_improving(results) + "."


def _still_improving(results: dict) -> str:
    k = sum(c["still_improving"] for c in results["convergence"].values())
    n = sum(c["runs"] for c in results["convergence"].values())
    return f" ({k} of {n} runs were still improving at the budget)" if k else ""


def setup(cfg: Config) -> str:
    return (f"{cfg.data}, MLP {'-'.join(map(str, cfg.hidden))} {cfg.activation}, {cfg.optimizer} lr {cfg.lr:g}, "
            f"batch {cfg.batch_size}, {cfg.epochs} epochs")


CAPTIONS = {
    "loss_and_grad_norm.png": "Every iteration's mini-batch loss (top) and mini-batch gradient norm (bottom), mean "
                              "and band over seeds: the mini-batch norm stays noisy and bounded away from zero.",
    "combined.png": "Per epoch: mean training loss (left axis), mean mini-batch gradient norm and full-batch gradient "
                    "norm (right axis). Look at whether the full-batch norm falls with the loss.",
}


def figures(results: dict, folder) -> list[str]:
    runs = all_runs(results["conditions"])
    return _per_iteration(runs, folder) + _combined(runs, folder)


def _per_iteration(runs: list[dict], folder) -> list[str]:
    f, (top, bottom) = fig.new_figure(nrows=2, size=(8, 5.5))
    bottom.sharex(top)
    fig.curve_band(top, [r["curves"]["loss"] for r in runs], "loss", color=fig.color(3), xlabel="",
                   ylabel="mini-batch loss")
    fig.curve_band(bottom, [r["curves"]["grad_norm"] for r in runs], "gradient norm", color=fig.color(4),
                   xlabel="iteration", ylabel="gradient 2-norm")
    top.set_title(f"Every iteration, mean and band over {len(runs)} seeds")
    return fig.save(f, folder, "loss_and_grad_norm")


def _combined(runs: list[dict], folder) -> list[str]:
    # Report B's combined plot, per epoch: the two quantities on their own y axes.
    f, ax = fig.new_figure(size=(6.5, 4))
    right = ax.twinx()
    a = fig.curve_band(ax, [r["curves"]["epoch_loss"] for r in runs], "loss", color=fig.color(3), log_y=False,
                       ylabel="mean training loss (epoch)")
    b = fig.curve_band(right, [r["curves"]["epoch_grad_norm"] for r in runs], "mini-batch gradient norm",
                       color=fig.color(4), log_y=False, xlabel="epoch", ylabel="gradient 2-norm")
    full = [r["curves"]["full_grad_norm"][1:] for r in runs]  # after each epoch, as the epoch means
    c = fig.curve_band(right, full, "full-batch gradient norm", color=fig.color(5), log_y=False, xlabel="epoch",
                       ylabel="gradient 2-norm")
    ax.legend(handles=[a, b, c], loc="upper right")
    ax.set_title("Loss and gradient norm per epoch (mean and band over seeds)")
    return fig.save(f, folder, "combined")


STUDY = register(Study("grad-norm", "Does the gradient norm fall while the training loss falls?",
                       PRESETS, run_unit, summarize, figures, runtime_s="~15 s", metrics=METRICS, claims=claims,
                       answer=answer, setup=setup, seeds={"smoke": 3, "default": 10, "paper": 10}))
