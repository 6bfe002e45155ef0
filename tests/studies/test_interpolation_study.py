"""interpolation end to end at a tiny scale (endpoints, the α grid, the BatchNorm pair and independent
starts), and every claim and the answer on synthetic runs.

The analysis functions themselves are tested against oracles in tests/analysis/test_interpolation.py.
"""

import json
from dataclasses import replace

import numpy as np
import pytest

from dlstudies.analysis.claims import evaluate
from dlstudies.errors import UsageError
from dlstudies.studies import interpolation as ip

TINY = replace(ip.PRESETS["smoke"], epochs=2, n_train=100, n_test=60)
SEEDS = (0, 1)


@pytest.fixture(scope="module")
def study(tmp_path_factory, run_tiny):
    return run_tiny("interpolation", TINY, SEEDS, tmp_path_factory.mktemp("interpolation"))[1:]


def test_alpha_grid_spans_minus_one_to_two_with_both_endpoints_exactly():
    a = ip.alphas(replace(TINY, n_alphas=7))
    assert a[0] == -1.0 and a[-1] == 2.0 and 0.0 in a and 1.0 in a


def test_the_cnn_and_a_batchnorm_mlp_pair_are_trained(study):
    summary, _ = study
    assert list(summary["conditions"]) == ["cnn/batch-25", "cnn/batch-100", "mlp-batchnorm/batch-25",
                                           "mlp-batchnorm/batch-100"]
    assert [(c["net"], c["seed"]) for c in summary["curves"]] == [(n, s) for n in ("cnn", "mlp-batchnorm") for s in SEEDS]
    bn = [c for c in summary["curves"] if c["net"] == "mlp-batchnorm"]
    assert all(c["bn_stats"] == "recompute" and c["other_bn_stats"] == "interpolate" for c in bn)
    assert all(c["bn_stats"] is None and "train_loss_other_bn" not in c for c in summary["curves"] if c["net"] == "cnn")
    # At the endpoints of a BatchNorm pair the two kinds of statistics differ (the trained model's
    # running averages against the training set's own), and both are finite everywhere.
    assert all(np.all(np.isfinite(c["train_loss_other_bn"])) for c in bn)


def test_endpoints_reproduce_the_trained_models_losses(study):
    summary, _ = study
    assert summary["sanity"][0]["ok"], summary["sanity"][0]["evidence"]
    cnn_small, cnn_large = (summary["conditions"][f"cnn/batch-{b}"] for b in (25, 100))
    for curve, *runs in zip([c for c in summary["curves"] if c["net"] == "cnn"], cnn_small["runs"], cnn_large["runs"]):
        at = {alpha: int(np.flatnonzero(np.asarray(curve["alphas"]) == alpha)[0]) for alpha in (0.0, 1.0)}
        for alpha, run in zip((0.0, 1.0), runs):
            for split in ("train", "test"):  # no BatchNorm: the curve's endpoint is the model itself
                assert curve[f"{split}_loss"][at[alpha]] == pytest.approx(run["metrics"][f"{split}_loss"], rel=1e-5)


def test_the_path_from_the_initial_weights_ends_at_the_small_batch_solution(study):
    from dlstudies.config import Runtime
    from dlstudies.models.builders import build_members
    from dlstudies.studies.image_nets import NETS, load_split_data
    from dlstudies.studies.training import split_metrics

    summary, _ = study
    data = load_split_data(TINY, Runtime())
    start = split_metrics(build_members(NETS.get("cnn")(TINY, data), list(SEEDS)), data, ("train",))["train_loss"]
    cnn = [c for c in summary["curves"] if c["net"] == "cnn"]
    for c, own in zip(cnn, summary["conditions"]["cnn/batch-25"]["runs"]):
        assert c["init_alphas"][0] == 0.0 and c["init_alphas"][-1] == 1.0
        assert c["init_train_loss"][0] == pytest.approx(float(start[own["seed"]]), rel=1e-5)
        assert c["init_train_loss"][-1] == pytest.approx(own["metrics"]["train_loss"], rel=1e-5)


def test_results_are_json_ready_with_checks_tables_and_figures(study):
    summary, files = study
    json.dumps(summary, allow_nan=False)
    assert {"conditions", "checks", "answer", "table", "tables", "curves", "pairs", "verdicts", "setup"} <= set(summary)
    assert len(summary["checks"]) == 6 and all(c["verdict"] == "inconclusive" for c in summary["checks"])
    assert summary["answer"].startswith("Inconclusive —") and "not at matched training loss" in summary["answer"]
    assert {"flank_rise_10", "flank_rise_25", "flank_rise_50"} <= set(summary["conditions"]["cnn/batch-25"]["summary"])
    assert any("BatchNorm" in t["title"] for t in summary["tables"])
    assert {"interpolation.png", "training_loss.png"} <= set(files)


@pytest.mark.parametrize("change", [{"model": "mlp", "channels": (), "hidden": (16,), "norm": "batchnorm"},
                                    {"same_init": False, "bn_pair": False},
                                    {"bn_stats": "interpolate", "model": "mlp", "channels": (), "hidden": (16,)}])
def test_batchnorm_statistics_and_independent_starts_keep_the_endpoints(change, run_tiny):
    summary = run_tiny("interpolation", replace(TINY, **change), SEEDS)[1]
    assert summary["sanity"][0]["ok"], summary["sanity"][0]["evidence"]
    nets = {c.split("/")[0] for c in summary["conditions"]}
    assert nets == set(ip.nets(replace(TINY, **change)))


def test_segment_measures_on_a_known_curve():
    alphas = np.linspace(-1, 2, 31)
    bump = {"alphas": alphas.tolist(), "train_loss": (1 + alphas + np.where((alphas > 0) & (alphas < 1),
                                                                           np.sin(np.pi * alphas), 0)).tolist()}
    init = np.linspace(0, 1, 11)
    bump.update(init_alphas=init.tolist(), init_train_loss=(2.3 * (1 - init ** 4)).tolist())  # flat, then falls
    seg = ip._segment(bump)
    assert seg["chord_excess"] == pytest.approx(1.0, abs=1e-12)  # sin(π/2) above the chord 1 + α
    inner = alphas[(alphas >= 0) & (alphas <= 1)]
    assert seg["barrier"] == pytest.approx(np.max(1 + inner + np.sin(np.pi * inner)) - 2)
    # 2.3(1 − α⁴) against the chord 2.3(1 − α): the largest excess is at α = 4^(−1/3), on the grid's nearest point.
    assert seg["init_chord_excess"] == pytest.approx(np.max(2.3 * (init - init ** 4)), abs=1e-12)
    bowl = {"alphas": alphas.tolist(), "train_loss": ((alphas - 0.5) ** 2).tolist(), **{
        "init_alphas": init.tolist(), "init_train_loss": ((init - 0.5) ** 2).tolist()}}
    assert ip._segment(bowl)["chord_excess"] < 0 and ip._segment(bowl)["barrier"] == 0.0
    assert ip._segment(bowl)["init_chord_excess"] < 0


# ---- every claim reaches all three verdicts on synthetic runs ------------------------------------

CFG = ip.PRESETS["default"]
RNG = np.random.default_rng(3)


def synthetic(effect: float, noise: float, n: int = 10) -> dict:
    """Both nets: the large-batch flank rise, the small-batch test accuracy and the chord excess all
    shifted by `effect` in the claimed direction (negative: against it)."""
    conditions, pairs = {}, {}
    for net in ip.nets(CFG):
        small, large = ip.condition(net, CFG.small_batch), ip.condition(net, CFG.large_batch)
        base = RNG.uniform(0.8, 0.9, n)
        conditions[small] = {"runs": [{"seed": s, "metrics": {"test_acc": base[s] + 0.2 * effect + RNG.normal(0, noise),
                                                             "flank_rise_10": 0.1 + RNG.normal(0, noise),
                                                             "train_loss": 1e-3}} for s in range(n)]}
        conditions[large] = {"runs": [{"seed": s, "metrics": {"test_acc": base[s] + RNG.normal(0, noise),
                                                             "flank_rise_10": 0.1 + effect + RNG.normal(0, noise),
                                                             "train_loss": 1e-2}} for s in range(n)]}
        pairs[net] = {"runs": [{"seed": s, "metrics": {"init_chord_excess": -effect + RNG.normal(0, noise)}}
                               for s in range(n)]}
    return {"conditions": conditions, "pairs": pairs}


def no_effect() -> dict:
    """Every measure half the seeds up, half down by the same amount: an effect of exactly zero."""
    results = synthetic(0.0, 0.0)
    for table in ("conditions", "pairs"):
        for c in results[table].values():
            for r in c["runs"]:
                r["metrics"] = {k: v + (0.05 if r["seed"] % 2 else -0.05) * (k != "train_loss")
                                for k, v in r["metrics"].items()}
    return results


@pytest.mark.parametrize("index", range(6))
@pytest.mark.parametrize("effect, noise, verdict", [(0.2, 0.01, "supported"), (-0.2, 0.01, "contradicted"),
                                                    (0.0, 0.0, "inconclusive")])
def test_every_claim_can_be_supported_contradicted_and_inconclusive(index, effect, noise, verdict):
    claim = ip.claims(CFG)[index]
    results = synthetic(effect, noise) if verdict != "inconclusive" else no_effect()
    assert evaluate(claim, results)["verdict"] == verdict


@pytest.mark.parametrize("effect, opening", [(0.2, "Yes —"), (-0.2, "No —"), (0.0, "Inconclusive —")])
def test_the_answer_opens_with_the_verdict_and_states_the_loss_ratio(effect, opening):
    from dlstudies.analysis.claims import evaluate_all

    results = synthetic(effect, 0.01) if effect else no_effect()
    results["checks"] = evaluate_all(ip.claims(CFG), results)
    results["train_loss_ratio"] = {net: ip.paired_contrast(results["conditions"], ip.condition(net, CFG.large_batch),
                                                   ip.condition(net, CFG.small_batch), "train_loss")
                                   for net in ip.nets(CFG)}
    results["convergence"] = {name: {"runs": 10, "still_improving": 3, "diverged": 0} for name in results["conditions"]}
    text = ip.answer(CFG, results)
    assert text.startswith(opening), text
    assert "12 of 40 endpoint runs were still improving" in text
    assert "10.0x [10.0x, 10.0x]" in text and " pp [" in text and "mlp-batchnorm" in text


def test_config_is_validated():
    with pytest.raises(UsageError):
        replace(TINY, small_batch=100, large_batch=25)
    with pytest.raises(UsageError):
        replace(TINY, alpha_min=0.5)
    with pytest.raises(UsageError):
        replace(TINY, optimizer="lbfgs")
    with pytest.raises(UsageError):
        replace(TINY, bn_stats="running")
