"""params-generalization: does a larger MLP generalize better, with the train-test gap unchanged? (B8)

    dlstudies run params-generalization  # ~30 s at default scale on 2 cores (10 seeds)

Report B trained ten MLPs in-h1-h2-10 with (h1, h2) from (7, 11) to (190, 26), Adam at lr 1e-4 for
8 epochs, and plotted train/test loss and accuracy against the number of parameters: loss fell and
accuracy rose with size, and "the gap between train loss and test loss remains consistent". Here
each width trains a stack of seeds (every width is its own architecture, so its own stack) and the
claims are judged per seed: test accuracy and test loss against the parameter count as trends
(per-seed Spearman ρ, its CI over seeds), and "the gap stays constant" as an equivalence: the
largest model's test − train loss minus the smallest one's lies within ±`gap_margin` nats (TOST).

The comparison is about capacity only if training has finished: every run records whether it is
`still_improving`, and the answer names the models that still were. The flag reads the held-out
(validation) loss: its best value so far fell by more than 1% over the last 10% of epochs
(`results.best_still_improving`: a mini-batch run's validation loss jitters by a few percent from
epoch to epoch, so two single epochs would decide it by noise). The training loss cannot
serve: on data a model separates, cross-entropy under Adam keeps falling by a constant factor per
epoch towards 0 (at 500 epochs every width here was still losing > 1% per 10% of epochs, from
0.02 down to 1e-4), while what the test measures stopped changing long before. Report B's 8 epochs at lr 1e-4 are far from that (at
default the smallest model then ends near loss 1.5), so `default` trains the 8x8 `digits` (all
1,077 training images) at lr 1e-3 for EPOCHS_DEFAULT epochs, chosen from pilot runs as long
enough for the training loss of every width to flatten; `paper` keeps report B's settings on
fashion-mnist, and its answer says which models were still improving.
Literature: Neyshabur, Tomioka & Srebro 2015 ("In search of the real inductive bias") saw test
error keep falling as hidden units were added, past the size that fits the training set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from dlstudies.analysis.claims import Claim, opening
from dlstudies.analysis.measures import effect_text, interval_text
from dlstudies.config import reals, require
from dlstudies.data import load_data
from dlstudies.data.base import subsample
from dlstudies.engine import TrainSpec, fixed_epochs
from dlstudies.engine.evaluate import loss_probe
from dlstudies.models.builders import ACTIVATIONS, count_params
from dlstudies.optim import OPTIMIZERS, OptSpec
from dlstudies.report import figures as fig
from dlstudies.studies.base import Study, StudyConfig, Unit, register
from dlstudies.studies.results import best_still_improving, main_table, still_improving_note
from dlstudies.studies.training import divergence, fit_members, image_mlp, split_metrics

H1 = (7, 28, 50, 70, 90, 110, 130, 150, 170, 190)
H2 = (11, 12, 12, 14, 16, 18, 20, 22, 24, 26)
# loss_gap_nats: test - train cross-entropy (a difference of losses, any sign, in nats);
# acc_gap: train - test accuracy (a difference of fractions, shown in percent points).
METRICS = ("train_loss", "test_loss", "train_acc", "test_acc", "loss_gap_nats", "acc_gap")
EPOCHS_DEFAULT = 250
ENDS = ("smallest", "largest")
SOURCE = "report B, Number of parameters v.s. Generalization"


@dataclass(frozen=True)
class Config(StudyConfig):
    data: str = "digits"
    h1: tuple[int, ...] = H1  # first hidden layer of each model
    h2: tuple[int, ...] = H2  # second hidden layer, paired with h1 by position
    activation: str = "relu"
    optimizer: str = "adam"
    lr: float = 1e-3
    epochs: int = EPOCHS_DEFAULT
    batch_size: int = 100
    n_train: int | None = None  # None: the whole training split
    n_test: int | None = None
    seed_chunk: int = 10
    # "The gap stays constant": the largest model's loss gap within this many nats of the smallest's.
    gap_margin: float = field(default=0.05, metadata={"rule": reals(0, 10, lo_open=True)})  # nats

    def validate(self) -> None:
        ACTIVATIONS.get(self.activation)
        OPTIMIZERS.get(self.optimizer)
        require(len(self.h1) == len(self.h2) >= 2, "h1 and h2 must pair up, with at least two models")
        require(len(set(zip(self.h1, self.h2))) == len(self.h1), "the (h1, h2) pairs must differ")


PRESETS = {
    "smoke": Config(h1=(7, 50, 190), h2=(11, 12, 26), epochs=2, n_train=200, n_test=100),
    "default": Config(),
    "paper": Config(data="fashion-mnist", lr=1e-4, epochs=8),
}


def grid(cfg: Config) -> list[tuple]:
    return [(("h1", a), ("h2", b)) for a, b in zip(cfg.h1, cfg.h2)]


def flat(data):
    """The images as feature vectors: a plain MLP on (N, features) takes the engine's fused path."""
    split = lambda s: None if s is None else replace(s, x=s.x.flatten(1))  # noqa: E731
    return replace(data, train=split(data.train), val=split(data.val), test=split(data.test))


def run_unit(unit: Unit) -> dict:
    cfg: Config = unit.config
    data = flat(subsample(load_data(cfg.data, unit.runtime.data_dir), cfg.n_train, cfg.n_test))
    h1, h2 = unit.param("h1"), unit.param("h2")
    held = data.val or data.test
    spec = TrainSpec(fixed_epochs(cfg.epochs), cfg.batch_size, device=unit.runtime.device,
                     probes=(loss_probe("val_loss", held.x, held.y, "cross_entropy"),))
    fit = fit_members(unit, image_mlp(data, (h1, h2), ACTIVATIONS.get(cfg.activation)), OptSpec(cfg.optimizer, cfg.lr),
                      data.train.x, data.train.y, spec)
    measured = _measure(fit.models, data)
    n_params = count_params(fit.models[0])
    sizes = [math.prod(data.input_shape), h1, h2, data.n_classes]
    return {"runs": [{"condition": f"{h1}-{h2}", "seed": s, "sizes": sizes,
                      "metrics": {"n_params": n_params, **{k: float(v[i]) for k, v in measured.items()}},
                      "curves": {k: fit.history[k][i].tolist() for k in ("loss", "val_loss")},
                      "still_improving": best_still_improving(fit.history["val_loss"][i]), **divergence(fit, i)}
                     for i, s in enumerate(unit.seeds)]}


def _measure(models, data) -> dict:
    out = split_metrics(models, data)
    out["loss_gap_nats"] = out["test_loss"] - out["train_loss"]
    out["acc_gap"] = out["train_acc"] - out["test_acc"]
    return out


# ---- summary -----------------------------------------------------------------------------------

def n_params(c: dict) -> int:
    return c["runs"][0]["metrics"]["n_params"]


def summarize(cfg: Config, unit_results: list[dict], standard: dict) -> dict:
    conditions = dict(sorted(standard["conditions"].items(), key=lambda kv: n_params(kv[1])))
    table = main_table(conditions, METRICS, "Per model (h1-h2, by parameter count), over seeds")
    # n_params is the same in every seed: a plain column, not a statistic with a CI.
    table["columns"].insert(1, "n_params")
    for row, c in zip(table["rows"], conditions.values()):
        row.insert(1, n_params(c))
    names = list(conditions)
    ends = {"smallest": {**conditions[names[0]], "model": names[0]},
            "largest": {**conditions[names[-1]], "model": names[-1]}}
    return {"conditions": conditions, "table": table, "ends": ends}


def claims(cfg: Config) -> list[Claim]:
    return [
        Claim("Test accuracy rises with the number of parameters", f"{SOURCE}; Neyshabur et al. 2015",
              "test_acc", "trend", x="n_params", direction="higher"),
        Claim("Test loss falls as the number of parameters grows", SOURCE, "test_loss", "trend", x="n_params",
              direction="lower"),
        Claim(f"The gap between test and train loss stays the same from the smallest to the largest model "
              f"(within ±{cfg.gap_margin:g} nats)", SOURCE, "loss_gap_nats", "equivalence", a="largest", b="smallest",
              margin=cfg.gap_margin, table="ends"),
    ]


def answer(cfg: Config, results: dict) -> str:
    acc, _, gap = results["checks"]
    ends = results["ends"]
    small, large = (ends[e]["summary"]["test_acc"] for e in ENDS)
    text = (f"{opening(acc['verdict'])} test accuracy went from {_acc(small)} ({ends['smallest']['model']}, "
            f"{n_params(ends['smallest'])} parameters) to {_acc(large)} ({ends['largest']['model']}, "
            f"{n_params(ends['largest'])}); per-seed Spearman ρ with the parameter count {_rho(acc)}. "
            f"The loss gap stays within ±{cfg.gap_margin:g} nats: {gap['verdict']} (largest − smallest "
            f"{effect_text('loss_gap_nats', gap['effect'])}, 90% CI {interval_text('loss_gap_nats', gap.get('ci90'), True)}). ")
    return text + still_improving_note(results["convergence"], "validation loss")


def _acc(s: dict) -> str:
    return f"{100 * s['value']:.1f}%" if s.get("value") is not None else "n/a"


def _rho(check: dict) -> str:
    lo, hi = check["ci95"]
    if check["effect"] is None or lo is None:
        return "n/a"
    return f"{check['effect']:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def setup(cfg: Config) -> str:
    return (f"data {cfg.data}; MLPs in-h1-h2-10 ({len(cfg.h1)} widths, {cfg.activation}); {cfg.optimizer} lr "
            f"{cfg.lr:g}, batch {cfg.batch_size}, {cfg.epochs} epochs")


# ---- figures -----------------------------------------------------------------------------------

PANELS = (("loss", ("train_loss", "test_loss"), "cross-entropy loss"),
          ("accuracy", ("train_acc", "test_acc"), "accuracy"),
          ("generalization gap (loss)", ("loss_gap_nats",), "test − train loss (nats)"),
          ("generalization gap (accuracy)", ("acc_gap",), "train − test accuracy"))


def point(s: dict) -> dict:
    """A summary as the figures draw it: the statistic its interval belongs to, with that interval
    (the statistic held inside it: a constant sample's mean can sit 1e-17 outside its [x, x])."""
    value, (lo, hi) = s.get("value"), s.get("ci95") or (None, None)
    if value is not None and lo is not None:
        value = min(max(value, lo), hi)
    return {**s, "mean": value}


def figures(results: dict, folder) -> list[str]:
    conditions = results["conditions"]
    x = [n_params(c) for c in conditions.values()]
    f, axes = fig.new_figure(ncols=2, nrows=2, size=(10, 7))
    for ax, (title, metrics, ylabel) in zip(axes, PANELS):
        for j, m in enumerate(metrics):
            fig.errorbar_x(ax, x, [point(c["summary"][m]) for c in conditions.values()], label=m, color=fig.color(j),
                           log_x=True, xlabel="number of parameters", ylabel=ylabel)
        ax.set_title(title)
        ax.legend(fontsize=8)
    f.suptitle("Against the number of parameters: statistic and 95% CI over seeds")
    return fig.save(f, folder, "by_params") + fig.training_loss_figure(conditions, folder, "Training per model (h1-h2)",
                                                                       fontsize=7, ncols=2)


STUDY = register(Study("params-generalization", "Does a larger MLP generalize better — higher test accuracy with more "
                       "parameters — while the train-test loss gap stays the same?",
                       PRESETS, run_unit, summarize, figures, runtime_s="~30 s", seeds={"smoke": 3, "default": 10, "paper": 10},
                       grid=grid, metrics=METRICS, claims=claims, answer=answer, setup=setup))
