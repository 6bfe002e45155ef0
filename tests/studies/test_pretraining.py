"""The pretraining study: the AANN shapes, greedy training on codes, weights copied into the classifier
beside a control with the same output layer, best-validation readings held to a fit stopped at that
epoch, both engines agreeing, and a tiny end-to-end run."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from torch import nn

from dlstudies.config import Runtime, apply_overrides
from dlstudies.data import load_data
from dlstudies.data.base import subsample
from dlstudies.errors import UsageError
from dlstudies.studies import pretraining as study
from dlstudies.studies.base import Unit

TINY = ["ae_max_epochs=3", "max_epochs=4", "n_train=60"]


def _cfg(*pairs):
    return apply_overrides(study.PRESETS["smoke"], [*TINY, *pairs])


def test_aann_shapes_are_report_a_s():
    assert study.aann_sizes(study.PRESETS["default"], 36) == [
        [36, 28, 20, 28, 36], [20, 17, 13, 17, 20], [13, 10, 7, 10, 13]]
    with pytest.raises(UsageError, match="layers_per_aann"):
        _cfg("layers_per_aann=4")
    with pytest.raises(UsageError, match="fractions"):
        _cfg("fractions=0,1")


def _pretrained(cfg, seeds=(0, 1), dtype="float32"):
    unit = Unit("pretraining", cfg, tuple(seeds), Runtime(dtype=dtype))
    data = subsample(load_data(cfg.data), cfg.n_train)
    return unit, data, study.pretrain(cfg, unit, data)


def test_each_aann_trains_on_the_codes_of_the_one_before():
    cfg = _cfg()
    _, data, (encoders, records) = _pretrained(cfg)
    shapes = [tuple(m.weight.shape) for m in encoders[0]]
    assert shapes == [(28, 36), (20, 28), (17, 20), (13, 17), (10, 13), (7, 10)]
    assert [(r["aann"], r["seed"]) for r in records] == [(1, 0), (1, 1), (2, 0), (2, 1), (3, 0), (3, 1)]
    # AANN2's input: AANN1's encoder half applied to the raw features, 20 tanh codes per sample.
    aann1 = nn.Sequential(encoders[0][0], nn.Tanh(), encoders[0][1], nn.Tanh())
    with torch.no_grad():
        codes = aann1(data.train.x)
    assert codes.shape == (60, 20) and codes.abs().max() <= 1  # tanh codes
    assert all(np.isfinite(r["train_mse"]) and r["epochs"] == 3 for r in records)


def test_classifier_gets_the_encoders_and_keeps_the_controls_output_layer():
    cfg = _cfg()
    encoders = _pretrained(cfg, seeds=(0,))[2][0]
    control = study.build_members(lambda: study.mlp([36, *cfg.encoder, 5]), [0])[0]
    pretrained = study._with_encoder(study.copy.deepcopy(control), encoders[0])
    linears = [m for m in pretrained if isinstance(m, nn.Linear)]
    for target, source in zip(linears, encoders[0]):
        assert torch.equal(target.weight, source.weight) and torch.equal(target.bias, source.bias)
    assert torch.equal(linears[-1].weight, [m for m in control if isinstance(m, nn.Linear)][-1].weight)


def test_batched_and_reference_engines_agree_on_the_pipeline():
    cfg = _cfg("fractions=0.25", "max_epochs=3", "ae_max_epochs=2", "n_train=40")
    out = {e: study.run_unit(Unit("pretraining", cfg, (0, 1), Runtime(engine=e, dtype="float64")))
           for e in ("batched", "reference")}
    for a, b in zip(out["batched"]["runs"], out["reference"]["runs"]):
        assert (a["condition"], a["seed"], a["metrics"]["best_val_epochs"]) == (b["condition"], b["seed"], b["metrics"]["best_val_epochs"])
        for k, v in a["metrics"].items():
            np.testing.assert_allclose(v, b["metrics"][k], rtol=1e-9, err_msg=k)
    for a, b in zip(out["batched"]["aanns"], out["reference"]["aanns"]):
        np.testing.assert_allclose(a["train_mse"], b["train_mse"], rtol=1e-9)


def test_metrics_are_read_at_the_best_validation_epoch_of_both_arms():
    cfg = _cfg("fractions=1", "max_epochs=12", "patience=3", "lr=0.02")
    unit, data, (encoders, _) = _pretrained(cfg, seeds=(0,), dtype="float64")
    runs = study.finetune(cfg, unit, data, 1.0, encoders)
    assert [r["condition"] for r in runs] == ["pretrained@1.0", "control@1.0"]
    for r in runs:
        val = np.array(r["curves"]["val_loss"])
        best = r["metrics"]["best_val_epochs"]
        assert val[best - 1] == val.min() and r["stopped_epoch"] == len(val)
        assert r["converged"] == (len(val) < cfg.max_epochs or len(val) - best >= cfg.patience)
        assert r["metrics"]["train_acc"] == r["curves"]["train_acc"][best - 1]
    # The best-validation weights: a fit that simply ends at the best epoch reads the same test accuracy.
    for r in runs:
        short = study.finetune(dataclasses.replace(cfg, max_epochs=r["metrics"]["best_val_epochs"], patience=100), unit, data,
                               1.0, encoders)
        twin = next(s for s in short if s["condition"] == r["condition"])
        assert twin["metrics"]["test_acc"] == pytest.approx(r["metrics"]["test_acc"], abs=1e-12)
        assert twin["confusion"] == r["confusion"]


def test_patience_is_bounded():
    with pytest.raises(UsageError, match="patience"):
        _cfg("patience=0")


def test_end_to_end_through_runner(tmp_path, run_smoke):
    results, _ = run_smoke("pretraining", TINY, tmp_path)
    expected = {f"{k}@{f}" for k in ("pretrained", "control") for f in (0.1, 0.25, 1.0)}
    assert set(results["conditions"]) == expected and set(results["benefit"]) == {"benefit@0.1", "benefit@0.25", "benefit@1.0"}
    for key in ("answer", "checks", "tables", "table", "setup", "conditions", "aanns", "convergence"):
        assert results[key], key
    assert list(results["aanns"]) == ["AANN1", "AANN2", "AANN3"]
    run = results["conditions"]["pretrained@0.1"]["runs"][0]
    assert np.asarray(run["confusion"]["train"]).sum() == 6  # 10% of 60 labelled samples
    assert set(run["metrics"]) == set(study.METRICS) and {"converged", "still_improving", "diverged"} <= set(run)
    interaction = next(c for c in results["checks"] if c["metric"] == study.BENEFIT)
    assert interaction["source"] == "Erhan et al. 2010" and interaction["verdict"] == "inconclusive"  # 2 seeds
    assert results["answer"].startswith("Inconclusive —")
    saved = json.loads((tmp_path / "pretraining" / "results.json").read_text())
    assert saved["answer"] == results["answer"]
    assert {"aann_reconstruction.png", "label_fractions.png", "finetune_loss.png"} <= set(results["figures"])
    assert all((tmp_path / "pretraining" / f).is_file() for f in results["figures"])
