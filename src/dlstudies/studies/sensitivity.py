"""sensitivity: do larger batches give sharper, more input-sensitive models that generalize worse? (B10)

    dlstudies run sensitivity            # ~3 min at default scale on 2 cores

Report B (part 2 of "flatness vs generalization") trained its CNN with batch sizes 32, 64, 128, 256
and 512 for 50 epochs and plotted train/test loss, accuracy and "sensitivity" against batch size.
Here every batch size starts from the same initial weights for a seed (paired design), and each
model gets
- sensitivity: the mean over the test set of ‖∂ℓ(f(x_i), y_i)/∂x_i‖_F, the input gradient of each
  sample's own loss (`dlstudies.analysis.sensitivity`). Taken from the gradient of the batch-mean
  loss instead, it falls like 1/(evaluation batch size); a sanity record recomputes it with another
  evaluation batching and requires the same values;
- the input-output Jacobian norm of the softmax (Novak et al. 2018);
- sharpness (Keskar et al. 2017, metric 2.1 with ε = 1e-3): the largest relative rise of the
  training loss in the box |δθ_i| ≤ ε(|θ_i| + 1), the largest over `sharpness_starts` projected
  ascents from random points of the box (`dlstudies.analysis.sharpness`), compared on a log scale.

The confound: at fixed epochs and lr, batch 512 takes 1/16 of batch 32's steps and ends at a far
higher training loss, and sharpness tracks that loss. So each batch size is trained in four arms,
each its own condition (`batch-64/equal-steps`):
- `equal-epochs`: `epochs` epochs at `lr` for every batch size (report B's design);
- `equal-steps`: every batch size takes the step count of the largest batch's `epochs` epochs (small
  batches train fewer epochs; whole epochs, so a batch size's count is within half an epoch of it);
- `linear-lr`: `epochs` epochs at the smallest batch's lr times B / B_min, capped at
  `max_lr_factor` (Goyal et al. 2017's linear scaling rule); diverged runs are counted;
- `matched-loss`: trained until the full-batch training loss is at most `target_loss`, or
  `max_steps` steps, or `max_epochs_factor` × `epochs` epochs where that is set (whichever comes
  first): the de-confounded reading, which the answer gives.
Identical recipes are trained once (linear-lr at B_min is equal-epochs there, as is equal-steps at
B_max). Matched-loss trains the seed, lr and sample order of equal-epochs until it stops: where its
epoch cap is at most `epochs` (`max_epochs_factor` 1, as at paper) it is not trained again but read
off the equal-epochs fit of its seeds, each model kept at the epoch its rule stops it
(`TrainSpec.keep`), and the full training loss is measured only until then. Claims are trends
within an arm: the per-seed Spearman correlation with batch size of test accuracy (falls), sharpness
(rises; Keskar et al. 2017) and the Jacobian norm (rises; Novak et al. 2018), and report B's claim
that its sensitivity falls.

Training (chosen, report B is silent): SGD with Nesterov momentum 0.9, the CNN of `interpolation`
(B9); at default the 8x8 `digits`, lr 0.05, 70 epochs; `target_loss` 0.02 chosen from pilot runs (4
seeds), in which batch 32 reaches it in about 14 epochs (~470 steps) and batch 512, after a plateau at
the initial loss, in about 97 (~290 steps): `max_steps` 600 leaves room for slower seeds. In the same
pilot the linear-lr arm's batch 512 (lr 0.4) stayed at the initial loss for 40 epochs. Sharpness is
measured on the first `sharpness_n` = 256 training samples at default and 2,000 at paper (the same
for every model; at paper 10,000 made the measures a fifth of the study's CPU time, 2,000 about a
twentieth).
At `paper` (pilot, one seed, Fashion-MNIST): batch 32 reached `target_loss` 0.2 in 6 epochs (10,128
steps), batch 512 in 34 (3,604 steps); `max_steps` 20000 leaves batch 32 twice its pilot's steps, and
`max_epochs_factor` 1 caps every batch size at report B's 50 epochs (batch 512: 1.5x its pilot's; the
20000 steps would be 190 epochs): matched-loss never trains longer than report B's arm, and a run
that stops short of the target is recorded as such (`converged`, and the answer's matching line).
At `paper` report B's own arm (equal-epochs) trains 10 seeds and the three added arms 3
(`added_seeds`; their claims then read "n too small"), in units of at most 5 seeds that train the
arms sharing those seeds (a seed's numbers do not depend on the stack it trains in).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from dlstudies.analysis import sensitivity as input_sensitivity
from dlstudies.analysis import sharpness
from dlstudies.analysis.claims import Claim, opening, sanity
from dlstudies.config import ints, reals, require
from dlstudies.engine import StopRule, TrainSpec
from dlstudies.engine.evaluate import loss_probe
from dlstudies.optim import OPTIMIZERS, OptSpec
from dlstudies.registry import Registry
from dlstudies.report import figures as fig
from dlstudies.config import Runtime
from dlstudies.studies.base import Study, StudyConfig, Unit, added_seeds_field, arm_seed_blocks, first_seeds, register
from dlstudies.studies.image_nets import NETS, check_net, load_split_data
from dlstudies.studies.results import main_table, paired_contrast, still_improving
from dlstudies.studies.training import divergence, fit_members, split_metrics

# The sharpness ascents start at random points of the box, from their own stream per seed.
SHARPNESS_STREAM = 4_000_037
# A second evaluation batching for the batch-independence sanity record (odd, so batches are
# ragged), on the first CHECK_SAMPLES test samples: cheap at paper scale too.
CHECK_BATCH, CHECK_SAMPLES = 7, 256
BATCH_INDEPENDENCE_RTOL = 1e-4
MEASURED = ("train_loss", "test_loss", "train_acc", "test_acc", "acc_gap", "sensitivity", "jacobian_norm", "sharpness")
METRICS = (*MEASURED, "lr", "epochs", "train_steps")
ARMS: Registry = Registry("batch-size arm")
MAIN_ARM = "matched-loss"  # the de-confounded reading the answer gives
REPORT_B_ARMS = ("equal-epochs",)  # report B's own design; the others are added here (`added_seeds`)
REPORT_B = "report B, Flatness v.s. Generalization, Part2"


@dataclass(frozen=True)
class Recipe:
    """How one batch size trains in one arm: lr, an epoch budget, and a full-batch loss to stop at."""

    lr: float
    epochs: int
    target: float | None = None


def steps_per_epoch(n: int, batch: int) -> int:
    return math.ceil(n / batch)


@ARMS.register("equal-epochs")
def _equal_epochs(cfg, batch: int, n: int) -> Recipe:
    return Recipe(cfg.lr, cfg.epochs)


@ARMS.register("equal-steps")
def _equal_steps(cfg, batch: int, n: int) -> Recipe:
    steps = cfg.epochs * steps_per_epoch(n, max(cfg.batch_sizes))
    return Recipe(cfg.lr, max(1, round(steps / steps_per_epoch(n, batch))))


@ARMS.register("linear-lr")
def _linear_lr(cfg, batch: int, n: int) -> Recipe:
    return Recipe(cfg.lr * min(batch / min(cfg.batch_sizes), cfg.max_lr_factor), cfg.epochs)


@ARMS.register("matched-loss")
def _matched_loss(cfg, batch: int, n: int) -> Recipe:
    epochs = math.ceil(cfg.max_steps / steps_per_epoch(n, batch))
    cap = epochs if cfg.max_epochs_factor is None else cfg.max_epochs_factor * cfg.epochs
    return Recipe(cfg.lr, min(epochs, cap), cfg.target_loss)


def _arms_rule(v) -> bool:
    return isinstance(v, str) and v in ARMS


@dataclass(frozen=True)
class Config(StudyConfig):
    data: str = "digits"
    model: str = "cnn"
    channels: tuple[int, ...] = (8, 32)
    hidden: tuple[int, ...] = (256, 128)
    norm: str = "none"
    batch_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)
    arms: tuple[str, ...] = field(default=("equal-epochs", "equal-steps", "linear-lr", "matched-loss"), metadata={
        "rule": (_arms_rule, "must all be arms: equal-epochs, equal-steps, linear-lr, matched-loss")})
    optimizer: str = "nesterov"
    lr: float = 0.05
    momentum: float = 0.9
    epochs: int = 70  # equal-epochs and linear-lr; equal-steps takes the largest batch's steps of it
    max_lr_factor: float = field(default=8.0, metadata={"rule": reals(1, 1e3)})
    target_loss: float = field(default=0.02, metadata={"rule": reals(0, 1e3, lo_open=True, hi_open=True)})
    max_steps: int = field(default=600, metadata={"rule": ints(1, 10**8)})
    # matched-loss trains at most this many times `epochs` epochs too (None: no cap but max_steps):
    # a whole multiple of `epochs`, so that a plan's slices cut it as exactly as they cut `epochs`.
    max_epochs_factor: int | None = field(default=None, metadata={"rule": ints(1, 1000)})
    epsilon: float = 1e-3  # Keskar et al.'s box size
    sharpness_steps: int = 10
    sharpness_starts: int = field(default=5, metadata={"rule": ints(1, 1000)})
    sharpness_n: int | None = None  # training samples the sharpness is measured on; None: all
    n_train: int | None = None
    n_test: int | None = None
    # Samples per batch of the sharpness ascent and the input gradients: bounds memory (one batch for
    # the default sharpness set); at 28x28 batches of 250 stay in the cache (measured on the paper CNN:
    # sharpness 1.4x, input sensitivity 1.4x faster than 1000; the values agree to float rounding).
    eval_batch: int = 1000
    seed_chunk: int = 10
    added_seeds: int | None = added_seeds_field()  # seeds of every arm but report B's equal-epochs

    def validate(self) -> None:
        check_net(self)
        OPTIMIZERS.get(self.optimizer)
        require(len(self.batch_sizes) >= 2 and all(b >= 1 for b in self.batch_sizes),
                "batch_sizes needs at least two sizes, each >= 1")
        require(len(set(self.batch_sizes)) == len(self.batch_sizes), "batch_sizes must differ")
        require(len(self.arms) >= 1 and len(set(self.arms)) == len(self.arms),
                f"arms must name at least one arm, each once; valid: {', '.join(ARMS)}")
        for arm in self.arms:
            ARMS.get(arm)
        require(self.lr > 0 and 0 <= self.momentum < 1, "need lr > 0 and momentum in [0, 1)")
        require(self.epochs >= 1 and self.sharpness_steps >= 1, "need epochs >= 1 and sharpness_steps >= 1")
        require(self.epsilon > 0 and self.eval_batch >= 1, "need epsilon > 0 and eval_batch >= 1")


PRESETS = {
    "smoke": Config(channels=(4, 8), hidden=(32, 16), batch_sizes=(16, 32, 64), epochs=2, max_steps=40,
                    target_loss=1.5, sharpness_steps=2, sharpness_starts=2, n_train=200, n_test=60),
    "default": Config(sharpness_steps=5, sharpness_n=256),
    "paper": Config(data="fashion-mnist", lr=0.01, epochs=50, max_steps=20000, max_epochs_factor=1, target_loss=0.2,
                    sharpness_n=2000, added_seeds=3, seed_chunk=5, eval_batch=250),
}


def condition(batch: int, arm: str) -> str:
    return f"batch-{batch}/{arm}"


def recipes(cfg: Config, batch: int, n: int, arms=None) -> dict[Recipe, list[str]]:
    """The distinct recipes of one batch size (of `arms`, default all), each with the arms it serves
    (trained once)."""
    out: dict[Recipe, list[str]] = {}
    for arm in cfg.arms if arms is None else arms:
        out.setdefault(ARMS.get(arm)(cfg, batch, n), []).append(arm)
    return out


def group(cfg: Config, arm: str) -> str:
    """The unit group an arm trains in. Matched-loss trains the same seed, lr and sample order as
    equal-epochs until it stops, so with an epoch cap of at most `epochs` (`max_epochs_factor` 1) it is
    read off the equal-epochs fit of its seeds (`TrainSpec.keep`) and trains in its units; otherwise
    it may train longer and runs in units of its own (smaller units keep two workers evenly busy)."""
    if arm != "matched-loss" or (cfg.max_epochs_factor == 1 and "equal-epochs" in cfg.arms):
        return "fixed-budget"
    return "matched-loss"


def arm_seeds(cfg: Config, arm: str, seeds) -> tuple[int, ...]:
    """The seeds an arm runs: all of them in report B's arm, the first `added_seeds` in the others."""
    return first_seeds(seeds, None if arm in REPORT_B_ARMS else cfg.added_seeds)


def units(cfg: Config, seeds: tuple[int, ...], runtime: Runtime) -> list[Unit]:
    """Per batch size (the largest first: they train longest) and arm group, each set of arms in
    blocks of the seeds they share; a unit trains its `arms` on its seeds."""
    out = []
    for b in sorted(cfg.batch_sizes, reverse=True):
        for g in dict.fromkeys(group(cfg, a) for a in cfg.arms):
            mine = {a: arm_seeds(cfg, a, seeds) for a in cfg.arms if group(cfg, a) == g}
            out += [Unit("sensitivity", cfg, block, runtime, (("batch_size", b), ("group", g), ("arms", arms)))
                    for arms, block in arm_seed_blocks(mine, cfg.seed_chunk)]
    return out


# ---- one unit: one batch size, one group of arms, a block of seeds ------------------------------

def run_unit(unit: Unit) -> dict:
    cfg: Config = unit.config
    batch = unit.param("batch_size")
    data = load_split_data(cfg, unit.runtime)
    device = unit.runtime.device
    sets = {"test": (data.test.x.to(device), data.test.y.to(device)),
            "train": tuple(t[:cfg.sharpness_n].to(device) for t in (data.train.x, data.train.y))}
    plan = recipes(cfg, batch, len(data.train.y), unit.param("arms"))
    fits = _fits(cfg, unit, data, batch, plan)
    runs, independence = [], None
    for recipe, arms in plan.items():
        fit = fits[recipe]
        own = split_metrics(fit.models, data)
        measured = [_measure(cfg, unit.seeds[i], m, sets, fit.diverged[i]) for i, m in enumerate(fit.models)]
        runs += [_run(arm, batch, recipe, (fit, own), i, seed, measured[i], len(data.train.y))
                 for arm in arms for i, seed in enumerate(unit.seeds)]
        independence = independence or _batch_independence(cfg, fit.models[0], sets["test"])
    return {"runs": runs, "batch_independence": independence}


def hosts(plan) -> dict[Recipe, Recipe]:
    """{target recipe: the fixed-budget recipe it is read off}: one at the same lr with at least its
    epochs trains the same steps up to the target recipe's stop (same seeds and sample order)."""
    fixed = [r for r in plan if r.target is None]
    out = {}
    for r in plan:
        host = next((h for h in fixed if r.target is not None and h.lr == r.lr and h.epochs >= r.epochs), None)
        if host is not None and host not in out.values():
            out[r] = host
    return out


def _fits(cfg: Config, unit: Unit, data, batch: int, plan) -> dict:
    """Each recipe's fit; a target recipe with a host is the host fit's `kept`, not trained again."""
    ridden = hosts(plan)
    riders = {host: r for r, host in ridden.items()}
    fits = {}
    for recipe in (r for r in plan if r not in ridden):
        fits[recipe] = _train(cfg, unit, data, batch, recipe, riders.get(recipe))
        if recipe in riders:
            fits[riders[recipe]] = fits[recipe].kept
    return fits


def _stop(recipe: Recipe) -> StopRule:
    return StopRule(recipe.epochs, target=recipe.target, watch="train_loss" if recipe.target else "loss")


def _train(cfg: Config, unit: Unit, data, batch: int, recipe: Recipe, rider: Recipe | None = None):
    """The fit of `recipe`; with `rider` (a target recipe) also where that one stops (`fit.kept`)."""
    probe = loss_probe("train_loss", data.train.x, data.train.y, "cross_entropy")
    keep = {"keep": _stop(rider), "keep_probes": (probe,)} if rider else {}
    spec = TrainSpec(_stop(recipe), batch, probes=(probe,) if recipe.target else (), device=unit.runtime.device, **keep)
    return fit_members(unit, NETS.get(cfg.model)(cfg, data), OptSpec(cfg.optimizer, recipe.lr, cfg.momentum),
                       data.train.x, data.train.y, spec)


def _measure(cfg: Config, seed: int, model, sets: dict, diverged: bool) -> dict:
    if diverged:  # broken weights measure nothing
        return dict.fromkeys(("sensitivity", "jacobian_norm", "sharpness"))
    sens = input_sensitivity(model, F.cross_entropy, *sets["test"], batch_size=cfg.eval_batch)
    gen = torch.Generator().manual_seed(SHARPNESS_STREAM + seed)
    sharp = sharpness(model, F.cross_entropy, *sets["train"], epsilon=cfg.epsilon, steps=cfg.sharpness_steps,
                      generator=gen, batch_size=cfg.eval_batch, starts=cfg.sharpness_starts)
    return {"sensitivity": sens.mean, "jacobian_norm": sens.jacobian_norm, "sharpness": sharp.value}


def _run(arm: str, batch: int, recipe: Recipe, trained, i: int, seed: int, measured: dict, n: int) -> dict:
    fit, own = trained
    own = {k: float(v[i]) for k, v in own.items()}
    epochs = int(fit.epochs[i])
    metrics = {**own, "acc_gap": own["train_acc"] - own["test_acc"], **measured}
    if fit.diverged[i]:
        metrics = dict.fromkeys(metrics)
    metrics.update(batch_size=batch, lr=recipe.lr, epochs=epochs, train_steps=epochs * steps_per_epoch(n, batch))
    curves = {k: fit.history[k][i, :epochs].tolist() for k in fit.history}
    run = {"condition": condition(batch, arm), "seed": seed, "arm": arm, "batch_size": batch, "metrics": metrics,
           "curves": curves, "still_improving": still_improving(curves["loss"]), **divergence(fit, i)}
    if recipe.target is not None:
        run["converged"] = bool(fit.converged[i])  # reached the target loss within its caps
    return run


def _batch_independence(cfg: Config, model, test) -> dict:
    """Sensitivity per sample must not depend on how the evaluation set is batched."""
    x, y = (t[:CHECK_SAMPLES] for t in test)
    a = input_sensitivity(model, F.cross_entropy, x, y, batch_size=cfg.eval_batch).per_sample
    b = input_sensitivity(model, F.cross_entropy, x, y, batch_size=CHECK_BATCH).per_sample
    return {"batch_sizes": [cfg.eval_batch, CHECK_BATCH], "max_abs_diff": float(np.max(np.abs(a - b))),
            "scale": float(np.max(np.abs(a)))}


# ---- claims, summary and answer ------------------------------------------------------------------

def arm_conditions(cfg: Config, arm: str) -> tuple[str, ...]:
    return tuple(condition(b, arm) for b in sorted(cfg.batch_sizes))


TREND_CLAIMS = (  # (metric, direction, claim, source)
    ("test_acc", "lower", "test accuracy falls as the batch size grows", "Keskar et al. 2017"),
    ("sharpness", "higher", "sharpness rises as the batch size grows", "Keskar et al. 2017"),
    ("jacobian_norm", "higher", "the input-output Jacobian norm rises as the batch size grows: large-batch "
     "training gives less robust functions", "Novak et al. 2018"),
)


def claims(cfg: Config) -> list[Claim]:
    out = [Claim(f"{arm}: {text}", source, metric, "trend", direction=direction, x="batch_size",
                 conditions=arm_conditions(cfg, arm))
           for arm in cfg.arms for metric, direction, text, source in TREND_CLAIMS]
    if "equal-epochs" in cfg.arms:  # report B's own design
        out.append(Claim("equal-epochs: the loss-gradient sensitivity falls as the batch size grows", REPORT_B,
                         "sensitivity", "trend", direction="lower", x="batch_size",
                         conditions=arm_conditions(cfg, "equal-epochs")))
    return out


def summarize(cfg: Config, unit_results: list[dict], standard: dict) -> dict:
    order = [c for arm in cfg.arms for c in arm_conditions(cfg, arm)]
    conditions = {c: standard["conditions"][c] for c in order}
    independence = [r["batch_independence"] for r in unit_results]
    small, large = min(cfg.batch_sizes), max(cfg.batch_sizes)
    contrasts = {arm: {m: paired_contrast(conditions, condition(large, arm), condition(small, arm), m)
                       for m in ("sharpness", "test_acc", "jacobian_norm", "train_loss")} for arm in cfg.arms}
    return {"conditions": conditions, "table": main_table(conditions, METRICS, "Per batch size and arm, over seeds"),
            "contrasts": contrasts, "batch_independence": independence,
            "sanity": _sanity(cfg, conditions, independence),
            "tables": [_contrast_table(contrasts, large, small)],
            "captions": {"training_loss.png": "The mean training loss per epoch, one panel per arm: equal-steps "
                                              "stops small batches after a few epochs, matched-loss stops each run at "
                                              "the target loss.",
                         "by_batch_size.png": "Each metric against batch size, one line per arm (geometric means for "
                                              "losses and sharpness, means for accuracies; 95% CIs over seeds). "
                                              "Compare the matched-loss line with equal-epochs: what remains at "
                                              "matched training loss is the batch size's own effect."}}


def _contrast_table(contrasts: dict, large: int, small: int) -> dict:
    metrics = ("sharpness", "test_acc", "jacobian_norm", "train_loss")
    rows = [[arm] + [c[m]["text"] for m in metrics] for arm, c in contrasts.items()]
    return {"title": f"batch-{large} against batch-{small} within each arm, paired by seed (ratio of geometric means "
                     "or difference, 95% CI)", "columns": ["arm", *metrics], "rows": rows}


def _sanity(cfg: Config, conditions: dict, independence: list[dict]) -> list[dict]:
    worst = max(d["max_abs_diff"] / (1 + d["scale"]) for d in independence)
    out = [sanity("sensitivity is per sample: another evaluation batching gives the same values",
                  worst <= BATCH_INDEPENDENCE_RTOL,
                  f"largest per-sample difference between evaluation batches of {independence[0]['batch_sizes']}: "
                  f"{max(d['max_abs_diff'] for d in independence):.2g} (tolerance {BATCH_INDEPENDENCE_RTOL:g}·(1 + value))")]
    if "equal-steps" in cfg.arms:
        out.append(_equal_steps_sanity(cfg, conditions))
    return out


def _equal_steps_sanity(cfg: Config, conditions: dict) -> dict:
    """Each batch size's steps are the largest batch's budget S to the nearest whole epoch (at least one)."""
    runs = [c["runs"][0] for c in (conditions[n] for n in arm_conditions(cfg, "equal-steps"))]
    target = runs[-1]["metrics"]["train_steps"]  # the largest batch's own epochs

    def ok(r):
        per_epoch = r["metrics"]["train_steps"] / r["metrics"]["epochs"]
        return abs(r["metrics"]["train_steps"] - target) <= per_epoch / 2 or r["metrics"]["epochs"] == 1
    steps = ", ".join(f"{r['batch_size']}: {r['metrics']['train_steps']}" for r in runs)
    return sanity("equal-steps: every batch size took the largest batch's step count to the nearest whole epoch",
                  all(ok(r) for r in runs), f"{target} steps asked; steps taken per batch size: {steps}")


def _verdicts(cfg: Config, results: dict, arm: str) -> dict:
    by_claim = dict(zip((c.claim for c in claims(cfg)), results["checks"]))
    return {metric: by_claim[f"{arm}: {text}"] for metric, _, text, _ in TREND_CLAIMS}


def answer(cfg: Config, results: dict) -> str:
    arm = MAIN_ARM if MAIN_ARM in cfg.arms else cfg.arms[0]
    checks = _verdicts(cfg, results, arm)
    verdicts = [c["verdict"] for c in checks.values()]
    verdict = ("supported" if all(v == "supported" for v in verdicts)
               else "contradicted" if "contradicted" in verdicts else "inconclusive")
    small, large = min(cfg.batch_sizes), max(cfg.batch_sizes)
    c = results["contrasts"][arm]
    trends = ", ".join(f"{m} {k['verdict']}" for m, k in checks.items())
    text = (f"{opening(verdict)} in the {arm} arm, batch-{large} against batch-{small}: sharpness "
            f"{c['sharpness']['text']}, Jacobian norm {c['jacobian_norm']['text']}, test accuracy "
            f"{c['test_acc']['text']} (trends: {trends})")
    return text + _reading(cfg, results, arm) + _caveats(cfg, results, arm) + "."


def _reading(cfg: Config, results: dict, arm: str) -> str:
    """The confounded arm beside the main one, and how well the losses were matched."""
    out = ""
    if arm == MAIN_ARM:
        runs = [r for name in arm_conditions(cfg, arm) for r in results["conditions"][name]["runs"]]
        out += (f"; at matched training loss (target {cfg.target_loss:g}, reached by "
                f"{sum(bool(r.get('converged')) for r in runs)} of {len(runs)} runs, train-loss ratio "
                f"{results['contrasts'][arm]['train_loss']['text']})")
    if "equal-epochs" in cfg.arms and arm != "equal-epochs":
        e = results["contrasts"]["equal-epochs"]
        out += (f"; at equal epochs, where batch-{max(cfg.batch_sizes)} also ends at a training loss "
                f"{e['train_loss']['text']} of batch-{min(cfg.batch_sizes)}'s, sharpness {e['sharpness']['text']}")
    return out


def _caveats(cfg: Config, results: dict, arm: str) -> str:
    # A run stopped at its target loss was meant to stop while improving: only the others count.
    runs = [r for c in arm_conditions(cfg, arm) for r in results["conditions"][c]["runs"]]
    improving = sum(bool(r.get("still_improving")) and not r.get("converged") for r in runs)
    diverged = sum(v["diverged"] for v in results["convergence"].values())
    out = f"; {improving} run(s) of the {arm} arm still improving at the end of their budget" if improving else ""
    out += f"; {diverged} run(s) diverged (counted, not measured)" if diverged else ""
    stalled = {name: k for name, c in results["conditions"].items() if (k := sum(map(_stalled, c["runs"])))}
    return out + (f"; runs that ended no lower than their first epoch's loss (did not train): "
                  f"{', '.join(f'{name} {k}' for name, k in stalled.items())}" if stalled else "")


def _stalled(run: dict) -> bool:
    final, first = run["metrics"].get("train_loss"), (run["curves"]["loss"] or [None])[0]
    return final is not None and first is not None and final >= first


def setup(cfg: Config) -> str:
    net = f"CNN conv{'-'.join(map(str, cfg.channels))} fc{'-'.join(map(str, cfg.hidden))}" if cfg.model == "cnn" \
        else f"MLP {'-'.join(map(str, cfg.hidden))} ({cfg.norm})"
    return (f"data {cfg.data}, {net}, {cfg.optimizer} lr {cfg.lr:g} momentum {cfg.momentum:g}, batch sizes "
            f"{', '.join(map(str, sorted(cfg.batch_sizes)))}; arms {', '.join(cfg.arms)} ({cfg.epochs} epochs; "
            f"lr ×B/B_min ≤ {cfg.max_lr_factor:g}x; target loss {cfg.target_loss:g} within {cfg.max_steps} steps{_epoch_cap(cfg)}); "
            f"sharpness ε {cfg.epsilon:g}, {cfg.sharpness_starts} starts × {cfg.sharpness_steps} steps")


def _epoch_cap(cfg: Config) -> str:
    if cfg.max_epochs_factor is None:
        return ""
    read_off = ", read off the equal-epochs fits" if group(cfg, "matched-loss") == "fixed-budget" else ""
    return f" and {cfg.max_epochs_factor * cfg.epochs} epochs{read_off}"


# ---- figures -----------------------------------------------------------------------------------

PANELS = (("test accuracy", "test_acc", "accuracy"),
          ("training loss (full batch)", "train_loss", "cross-entropy loss"),
          ("sharpness", "sharpness", "Keskar sharpness (%)"),
          ("Jacobian norm", "jacobian_norm", "mean ‖∂softmax/∂x‖_F (Novak et al.)"),
          ("sensitivity", "sensitivity", "mean ‖∂ℓ_i/∂x_i‖ over the test set"),
          ("generalization gap", "acc_gap", "train − test accuracy"))
LOG_PANELS = ("train_loss", "sharpness", "jacobian_norm", "sensitivity")  # positive, skewed: geometric means


def figures(results: dict, folder) -> list[str]:
    return _metric_figure(results, folder) + _training_figure(results, folder)


def _training_figure(results: dict, folder) -> list[str]:
    """One panel per arm: each batch size's mean training loss per epoch (band over seeds)."""
    conditions = results["conditions"]
    arms = list(dict.fromkeys(c["runs"][0]["arm"] for c in conditions.values()))
    f, axes = fig.panels(len(arms), panel=(4.4, 3.4), per_row=2)
    for ax, arm in zip(axes, arms):
        mine = {n: c for n, c in conditions.items() if c["runs"][0]["arm"] == arm}
        fig.condition_bands(ax, mine, "loss", label=lambda n: n.split("/")[0], ylabel="mean training loss in the epoch")
        ax.set_title(arm, fontsize=9)
        ax.legend(fontsize=7)
    fig.share_y(axes)  # the arms' losses compare at a glance
    f.suptitle("Training per arm and batch size (mean and 95% band over seeds)")
    return fig.save(f, folder, "training_loss")


def _bar(s: dict) -> dict:
    """A summary as an error bar: its statistic and interval (the mean of equal values can sit an ulp
    outside their interval, which matplotlib rejects as a negative error)."""
    v, (lo, hi) = s["value"], s["ci95"]
    if v is None or lo is None:
        return {"mean": v, "ci95": [None, None]}
    return {"mean": v, "ci95": [min(lo, v), max(hi, v)]}


def _metric_figure(results: dict, folder) -> list[str]:
    conditions = results["conditions"]
    arms = list(dict.fromkeys(r["arm"] for c in conditions.values() for r in c["runs"][:1]))
    f, axes = fig.new_figure(ncols=3, nrows=2, size=(13, 7))
    for ax, (title, metric, ylabel) in zip(axes, PANELS):
        for j, arm in enumerate(arms):
            mine = [c for c in conditions.values() if c["runs"][0]["arm"] == arm]
            x = [c["runs"][0]["batch_size"] for c in mine]
            summaries = [_bar(c["summary"][metric]) for c in mine]
            fig.errorbar_x(ax, x, summaries, label=arm, color=fig.color(j), log_x=True, xlabel="batch size",
                           ylabel=ylabel)
        if metric in LOG_PANELS and any(v > 0 for line in ax.get_lines() for v in line.get_ydata() if v == v):
            ax.set_yscale("log")
        ax.set_xticks(x, [str(b) for b in x])
        ax.minorticks_off()  # the log axis' own minor labels (3×10¹, ...) would overprint the batch sizes
        ax.set_title(title)
        ax.legend(fontsize=7)
    f.suptitle("Against batch size, per arm: statistic and 95% CI over seeds")
    return fig.save(f, folder, "by_batch_size")


STUDY = register(Study("sensitivity", "Do larger batches give sharper, more input-sensitive models that generalize "
                       "worse, also at matched training loss?", PRESETS, run_unit, summarize, figures,
                       runtime_s="~3 min", seeds={"smoke": 3, "default": 10, "paper": 10}, units=units,
                       metrics=METRICS, claims=claims, answer=answer, setup=setup))
