"""
The GPU study: the shape ladder's top rung, at a size only a GPU reaches, in under 8 minutes on one H100/H200,
no internet. GPT-2 124M (the shape of config/train_gpt2*.py: 12 x 768, block 1024), bf16 autocast and
torch.compile, on Shakespeare with GPT-2 BPE (data/shakespeare, ~1.4M training tokens, prepared offline if
missing), one `python train.py` per method from its shipped config, the same short run for each:

  adamw    config/train_gpt2.py          AdamW + cosine at its config's lr (nanoGPT's 6e-4)
  muon     config/train_gpt2_muon.py     Muon + cosine at its config's lrs (0.02; AdamW part 6e-4)
  alsals   config/train_gpt2_alsals.py   ALSALS as shipped (range test from 3e-5, hold, search, anneal)
  control  the same with --ls_search=False: the no-search control (no trial forwards after the start)
  muonsls  config/train_gpt2_muonsls.py  MuonSLS as shipped

Only the run's length is changed, as the CPU study does: max_iters steps of batch_size x 1024 tokens (one
micro-batch, no accumulation), warmup (and the range test's pacing) 10% of the run, lr_decay_iters =
max_iters, the line search's last ls_ema_warmup_steps the hold's last half. Each run's JSON-lines log gives
its final val (eval_iters fixed batches), the median ms per step (after 10 steps of compilation, no eval
step), tokens/s (batch_size x block_size / that median) and forwards per step (the trial forwards counted, on
the one micro-batch). Writes `out` (JSON) and a markdown table next to it (.md) after every run, so a run cut
short keeps what it measured. Exit code 1 if a run failed or ended non-finite.

--smoke=True: CPU, a 1-layer model, a few steps, float32, no compile: the plumbing, not the figures (a test).

$ python scripts/gpu_study.py   # on the GPU machine: results/gpu_study.json and results/gpu_study.md
$ python scripts/gpu_study.py --smoke=True --dataset=shakespeare_char --out=out-gpu-study/gs.json
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
import gpu_report # the runs in turn, the report saved after each

# -----------------------------------------------------------------------------
smoke = False # CPU, a 1-layer model, few steps, float32, no compile: the plumbing, not the figures
# a folder under data/ (prepared if it is 'shakespeare' or 'bible' and missing) or a path
dataset = 'shakespeare'
out = 'results/gpu_study.json'
methods = 'adamw,muon,alsals,control,muonsls' # which of METHODS to run, in this order
# steps per run (200 x 8 x 1024 = 1.6M tokens: about one pass over Shakespeare's training split)
max_iters = 200
batch_size = 8 # sequences of block_size tokens per step
eval_iters = 20 # fixed val batches of the final (and the middle) eval
timeout = 150 # seconds for each run (compile included)
# seconds: a method not started by then is not run (with timeout: the study ends within 8 minutes)
budget = 330
# -----------------------------------------------------------------------------
config_keys = [k for k, v in globals().items() if not k.startswith('_') and isinstance(v, (int, float, bool,
                                                                                           str))]
from configurator import configure, fail # fail: one line on stderr, exit code 1
configure(sys.argv[1:], globals(), config_keys)
config = {k: globals()[k] for k in config_keys}

METHODS = {'adamw': 'config/train_gpt2.py', 'muon': 'config/train_gpt2_muon.py',
           'alsals': 'config/train_gpt2_alsals.py', 'control': 'config/train_gpt2_alsals.py',
           'muonsls': 'config/train_gpt2_muonsls.py'}
# the no-search control: ALSALS's start, hold and anneal, no trial
EXTRA = {'control': ['--ls_search=False']}
LINE_SEARCH = ('alsals', 'control', 'muonsls')
RUN = [m.strip() for m in methods.split(',') if m.strip()]
if not RUN or set(RUN) - set(METHODS):
    fail(f"methods must be a comma-separated subset of {','.join(METHODS)}, got {methods!r}")
if max_iters < 20 or batch_size < 1 or eval_iters < 1:
    fail("max_iters must be >= 20, batch_size and eval_iters >= 1")
if smoke:
    max_iters, batch_size, eval_iters = min(max_iters, 20), min(batch_size, 2), min(eval_iters, 2)
    SHAPE = ['--n_layer=1', '--n_head=2', '--n_embd=16', '--block_size=16']
    SYSTEM = ['--device=cpu', '--dtype=float32', '--compile=False']
else:
    if not torch.cuda.is_available():
        fail("no CUDA device; on CPU run the plumbing check: python scripts/gpu_study.py --smoke=True")
    SHAPE = ['--n_layer=12', '--n_head=12', '--n_embd=768', '--block_size=1024']
    SYSTEM = ['--device=cuda', '--dtype=bfloat16', '--compile=True']
BLOCK = int(SHAPE[-1].split('=')[1])
WARMUP = max_iters // 10
RUN_LENGTH = [f'--dataset={dataset}', *SHAPE, f'--batch_size={batch_size}', '--gradient_accumulation_steps=1',
              '--dropout=0.0', f'--max_iters={max_iters}', f'--lr_decay_iters={max_iters}',
              f'--warmup_iters={WARMUP}', f'--eval_interval={max_iters // 2}', f'--eval_iters={eval_iters}',
              '--log_interval=1', '--always_save_checkpoint=False', '--wandb_log=False', *SYSTEM]
report = dict(config=config, torch=torch.__version__, started=time.strftime('%Y-%m-%d %H:%M:%S UTC',
                                                                            time.gmtime()),
              device=torch.cuda.get_device_name() if not smoke else f'cpu (smoke, {os.cpu_count()} cores)',
              tokens_per_step=batch_size * BLOCK, runs={})

def run(cmd):
    """A subprocess in the repository root, stdout and stderr merged; (returncode, text)."""
    p = subprocess.run(cmd, cwd=ROOT, env={**os.environ, 'PYTHONUNBUFFERED': '1'}, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=timeout)
    return p.returncode, p.stdout

def prepare_data():
    d = dataset if os.path.isabs(dataset) else os.path.join(ROOT, 'data', dataset)
    if os.path.exists(os.path.join(d, 'train.bin')):
        return
    if dataset not in ('shakespeare', 'bible'):
        fail(f"no {os.path.join(d, 'train.bin')}; prepare it first")
    rc, text = run([sys.executable, os.path.join(ROOT, 'data', dataset, 'prepare.py')])
    if rc != 0:
        fail(f"preparing data/{dataset} failed: {text.strip().splitlines()[-1:]}")

def summarize(records):
    """Final val, per-step cost and the step size at the end, from train.py's JSON-lines records."""
    steps = [r for r in records if 'loss' in r]
    evals = [r for r in records if 'val_loss' in r]
    # compiled, no eval
    timed = [r['dt_ms'] for r in steps[10:] if not any(e['iter'] == r['iter'] for e in evals)]
    ms = float(np.median(timed)) if timed else math.nan
    final = evals[-1]['val_loss'] if evals else math.nan
    return dict(final_val=final, val=[[e['iter'], e['val_loss']] for e in evals], ms_per_step=ms,
                tokens_per_s=batch_size * BLOCK / (ms / 1000),
                fwd_per_step=float(np.mean([1 + r['forwards'] for r in steps])), # training forward + trials
                lr_end=steps[-1]['lr'] if steps else math.nan,
                loss_first=steps[0]['loss'] if steps else math.nan,
                iters=len(steps), skipped=sum(bool(r['skipped']) for r in steps))

def run_method(name, tmp):
    log = os.path.join(tmp, f'{name}.jsonl')
    args = [METHODS[name], *RUN_LENGTH, *EXTRA.get(name, [])]
    if name in LINE_SEARCH: # the hold's last half warms the criterion's EMAs (the char config: 25 of 50)
        args.append(f'--ls_ema_warmup_steps={max(1, WARMUP // 2)}')
    cmd = [sys.executable, 'train.py', *args, f'--out_dir={os.path.join(tmp, name)}', f'--log_file={log}']
    t0 = time.time()
    rc, text = run(cmd)
    records = [json.loads(l) for l in open(log)] if os.path.exists(log) else []
    if rc != 0 or not any('val_loss' in r for r in records):
        raise RuntimeError(f"train.py exited {rc}: {' | '.join(text.strip().splitlines()[-3:])}")
    return dict(config=METHODS[name], command=' '.join(['train.py', *args]),
                learning_rate=config_lr(METHODS[name]), wall_s=round(time.time() - t0, 1),
                **summarize(records))

def config_lr(path):
    """The lr a config file sets (it may exec another config, relative to ROOT), else the default: the lr of
    AdamW and Muon; a line search's first eta (ls_lr where the config sets one, else learning_rate)."""
    here, scope = os.getcwd(), {}
    os.chdir(ROOT)
    try:
        exec(open(path).read(), scope)
    finally:
        os.chdir(here)
    for key in ('ls_lr', 'learning_rate'):
        if scope.get(key) is not None:
            return scope[key]
    from trainer import defaults
    return defaults.learning_rate

def tokens():
    d = dataset if os.path.isabs(dataset) else os.path.join(ROOT, 'data', dataset)
    return 'characters' if os.path.exists(os.path.join(d, 'meta.pkl')) else 'GPT-2 BPE'

def summary():
    TOKENS = tokens()
    runs = report['runs']
    base = runs.get('adamw', {}).get('final_val', math.nan)
    L = [f"# GPU study: {report['device']}", '',
         f"torch {report['torch']}, started {report['started']}, "
         f"{'SMOKE (CPU plumbing, figures meaningless)' if smoke else 'GPT-2 124M, bf16 + torch.compile'}; "
         f"{dataset} ({TOKENS}), {max_iters} steps of {batch_size} x {BLOCK} tokens, warmup {WARMUP}, "
         f"final val over {eval_iters} fixed batches. Each method from its shipped config, only the run's "
         f"length changed (gpu_study.py).", '',
         '| method | config | lr (line search: first guess) | final val | vs AdamW | tokens/s | ms / step | '
         'fwd / step | lr or eta at the end |', '|---|---|---|---|---|---|---|---|---|']
    for name in RUN:
        r = runs.get(name)
        if r is None:
            continue
        if 'error' in r:
            L.append(f"| {name} | `{METHODS[name]}` | | {r['error']} | | | | | |")
            continue
        L.append(f"| {name} | `{r['config']}` | {r['learning_rate']:g} | {r['final_val']:.4f} | "
                 f"{100 * (r['final_val'] / base - 1):+.1f}% | {r['tokens_per_s']:,.0f} | "
                 f"{r['ms_per_step']:.1f} | {r['fwd_per_step']:.2f} | {r['lr_end']:.3g} |")
    L += ['', f"Result: {'PASS' if report.get('ok') else 'FAIL'}"]
    return '\n'.join(L) + '\n'

def save():
    done = report['runs'].values()
    report['ok'] = len(done) == len(RUN) and all('error' not in r and math.isfinite(r['final_val'])
                                                 for r in done)
    gpu_report.save(out, report, summary())

def main():
    prepare_data()
    t_start = time.time()
    def run_within_budget(name, tmp):
        if time.time() - t_start > budget:
            return dict(error=f"not run: the study's budget of {budget} s was spent")
        return run_method(name, tmp)
    with tempfile.TemporaryDirectory() as tmp:
        gpu_report.run_parts([(name, lambda name=name: run_within_budget(name, tmp)) for name in RUN],
                             report['runs'], save, 'gpu_study')
    gpu_report.finish(out, report, summary())

if __name__ == '__main__':
    main()
