"""experiments/landscape.py --quick: checkpoints from train.py in stages, the landscape along the Adam
direction, and its reconstruction of ALSALS's search against the real optimizer.step."""
import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def landscape(tmp_path_factory):
    out = tmp_path_factory.mktemp("landscape")
    p = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "landscape.py"), "--quick",
                        "--adamw_lr=1e-2", "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (out / "char_quick.png").stat().st_size > 0
    return json.loads((out / "char_quick.json").read_text())


def test_checkpoints_and_trajectories(landscape):
    r = landscape["results"]
    assert set(r) == {"alsals", "adamw"} and all(set(r[k]) == {"10", "20"} for k in r)
    assert all(ckpt["iter"] == int(it) for run in r.values() for it, ckpt in run.items())  # each stage's own
    # the stages resume one run: one step size per iteration, and AdamW's is train.py's cosine schedule
    assert len(landscape["trajectory"]["alsals"]) == len(landscape["trajectory"]["adamw"]) == 21
    assert max(landscape["trajectory"]["adamw"]) == pytest.approx(1e-2)
    assert r["adamw"]["20"]["lr_adamw"] == pytest.approx(landscape["trajectory"]["adamw"][20])


def test_reconstructed_search_is_the_optimizers(landscape):
    """From each checkpoint the search re-done from (eta, D, G, moments, gradient) accepts exactly the eta
    that ALSALS's own step accepts on the same batch, with the same decrease there: the plotted ratios are
    the ones the optimizer tests."""
    for ckpt in landscape["results"]["alsals"].values():
        assert ckpt["real"]["agrees"] is True
        for b in ckpt["batches"]:
            c = str(b["real"]["c"])
            assert math.isclose(b["real"]["eta"], b["rule"][c]["eta"], rel_tol=1e-6), (b["real"],
                                                                                       b["rule"][c])
            # and the same loss there: the reconstructed direction d is the optimizer's
            assert b["real"]["dec"] == pytest.approx(b["rule"][c]["dec"], rel=1e-4, abs=1e-6)


def test_slope_is_the_derivative_of_the_decrease(landscape):
    """f_a = -g.d is the slope of f(w + eta d) at eta = 0: the Armijo ratio tends to 1 as eta -> 0."""
    for run in landscape["results"].values():
        for ckpt in run.values():
            for b in ckpt["batches"]:
                assert b["f_a"] > 0
                assert b["dec"][0] / (landscape["etas"][0] * b["f_a"]) == pytest.approx(1.0, abs=0.05)
