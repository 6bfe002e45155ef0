"""weight-trajectory end to end at a tiny scale, and the engines' weight snapshots it relies on."""

import numpy as np
import pytest
import torch

from dlstudies.config import Runtime
from dlstudies.engine import ENGINES, StopRule, TrainSpec
from dlstudies.errors import UsageError
from dlstudies.models.builders import build_members, mlp
from dlstudies.optim import OptSpec
from dlstudies.studies import STUDIES, Unit, load_studies
from dlstudies.studies.weight_trajectory import Config

TINY = ["epochs=4", "snapshot_every=2", "n_train=60", "batch_size=30", "hidden=8,6"]


@pytest.fixture(scope="module")
def results(tmp_path_factory, run_smoke):
    return run_smoke("weight-trajectory", TINY, tmp_path_factory.mktemp("wt"))


def test_each_run_has_its_snapshots_accuracies_and_coordinates(results):
    res, _ = results
    runs = res["conditions"]["adam"]["runs"]
    assert [r["seed"] for r in runs] == [0, 1]
    for run in runs:
        snaps = run["snapshots"]
        assert snaps["epoch"] == [0, 2, 4]
        assert all(0 <= a <= 1 for a in snaps["train_acc"])
        assert np.asarray(snaps["xy_model"]).shape == np.asarray(snaps["xy_first_layer"]).shape == (3, 2)
        assert run["metrics"]["final_train_acc"] == snaps["train_acc"][-1]
    # One PCA over all runs: the coordinates of all snapshots are centred on their common mean.
    every = np.concatenate([r["snapshots"]["xy_model"] for r in runs])
    np.testing.assert_allclose(every.mean(0), 0, atol=1e-9)
    assert 0 < sum(res["pca"]["model"]["explained_variance_ratio"]) <= 1 + 1e-12


def test_results_have_the_shared_parts_and_figures(results):
    res, folder = results
    assert set(res) >= {"conditions", "checks", "answer", "table", "verdicts", "setup"}
    assert res["conditions"]["adam"]["summary"]["final_train_acc"]["n"] == 2
    assert [c["verdict"] for c in res["checks"]] == ["inconclusive", "inconclusive"]
    assert res["answer"].startswith("Inconclusive —")
    assert "trajectories.png" in res["figures"]
    for name in res["figures"]:
        assert (folder / name).stat().st_size > 1000


def test_one_seed_is_enough_for_the_pca():
    load_studies()
    cfg = Config(epochs=2, snapshot_every=1, n_train=40, batch_size=40, hidden=(4,))
    result = STUDIES.get("weight-trajectory").run_unit(Unit("weight-trajectory", cfg, (5,), Runtime()))
    assert np.asarray(result["runs"][0]["snapshots"]["xy_model"]).shape == (3, 2)


def test_config_is_validated():
    with pytest.raises(UsageError):
        Config(epochs=5, snapshot_every=2)


def _data(n=40, d=5, classes=3):
    g = torch.Generator().manual_seed(7)
    return torch.rand(n, d, generator=g, dtype=torch.float64), torch.randint(0, classes, (n,), generator=g)


@pytest.mark.parametrize("stop", [StopRule(4), StopRule(30, tolerance=3e-3)])
def test_snapshots_agree_between_engines_and_freeze_with_a_stopped_member(stop):
    x, y = _data()
    members = build_members(lambda: mlp([5, 4, 3]), [0, 1, 2], torch.float64)
    spec = TrainSpec(stop, batch_size=8, snapshot_every=2)
    a, b = [ENGINES.get(e)(members, [OptSpec("adam", 0.05)] * 3, x, y, spec, [0, 1, 2]) for e in ("batched", "reference")]
    assert a.snapshots.shape == b.snapshots.shape == (3, stop.max_epochs // 2 + 1, 4 * 5 + 4 + 3 * 4 + 3)
    np.testing.assert_allclose(a.snapshots, b.snapshots, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(a.snapshots[:, 0], _flat(members))
    np.testing.assert_array_equal(a.snapshots[:, -1], _flat(a.models))  # a stopped member repeats where it stopped
    if stop.tolerance is not None:
        assert (a.epochs < stop.max_epochs).any(), "the test needs a member that stops early"


def _flat(models) -> np.ndarray:
    return np.stack([torch.cat([p.detach().flatten() for p in m.parameters()]).numpy() for m in models])


def _synthetic(share, walk, last, first):
    def table(values, key):
        return {"runs": [{"seed": i, "metrics": {key: v}} for i, v in enumerate(values)]}
    return {"shares": {"trajectory": table(share, "share"), "random walk": table(walk, "share")},
            "steps": {"last": table(last, "step_distance"), "first": table(first, "step_distance")}}


BASE = np.linspace(0.80, 0.85, 10)
FIRST = np.linspace(1.0, 2.0, 10)
WOBBLE = np.array([1, -1] * 5, dtype=float)


@pytest.mark.parametrize("share, last, verdicts", [
    (BASE + 0.1, FIRST * 0.2, ["supported", "supported"]),
    (BASE - 0.1, FIRST * 5.0, ["contradicted", "contradicted"]),
    (BASE + 0.1 * WOBBLE, FIRST * np.exp(WOBBLE), ["inconclusive", "inconclusive"]),
])
def test_claims_reach_every_verdict(share, last, verdicts):
    from dlstudies.analysis.claims import evaluate
    from dlstudies.studies.weight_trajectory import claims

    res = _synthetic(list(share), list(BASE), list(last), list(FIRST))
    assert [evaluate(c, res)["verdict"] for c in claims(Config())] == verdicts
