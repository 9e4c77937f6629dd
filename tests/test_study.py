"""experiments/study.py --quick: it runs train.py itself (no copy of the step), its outputs, resuming, a WSD
baseline bracketed beside AdamW, and the ladder's table."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDY = os.path.join(ROOT, "experiments", "study.py")
sys.path.insert(0, os.path.join(ROOT, "experiments"))  # report.py (the ladder's table)
# short: the lr-free grid is the shipped ALSALS warmup target alone (AdamW's grid is then extended once, to
# a neighbour on the 1-3-10 grid), Muon with WSD bracketed from 1e-2 alone (extended once too), and one peer
# (in-process on train.py's setup); 2 seeds
ARGS = ["--quick", "--corpus", "char", "--lrs", "3e-3", "--methods", "schedulefree_adamw",
        "--baselines", "adamw,muon@lr_schedule=wsd", "--muon-lrs", "1e-2", "--jobs", "2"]
WSD = "muon@lr_schedule=wsd"


def study(out, *extra):
    return subprocess.run([sys.executable, STUDY, *ARGS, "--out", str(out), *extra], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    p = study(out)
    assert p.returncode == 0, p.stderr[-3000:]
    return out, p.stdout


def rec(out, name):
    return json.loads((out / "quick" / "char" / f"{name}.json").read_text())


def test_outputs(quick):
    out, stdout = quick
    names = {f.stem for f in (out / "quick" / "char").glob("*.json")}
    adamw = {n for n in names if n.startswith("adamw_")}
    assert len(adamw) == 4 and {"adamw_lr3e-3_s0", "adamw_lr3e-3_s1"} <= adamw  # 3e-3 and one neighbour
    assert adamw & {"adamw_lr1e-3_s0", "adamw_lr1e-2_s0"}
    wsd = {n for n in names if n.startswith(WSD + "_")}
    assert names - adamw - wsd == {"alsals_lr3e-3_s0", "alsals_lr3e-3_s1", "schedulefree_adamw_lr1e0_s0",
                                   "schedulefree_adamw_lr1e0_s1"}
    r = rec(out, "alsals_lr3e-3_s0")
    # final val: train.py's eval at iter max_iters, after max_iters updates (nanoGPT's loop then takes one
    # more, unevaluated step: max_iters + 1 logged iterations)
    assert r["iters"] == 21 and len(r["eta"]) == 21 and r["status"] == "ok"
    assert r["val"][-1][0] == 20 and r["final_val"] == r["val"][-1][1]
    # trial forwards counted
    assert r["fwd_per_step"] > 1.0 and rec(out, "adamw_lr3e-3_s0")["fwd_per_step"] == 1.0
    summary = (out / "quick" / "summary.md").read_text()
    assert "| 0.003 | " in summary and "| lr | `adamw` | `alsals` |" in summary  # the lr-free table
    assert "| AdamW + cosine (tuned) |" in summary and "| alsals | 0.003 |" in summary
    assert "| schedulefree_adamw |" in summary
    assert "(1.00x)" in summary  # cost against tuned AdamW's
    for png in ("char_lrfree.png", "char_val.png", "char_eta.png"):
        assert (out / "quick" / png).stat().st_size > 0
    assert "skipped" not in stdout


def test_runs_are_train_py(quick, tmp_path):
    """The study's number for a run is what `python train.py <its command>` prints: no second training
    step."""
    out, _ = quick
    r = rec(out, "alsals_lr3e-3_s0")
    assert r["command"][0] == "train.py"
    assert not any(a.startswith(("--out_dir=", "--log_file=")) for a in r["command"])  # temp paths not kept
    args = r["command"][1:]
    log = tmp_path / "log.jsonl"
    p = subprocess.run([sys.executable, "train.py", *args, f"--out_dir={tmp_path / 'o'}",
                        f"--log_file={log}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env=dict(os.environ,
                                                                                       OMP_NUM_THREADS="1"))
    assert p.returncode == 0, p.stderr[-2000:]
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [x["val_loss"] for x in lines if "val_loss" in x][-1] == r["final_val"]
    assert [x["lr"] for x in lines if "loss" in x] == r["eta"]


def test_same_init_and_batches_per_seed(quick):
    """Seed s gives every method the same init and first batch (train.py's setup, also for the in-process
    peer): the loss of step 0, before any update, is the same; another seed differs."""
    out, _ = quick
    first = {s: {n: rec(out, f"{n}_s{s}")["train_loss"][0] for n in
                 ("adamw_lr3e-3", "alsals_lr3e-3", "schedulefree_adamw_lr1e0")} for s in (0, 1)}
    assert len(set(first[0].values())) == 1 and len(set(first[1].values())) == 1, first
    assert first[0]["adamw_lr3e-3"] != first[1]["adamw_lr3e-3"]


def test_resume_skips_finished_runs(quick):
    out, _ = quick
    files = sorted((out / "quick" / "char").glob("*.json"))
    mtimes = {f: f.stat().st_mtime_ns for f in files}
    p = study(out)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count("skipped") == len(files)
    assert all(f.stat().st_mtime_ns == t for f, t in mtimes.items())


def test_bad_setting_is_one_line_error_and_no_result(quick):
    out, _ = quick
    p = study(out, "--methods", "alsals@ls_c=2.0")
    assert p.returncode != 0
    assert (p.stderr.strip().startswith("error: run alsals@ls_c=2.0_lr3e-3_s0 failed")
            and "c must be" in p.stderr)
    assert len(p.stderr.strip().splitlines()) == 1
    assert not list((out / "quick" / "char").glob("alsals@*.json"))


def test_wsd_baseline_bracketed(quick):
    """A Muon baseline with lr_schedule=wsd is bracketed like AdamW's (its grid from --muon-lrs, extended once
    to a 1-3-10 neighbour), each run is Muon's config with the WSD schedule (the logged lr: warmup, constant,
    linear to lr/10 over the last 20%), and the tables list its tuned point and judge against it."""
    out, stdout = quick
    lrs = {n.split("_lr")[1].split("_s")[0]
           for n in (f.stem for f in (out / "quick" / "char").glob(WSD + "_*.json"))}
    assert len(lrs) == 2 and "1e-2" in lrs and lrs & {"3e-3", "3e-2"}
    assert f"best {WSD} lr 0.01 at the edge of the grid; extending" in stdout
    r = rec(out, f"{WSD}_lr1e-2_s0")
    assert r["command"][1] == "config/train_shakespeare_char_muon.py" and "--lr_schedule=wsd" in r["command"]
    lr = r["eta"]  # iters 0..20: warmup 2, constant to 16 (= 0.8 x 20), then linear to 1e-3 at 20
    assert (lr[2:17] == [1e-2] * 15 and lr[18] == pytest.approx(1e-2 - 0.5 * 9e-3)
            and lr[20] == pytest.approx(1e-3))
    summary = (out / "quick" / "summary.md").read_text()
    assert "| Muon + WSD (tuned) |" in summary and "| vs tuned AdamW | vs tuned Muon |" in summary
    assert f"| lr | `adamw` | `alsals` | `{WSD}` |" in summary


def test_ladder_table(quick):
    """ladder.md: per corpus one column per rung, the tuned AdamW and Muon rows naming their schedule, and
    every other method with its gap to the baseline it is judged against and its forwards per step."""
    import report
    out, _ = quick
    md = open(report.write_ladder(str(out), sizes=["quick"])).read()
    runs = report.collect(str(out / "quick"), "char")
    adamw = report.reference(runs, "adamw")
    alsals = [r["final_val"] for r in runs[("alsals", 3e-3)]]
    gap = 100 * (sum(alsals) / len(alsals) / report.mean_final(runs[adamw]) - 1)
    fwd = sum(r["fwd_per_step"] for r in runs[("alsals", 3e-3)]) / 2
    assert "| method | quick (1x16, 4x16, 20 it) |" in md
    assert (f"| tuned AdamW | {report.mean_final(runs[adamw]):.4f} n=2 · 1.00 fwd "
            f"(AdamW + cosine {adamw[1]:g}) |") in md
    assert "| tuned Muon | " in md and "(Muon + WSD " in md
    assert f"| `alsals` 0.003 | {sum(alsals) / 2:.4f} ({gap:+.1f}%) n=2 · {fwd:.2f} fwd |" in md
