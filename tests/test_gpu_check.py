"""scripts/gpu_check.py --smoke=True: the GPU check's plumbing on CPU with a 1-layer model (bf16 autocast,
inductor for the train run and the offset; the bench without compile). The figures are meaningless on CPU;
what is checked is that every part runs the real scripts and that the report is derived from what they
measured. A second run with the closure's no-grad graph first needed after the hand-off (ema_warmup=0) must be
caught as a recompile by both detectors (TORCH_LOGS in the train run, dynamo's counters in the offset part).
"""
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def smoke(tmp_path, dataset, *args):
    out = tmp_path / "gc.json"
    p = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gpu_check.py"), "--smoke=True",
                        f"--dataset={dataset}", f"--out={out}",
                        *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    rep = json.loads(out.read_text()) if out.exists() else None
    return p, rep, (tmp_path / "gc.md")


def test_gpu_check_smoke(tmp_path, tiny_dataset):
    p, rep, md = smoke(tmp_path, tiny_dataset)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert rep["ok"] is True and set(rep["parts"]) == {"bench", "recompiles", "offset", "fsdp"}
    for part in rep["parts"].values():
        assert "error" not in part and part["seconds"] > 0
    bench = rep["parts"]["bench"]["results"]
    assert list(bench) == ["adamw", "alsals"]
    assert (bench["alsals"]["step_time_ratio_vs_adamw"]
            == bench["alsals"]["step_time_s"] / bench["adamw"]["step_time_s"])
    assert bench["alsals"]["forwards_per_step"] >= 1.5  # 1 + at least one trial on 1 of the 2 micro-batches
    r = rep["parts"]["recompiles"]
    assert r["searched_steps"] == 10 and r["handoff"] == 5 and r["ok"] is True
    assert r["recompiles_after_handoff"] == 0 and r["recompile_log_after_handoff"] == []
    # the eval and the closure's no-grad graphs, compiled in the warmup
    assert r["recompiles_before_handoff"] >= 1
    assert [e["iter"] for e in r["evals"]] == [0, 10] and r["trial_forwards_per_step"] >= 1.0
    o = rep["parts"]["offset"]
    assert o["steps"] == 5 and len(o["rows"]) == 5 and o["graphs_compiled_after_handoff"] == 0
    f = rep["parts"]["fsdp"]
    assert f["ok"] is True and f["resumed_iters"] == list(range(f["resumed_at"], f["iters"] + 1))
    assert f["max_resume_loss_diff"] == 0.0 and f["sample"]   # on CPU the resumed run is bit-identical
    off = np.array([row["f_train"] - row["f_closure"] for row in o["rows"]])
    assert [row["offset"] for row in o["rows"]] == off.tolist()
    assert o["max_abs_offset"] == float(np.abs(off).max()) and o["mean_offset"] == float(off.mean())
    dec = [row["decrease"] for row in o["rows"] if row["accepted"]]
    assert dec and o["median_abs_decrease"] == float(np.median(np.abs(dec)))
    assert o["negligible"] == bool(o["max_abs_offset"] <= 0.1 * o["median_abs_decrease"])
    text = md.read_text()
    assert text.startswith("# GPU check: cpu (smoke") and text.rstrip().endswith("Result: PASS")
    assert "0 after the hand-off at step 5" in text and "Result: PASS" in p.stdout


def test_gpu_check_catches_a_recompile_after_the_handoff(tmp_path, tiny_dataset):
    # no closure call in the warmup: the trial's no-grad graph is compiled on the first searched step
    p, rep, md = smoke(tmp_path, tiny_dataset, "--ema_warmup=0", "--parts=recompiles,offset")
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-3000:]
    assert rep["ok"] is False and set(rep["parts"]) == {"recompiles", "offset"}
    r, o = rep["parts"]["recompiles"], rep["parts"]["offset"]
    assert r["recompiles_after_handoff"] >= 1 and r["ok"] is False
    assert any("grad_mode" in line for line in r["recompile_log_after_handoff"])
    assert o["graphs_compiled_after_handoff"] >= 1 and o["ok"] is False
    assert md.read_text().rstrip().endswith("Result: FAIL")


def test_gpu_check_bad_input(tmp_path, tiny_dataset):
    p, rep, _ = smoke(tmp_path, tiny_dataset, "--parts=bench,nosuch")
    assert p.returncode == 1 and p.stderr.strip().splitlines()[-1].startswith("error: parts must be")
    assert rep is None
