"""bench.py end to end on a tiny model (subprocess, JSON into tmp_path): the schema, the per-setting train.py
overrides, and every reported figure derived from the measured step times and probe peaks. No timing
assertions (the box is shared)."""
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--n_layer=1", "--n_head=2", "--n_embd=16", "--block_size=16", "--batch_size=2",
        "--gradient_accumulation_steps=2", "--num_threads=1"]
SETTINGS = ("adamw; alsals --ls_trial_microsteps=0; adamw --gradient_accumulation_steps=1; "
            "alsals --gradient_accumulation_steps=1 --ls_skip_stable=3")
FIELDS = ("optimizer", "gradient_accumulation_steps", "tokens_per_step", "n_trial", "step_time_s",
          "step_time_p10_s", "step_time_p90_s", "tokens_per_s", "mfu", "forwards_per_step", "final_eta",
          "hparams", "step_times_s", "peak_mem_bytes", "step_time_ratio_vs_adamw", "peak_mem_ratio_vs_adamw",
          "collectives_per_step")


def bench(tmp_path, dataset, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "bench.py"), f"--dataset={dataset}", *TINY,
                           *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_bench_schema_and_figures(tmp_path, tiny_dataset):
    out = tmp_path / "bench.json"
    p = bench(tmp_path, tiny_dataset, f"--settings={SETTINGS}", f"--out={out}")
    assert p.returncode == 0, p.stderr[-3000:]
    rep = json.loads(out.read_text())
    assert set(rep) >= {"results", "settings", "train_args", "config", "device", "memory_method", "torch"}
    labels = ["adamw", "alsals --ls_trial_microsteps=0", "adamw --gradient_accumulation_steps=1",
              "alsals --gradient_accumulation_steps=1 --ls_skip_stable=3"]
    assert rep["settings"] == labels and list(rep["results"]) == labels
    assert rep["device"].startswith("cpu") and "RSS" in rep["memory_method"]
    res = rep["results"]
    for label, v in res.items():
        accum = 1 if "accumulation_steps=1" in label else 2
        base = res["adamw" if accum == 2 else "adamw --gradient_accumulation_steps=1"]  # same tokens per step
        assert set(v) >= set(FIELDS), (label, set(FIELDS) - set(v))
        t = v["step_times_s"]
        assert len(t) == 20 and min(t) > 0
        assert v["step_time_s"] == float(np.median(t))
        assert v["step_time_p10_s"] == float(np.percentile(t, 10))
        assert v["step_time_p90_s"] == float(np.percentile(t, 90))
        assert v["tokens_per_step"] == 2 * 16 * accum
        assert v["tokens_per_s"] == v["tokens_per_step"] / v["step_time_s"]
        assert v["step_time_ratio_vs_adamw"] == v["step_time_s"] / base["step_time_s"]
        assert v["peak_mem_bytes"] > 0
        assert v["peak_mem_ratio_vs_adamw"] == v["peak_mem_bytes"] / base["peak_mem_bytes"]
        assert v["mfu"] is None  # CPU
        assert v["gradient_accumulation_steps"] == accum
        assert label.split()[0] == v["optimizer"]
        if v["optimizer"] == "adamw":
            assert v["forwards_per_step"] == 1.0 and v["n_trial"] is None and v["final_eta"] is None
            assert v["step_time_ratio_vs_adamw"] == 1.0 and v["peak_mem_ratio_vs_adamw"] == 1.0
    # each setting's own train.py overrides reached its optimizer / trainer
    skip, every = res[labels[3]], res[labels[1]]
    assert skip["hparams"]["skip_stable"] == 3 and every["hparams"]["skip_stable"] == 0
    assert skip["n_trial"] == 1 and every["n_trial"] == 2
    # 1 training forward + trial forwards on n_trial of the 2 micro-batches: every searched step tries at
    # least once when no search is skipped
    assert every["forwards_per_step"] >= 2.0
    assert skip["forwards_per_step"] >= 1.0 and skip["final_eta"] > 0
    for label in labels:
        assert label in p.stdout
    assert "x adamw" in p.stdout and f"wrote {out}" in p.stdout


def test_bench_bad_input(tmp_path, tiny_dataset):
    out = tmp_path / "x.json"
    p = bench(tmp_path, tiny_dataset, "--timed_steps=5", f"--out={out}")
    assert p.returncode == 1 and p.stderr.strip().splitlines() == [
        "error: timed_steps must be >= 20 (got 5): fewer gives no usable spread"]
    p = bench(tmp_path, tiny_dataset, "--settings=adamw; nosuchopt", f"--out={out}")
    assert p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1 and "nosuchopt" in p.stderr, p.stderr
    p = bench(tmp_path, tiny_dataset, "--settings=adamw; alsals", "--burnin=1", "--max_start=0",
              f"--out={out}")
    assert p.returncode == 1 and "still in its start" in p.stderr, p.stderr  # warmup_iters=2 > 1 step
    assert not out.exists()


def test_bench_times_searched_steps_after_the_range_test(tmp_path, tiny_dataset):
    # the shipped configs' start: adamw has none (no error), alsals is timed only after its range test and
    # hold
    out = tmp_path / "rt.json"
    p = bench(tmp_path, tiny_dataset, "--ls_range_test=True", "--settings=adamw; alsals", "--burnin=1",
              f"--out={out}")
    assert p.returncode == 0, p.stderr[-3000:]
    hp = json.loads(out.read_text())["results"]["alsals"]["hparams"]
    assert hp["ramping"] is False and hp["hold_left"] == 0 and hp["warmup_steps"] == 0
    # ramp steps (eta doubles until the edge, at least one) + the hold of warmup_iters=2 steps went untimed
    assert hp["step"] >= 1 + 1 + 2 + 20, hp["step"]


def test_bench_counts_muons_gathers_under_fsdp2(tmp_path, tiny_dataset):
    """Under torchrun on 2 gloo ranks with --fsdp=True, bench.py reports each setting's collectives per step:
    Muon adds one all-gather per sharded matrix (4 per block: attention in and out, MLP in and out), AdamW
    none, and the FSDP2 gathers and reduce-scatters are the same for both."""
    out = tmp_path / "bench.json"
    p = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
                        os.path.join(ROOT, "bench.py"), f"--dataset={tiny_dataset}", *TINY, "--n_layer=2",
                        "--fsdp=True", "--settings=adamw; muon", "--burnin=1", f"--out={out}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    rep = json.loads(out.read_text())
    assert rep['world_size'] == 2
    adamw, muon = (rep['results'][k]['collectives_per_step'] for k in ('adamw', 'muon'))
    assert 'all_gather_into_tensor' not in adamw
    assert muon['all_gather_into_tensor']['count'] == 4 * 2
    # bf16 whole matrices: 2 blocks x (3*16*16 + 16*16 + 4*16*16 + 4*16*16) elements x 2 bytes
    assert muon['all_gather_into_tensor']['bytes'] == 2 * (12 * 16 * 16) * 2
    assert muon['_allgather_base_'] == adamw['_allgather_base_']
    assert rep['results']['muon']['peak_mem_bytes'] is None
