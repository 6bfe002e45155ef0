"""loss-surface end to end at a tiny scale: the planes are centred on the trained solution."""

import numpy as np
import pytest

from dlstudies.config import Runtime
from dlstudies.errors import UsageError
from dlstudies.studies import STUDIES, Unit, load_studies
from dlstudies.studies.loss_surface import Config

TINY = ["epochs=3", "grid=5", "n_train=60", "batch_size=20", "hidden=8"]


@pytest.fixture(scope="module")
def results(tmp_path_factory, run_smoke):
    return run_smoke("loss-surface", TINY, tmp_path_factory.mktemp("ls"))


def test_centre_of_each_plane_is_the_recorded_final_train_loss(results):
    res, _ = results
    runs = res["conditions"]["adam"]["runs"]
    assert [r["seed"] for r in runs] == [0, 1]
    for run in runs:
        for name in ("random", "pca"):
            loss = np.asarray(run["planes"][name]["loss"])
            assert loss.shape == (5, 5)
            assert loss[2, 2] == run["metrics"]["final_train_loss"]  # θ* itself, bit for bit


def test_pca_plane_carries_the_trajectory_ending_at_the_centre(results):
    res, _ = results
    for run in res["conditions"]["adam"]["runs"]:
        plane = run["planes"]["pca"]
        path = np.asarray(plane["trajectory"])
        assert path.shape == (3 + 1, 2)  # epochs 0..3
        np.testing.assert_allclose(path[-1], 0, atol=1e-6)
        assert max(plane["alphas"]) >= np.abs(path[:, 0]).max()  # the grid covers the whole path
        assert run["profile"]["loss"][0] == run["metrics"]["final_train_loss"]


def test_results_have_the_shared_parts_and_figures(results):
    res, folder = results
    assert set(res) >= {"conditions", "checks", "answer", "table", "verdicts", "setup"}
    assert res["conditions"]["adam"]["summary"]["rise_at_r"]["n"] == 2
    assert [c["verdict"] for c in res["checks"]] == ["inconclusive"] * 3  # two seeds decide nothing
    assert res["answer"].startswith("Inconclusive —")
    assert {"contours.png", "surfaces_3d.png", "radial_profile.png"} <= set(res["figures"])
    for name in res["figures"]:
        assert (folder / name).stat().st_size > 1000


def test_two_runs_of_a_unit_are_identical():
    load_studies()
    cfg = Config(epochs=2, grid=3, n_train=40, batch_size=20, hidden=(4,))
    unit = Unit("loss-surface", cfg, (2,), Runtime())
    study = STUDIES.get("loss-surface")
    assert study.run_unit(unit) == study.run_unit(unit)


def test_config_is_validated():
    with pytest.raises(UsageError):
        Config(grid=20)
    with pytest.raises(UsageError):
        Config(rise_radius=2.0)


def _synthetic(random_min, pca_min, share, walk):
    def runs(values, key):
        return [{"seed": i, "metrics": {key: v}} for i, v in enumerate(values)]
    cond = {"runs": [{"seed": i, "metrics": {"random_plane_min_fraction": r, "pca_plane_min_fraction": p}}
                     for i, (r, p) in enumerate(zip(random_min, pca_min))]}
    return {"conditions": {"adam": cond},
            "shares": {"trajectory": {"runs": runs(share, "share")}, "random walk": {"runs": runs(walk, "share")}}}


ONES, LOW, MIXED = [1.0] * 10, list(np.linspace(0.4, 0.5, 10)), [1.0] * 9 + [0.9]  # one seed below: undecided
SHARE = list(np.linspace(0.90, 0.95, 10))


@pytest.mark.parametrize("random_min, pca_min, walk, verdicts", [
    (ONES, ONES, [s - 0.1 for s in SHARE], ["supported", "supported", "supported"]),
    (LOW, LOW, [s + 0.04 for s in SHARE], ["contradicted", "contradicted", "contradicted"]),
    (MIXED, MIXED, [s + 0.1 * (-1) ** i for i, s in enumerate(SHARE)], ["inconclusive"] * 3),
])
def test_claims_reach_every_verdict(random_min, pca_min, walk, verdicts):
    from dlstudies.analysis.claims import evaluate
    from dlstudies.studies.loss_surface import claims

    res = _synthetic(random_min, pca_min, SHARE, walk)
    assert [evaluate(c, res)["verdict"] for c in claims(Config())] == verdicts


def test_random_walk_baseline_meets_its_closed_form():
    # Antognini & Sohl-Dickstein 2018: for a long isotropic walk in high dimension the k-th PC
    # holds 6 / (pi^2 k^2) of the variance, so two PCs hold 6/pi^2 * (1 + 1/4) = 0.760.
    from dlstudies.analysis.pca import random_walk_share

    shares = [random_walk_share(np.ones(300), 1500, np.random.default_rng(s)) for s in range(3)]
    assert np.mean(shares) == pytest.approx(6 / np.pi ** 2 * 1.25, abs=0.03)
