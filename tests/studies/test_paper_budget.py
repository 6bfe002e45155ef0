"""What makes the CNN studies fit a night at `paper`: report B's arms at 10 seeds and the added ones at
3 (claims on those say "n too small", not an error), units that depend on the config alone, sparse
probes that give the dense run's numbers where they probe, and fitting epochs read between probes."""

from dataclasses import replace

import numpy as np
import pytest
import torch.nn.functional as F

from dlstudies.analysis import interpolation_curve
from dlstudies.config import Runtime
from dlstudies.engine import TrainSpec, fixed_epochs
from dlstudies.engine.evaluate import accuracy_probe, loss_probe
from dlstudies.models.builders import build_members
from dlstudies.studies import interpolation as ip
from dlstudies.studies import random_labels as rl
from dlstudies.studies import sensitivity as sv
from dlstudies.studies.base import Unit, arm_seed_blocks
from dlstudies.studies.image_nets import NETS, load_split_data
from dlstudies.studies.results import summarize_study
from dlstudies.studies.training import fit_members

PAPER_SEEDS = tuple(range(10))
RUNTIMES = (Runtime(), Runtime(engine="reference", device="cuda", dtype="float64", data_dir="/elsewhere"))


def seeds_per_arm(units, arms_of) -> dict:
    out: dict = {}
    for u in units:
        for arm in arms_of(u):
            out.setdefault(arm, []).extend(u.seeds)
    return {arm: sorted(s) for arm, s in out.items()}


# ---- seeds per arm -----------------------------------------------------------------------------

def test_random_labels_paper_runs_report_bs_levels_at_ten_seeds_and_the_levels_between_at_three():
    units = rl.units(rl.PRESETS["paper"], PAPER_SEEDS, Runtime())
    per_level = seeds_per_arm(units, lambda u: [u.param("corruption")])
    assert per_level == {p: list(range(10 if p in (0.0, 1.0) else 3)) for p in rl.LEVELS}
    assert [u.seeds for u in units if u.param("corruption") == 0.0] == [(0, 1, 2, 3, 4), (5, 6, 7, 8, 9)]
    assert [u.seeds for u in units if u.param("corruption") == 1.0] == [(0, 1, 2, 3, 4), (5, 6, 7, 8, 9)]
    assert all(u.seeds == (0, 1, 2) for u in units if 0 < u.param("corruption") < 1)


def test_sensitivity_paper_runs_equal_epochs_at_ten_seeds_and_the_added_arms_at_three():
    cfg = sv.PRESETS["paper"]
    units = sv.units(cfg, PAPER_SEEDS, Runtime())
    for b in cfg.batch_sizes:
        mine = [u for u in units if u.param("batch_size") == b]
        assert seeds_per_arm(mine, lambda u: u.param("arms")) == {
            arm: list(range(10 if arm == "equal-epochs" else 3)) for arm in cfg.arms}
    assert max(len(u.seeds) for u in units) <= cfg.seed_chunk


def test_interpolation_paper_trains_the_cnn_at_ten_seeds_and_the_batchnorm_pair_at_three():
    units = ip.units(ip.PRESETS["paper"], PAPER_SEEDS, Runtime())
    assert [(u.param("net"), u.seeds) for u in units] == [("cnn", (0, 1, 2, 3, 4)), ("cnn", (5, 6, 7, 8, 9)),
                                                           ("mlp-batchnorm", (0, 1, 2))]


@pytest.mark.parametrize("module", [rl, sv, ip])
def test_default_runs_every_arm_on_every_seed_in_one_stack_per_arm(module):
    cfg = module.PRESETS["default"]
    assert cfg.added_seeds is None and cfg.seed_chunk == 10
    units = module.STUDY.work_units(cfg, PAPER_SEEDS, Runtime())
    stacked = [u for u in units if len(u.seeds) > 1]
    assert stacked and all(u.seeds == PAPER_SEEDS for u in stacked)


def test_arm_seed_blocks_group_seeds_by_the_arms_that_run_them():
    blocks = arm_seed_blocks({"a": (0, 1, 2, 3, 4), "b": (0, 1), "c": (0, 1)}, size=2)
    assert blocks == [(("a", "b", "c"), (0, 1)), (("a",), (2, 3)), (("a",), (4,))]


@pytest.mark.parametrize("module", [rl, sv, ip])
@pytest.mark.parametrize("scale", ["default", "paper"])
def test_the_partition_depends_on_the_config_alone(module, scale):
    cfg = module.PRESETS[scale]
    a, b = ([(u.seeds, u.params) for u in module.STUDY.work_units(cfg, PAPER_SEEDS, r)] for r in RUNTIMES)
    assert a == b


# ---- claims on arms of three seeds: "n too small", not an error --------------------------------

def test_random_labels_trend_claims_on_three_seeds_say_n_too_small_and_memorisation_still_decides():
    cfg = rl.PRESETS["paper"]
    runs = []
    for p in rl.LEVELS:
        for s in rl.level_seeds(cfg, p, PAPER_SEEDS):
            m = {"corruption": p, "best_train_acc": 1.0, "test_acc": 0.9 - 0.8 * p + 0.01 * s, "fit_epochs": 10 + 50 * p,
                 "train_acc": 1.0, "train_loss": 0.01, "test_loss": 1.0}
            runs.append({"condition": rl.condition(p), "seed": s, "metrics": m, "curves": {}, "n_classes": 10,
                         "still_improving": False, "diverged": False})
    results = summarize_study(rl.STUDY, cfg, [{"runs": runs}])
    memorised, falls, slower = results["checks"]
    assert memorised["verdict"] == "supported" and memorised["n"] == 10
    for c in (falls, slower):
        assert c["verdict"] == "inconclusive" and c["n"] == 3 and "n too small" in c["evidence"]
    assert results["answer"]


def test_sensitivity_added_arms_on_three_seeds_say_n_too_small():
    from test_sensitivity_study import unit_results
    [unit] = unit_results(1, -1)
    unit["runs"] = [r for r in unit["runs"] if r["arm"] == "equal-epochs" or r["seed"] < 3]
    results = summarize_study(sv.STUDY, sv.PRESETS["default"], [unit])
    for c in results["checks"]:
        if not c["claim"].startswith("equal-epochs"):
            assert c["n"] == 3 and "n too small" in c["evidence"] and c["verdict"] == "inconclusive"
        elif c["metric"] != "sensitivity":  # the synthetic runs hold it constant: no trend to rank
            assert c["n"] == 10 and "n too small" not in c["evidence"]
    assert results["answer"].startswith("Inconclusive —")


# ---- probes ------------------------------------------------------------------------------------

TINY = replace(rl.PRESETS["smoke"], epochs=5, n_train=60, n_test=40)


def _fit(cfg, probes, seeds=(0, 1)):
    data = load_split_data(cfg, Runtime())
    unit = Unit("random-labels", cfg, seeds, Runtime())
    spec = TrainSpec(fixed_epochs(cfg.epochs), cfg.batch_size, probes=probes(data))
    from dlstudies.optim import OptSpec
    return fit_members(unit, NETS.get(cfg.model)(cfg, data), OptSpec(cfg.optimizer, cfg.lr), data.train.x,
                       data.train.y, spec).history


def test_one_forward_per_set_gives_the_two_forward_probes_bitwise():
    def separate(data):
        return tuple(p for s in ("train", "test") for p in (
            loss_probe(f"{s}_loss", getattr(data, s).x, getattr(data, s).y, "cross_entropy"),
            accuracy_probe(f"{s}_acc", getattr(data, s).x, getattr(data, s).y)))
    together = _fit(TINY, lambda d: rl.probes(TINY, d.train.x, d.train.y, d.test))
    apart = _fit(TINY, separate)
    assert set(together) == set(apart) and all(np.array_equal(together[k], apart[k]) for k in rl.CURVES)


def test_sparse_probes_are_the_dense_values_at_epochs_one_k_2k_and_the_last_and_nan_between():
    sparse = replace(TINY, probe_every=2)
    dense, thin = (_fit(c, lambda d, c=c: rl.probes(c, d.train.x, d.train.y, d.test)) for c in (TINY, sparse))
    probed = np.array([0, 1, 3, 4])  # epochs 1, 2, 4 and the last, 5 (0-based)
    for k in rl.CURVES:
        assert np.array_equal(thin[k][:, probed], dense[k][:, probed]) and np.isnan(thin[k][:, 2]).all()
    assert np.array_equal(thin["loss"], dense["loss"])  # probing never changes the training


def test_a_sparse_run_records_final_and_best_values_and_figures_join_the_probed_epochs(run_tiny, tmp_path):
    cfg = replace(TINY, probe_every=2, corruption=(0.0, 0.25, 0.5, 0.75, 1.0), added_seeds=1)
    summary, files = run_tiny("random-labels", cfg, (0, 1), tmp_path)[1:]
    assert [len(c["runs"]) for c in summary["conditions"].values()] == [2, 1, 1, 1, 2]
    run = summary["conditions"]["p=1"]["runs"][0]
    acc = run["curves"]["train_acc"]
    assert acc[2] is None and run["metrics"]["train_acc"] == acc[-1]
    assert run["metrics"]["best_train_acc"] == max(v for v in acc if v is not None)
    assert rl.probed_epochs([acc]).tolist() == [1, 2, 4, 5] and "curves.png" in files


# ---- the epoch a threshold is reached, between probes ------------------------------------------

def test_first_epoch_between_probes_is_read_off_the_line_joining_them():
    acc = np.array([0.5, np.nan, np.nan, 0.8, np.nan, np.nan, 1.0])  # probed at epochs 1, 4, 7
    assert rl.first_epoch(acc, 0.9) == 6  # 0.8 + (1.0 - 0.8)·(e - 4)/3 reaches 0.9 at e = 5.5: epoch 6
    assert rl.first_epoch(acc, 1.0) == 7 and rl.first_epoch(acc, 0.5) == 1 and rl.first_epoch(acc, 0.81) == 5
    assert rl.first_epoch(acc, 1.01) is None and rl.first_epoch(np.full(4, np.nan), 0.5) is None


def test_on_curves_straight_between_probes_the_sparse_reading_is_the_dense_one():
    rng = np.random.default_rng(3)
    for _ in range(200):
        k, n = int(rng.integers(2, 6)), int(rng.integers(8, 40))
        at = np.unique(np.r_[0, np.arange(k - 1, n, k), n - 1])  # epochs 1, k, 2k, ... and the last
        dense = np.interp(np.arange(n), at, np.sort(rng.uniform(0, 1, len(at))))
        sparse = np.full(n, np.nan)
        sparse[at] = dense[at]
        t = float(rng.uniform(0, 1))
        assert rl.first_epoch(sparse, t) == rl.first_epoch(dense, t)


def test_with_every_epoch_probed_the_first_epoch_is_the_first_reaching_the_threshold():
    rng = np.random.default_rng(5)
    for _ in range(100):
        acc = rng.uniform(0, 1, 20)
        t = float(rng.uniform(0, 1))
        hits = np.flatnonzero(acc >= t)
        assert rl.first_epoch(acc, t) == (int(hits[0]) + 1 if hits.size else None)


# ---- interpolation: the α curve in the paper preset's evaluation batches ----------------------------

@pytest.mark.parametrize("net", ["cnn", "mlp-batchnorm"])
def test_evaluation_batches_change_the_alpha_curve_by_rounding_only(net):
    cfg = ip.nets(replace(ip.PRESETS["smoke"], n_train=300, n_test=50))[net]
    data = load_split_data(cfg, Runtime())
    a, b = build_members(NETS.get(cfg.model)(cfg, data), [0, 1])
    splits = {s: (getattr(data, s).x, getattr(data, s).y) for s in ("train", "test")}
    acc = lambda o, y: (o.argmax(-1) == y).double().mean()  # noqa: E731
    whole, parts = (interpolation_curve(a, b, F.cross_entropy, acc, splits, ip.alphas(cfg), size)
                    for size in (ip.PRESETS["default"].eval_batch, ip.PRESETS["paper"].eval_batch))
    assert ip.PRESETS["paper"].eval_batch < len(data.train.x) <= ip.PRESETS["default"].eval_batch
    for s in splits:
        np.testing.assert_allclose(parts.loss[s], whole.loss[s], rtol=1e-6)
        np.testing.assert_allclose(parts.accuracy[s], whole.accuracy[s], atol=1e-12)


# ---- sensitivity's large batches train as micro-batches on the autograd path ------------------------

def test_sensitivity_trains_its_large_cnn_batches_as_micro_batches():
    from dlstudies.engine.batched import MICRO_BATCH
    cfg = replace(sv.PRESETS["smoke"], n_train=4 * MICRO_BATCH, n_test=20, batch_sizes=(MICRO_BATCH, 4 * MICRO_BATCH))
    data = load_split_data(cfg, Runtime())
    unit = Unit("sensitivity", cfg, (0,), Runtime())
    large, small = (sv._train(cfg, unit, data, b, sv.Recipe(cfg.lr, 1)).path for b in (4 * MICRO_BATCH, MICRO_BATCH))
    assert large.startswith(f"autograd-micro{MICRO_BATCH}") and small.startswith("autograd") and "micro" not in small


def test_interpolation_batchnorm_pair_on_three_seeds_says_n_too_small_beside_the_decided_cnn():
    from dlstudies.analysis.claims import evaluate_all
    from test_interpolation_study import synthetic
    results = synthetic(0.2, 0.01)
    for table in ("conditions", "pairs"):
        for name, c in results[table].items():
            if name.startswith(ip.BN_NET):
                c["runs"] = c["runs"][:3]
    checks = evaluate_all(ip.claims(ip.PRESETS["default"]), results)
    assert [c["verdict"] for c in checks[:3]] == ["supported"] * 3
    assert all(c["n"] == 3 and "n too small" in c["evidence"] for c in checks[3:])
