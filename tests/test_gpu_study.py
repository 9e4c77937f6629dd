"""scripts/gpu_study.py --smoke=True: the GPU study's plumbing on CPU (a 1-layer model, 20 steps, float32, no
compile): every method runs `python train.py` from its shipped 124M config with only the run's length changed,
and the report is derived from what the runs logged. The figures are meaningless on CPU."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, tiny_dataset):
    out = tmp_path_factory.mktemp("gpu_study") / "gs.json"
    p = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gpu_study.py"), "--smoke=True",
                        f"--dataset={tiny_dataset}",
                        f"--out={out}"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    return p, json.loads(out.read_text()), out.with_suffix(".md").read_text()


def test_gpu_study_smoke(smoke, tmp_path, tiny_dataset):
    p, rep, md = smoke
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    runs = rep["runs"]
    assert rep["ok"] is True and list(runs) == ["adamw", "muon", "alsals", "control", "muonsls"]
    assert [r["config"] for r in runs.values()] == ["config/train_gpt2.py", "config/train_gpt2_muon.py",
                                                    "config/train_gpt2_alsals.py",
                                                    "config/train_gpt2_alsals.py",
                                                    "config/train_gpt2_muonsls.py"]
    # the configs' own lrs: nanoGPT's AdamW default, Muon's, and the line searches' first etas
    assert [r["learning_rate"] for r in runs.values()] == [6e-4, 0.02, 6e-4, 6e-4, 0.02]
    for name, r in runs.items():
        assert r["iters"] == 21 and [v[0] for v in r["val"]] == [0, 10,
                                                                 20] and r["final_val"] == r["val"][-1][1]
        assert r["tokens_per_s"] == pytest.approx(rep["tokens_per_step"] / (r["ms_per_step"] / 1000))
        assert r["fwd_per_step"] == 1.0 if name in ("adamw", "muon", "control") else r["fwd_per_step"] > 1.0
        assert "--max_iters=20" in r["command"] and "--learning_rate" not in r["command"]
    assert ("--ls_search=False" in runs["control"]["command"]
            and "--ls_search" not in runs["alsals"]["command"])
    assert runs["adamw"]["lr_end"] == pytest.approx(6e-5)  # cosine's end: the configs' min_lr
    assert runs["muon"]["lr_end"] == pytest.approx(2e-3)
    # a run's final val is what `python train.py <its command>` ends with
    r = runs["alsals"]
    log = tmp_path / "log.jsonl"
    q = subprocess.run([sys.executable, "train.py", *r["command"].split()[1:], f"--out_dir={tmp_path / 'o'}",
                        f"--log_file={log}"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert q.returncode == 0, q.stderr[-2000:]
    assert [json.loads(x)["val_loss"] for x in log.read_text().splitlines()
            if "val_loss" in x][-1] == r["final_val"]
    base = runs["adamw"]["final_val"]
    for name, r in runs.items():
        assert (f"| {name} | `{r['config']}` | {r['learning_rate']:g} | {r['final_val']:.4f} | "
                f"{100 * (r['final_val'] / base - 1):+.1f}% | {r['tokens_per_s']:,.0f} | "
                f"{r['ms_per_step']:.1f} | {r['fwd_per_step']:.2f} |") in md
    assert md.startswith("# GPU study: cpu (smoke") and md.rstrip().endswith("Result: PASS")


def test_gpu_study_bad_setting():
    p = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "gpu_study.py"), "--smoke=True",
                        "--methods=adamw,sgd"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and p.stderr.strip() == ("error: methods must be a comma-separated subset of "
                                                      "adamw,muon,alsals,control,muonsls, got 'adamw,sgd'")
