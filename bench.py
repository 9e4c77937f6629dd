"""
Per-step cost of the line search against AdamW, after nanoGPT's bench.py, on train.py's own training step.

Each setting is an optimizer name plus train.py overrides; settings are separated by ';'. For each one this
script runs train.py's setup (trainer/setup.py: config, data checks, model, optimizer, compile) with the
command line [*bench defaults, *this script's other arguments, *the setting's overrides, --optimizer=name], so
every setting starts from the same init and draws the same batches, then times train.py's step
(trainer/step.py). The learning rate stays at learning_rate: a schedule costs nothing.

Timing: `burnin` untimed steps per setting, and for a line-search setting as many more as its start takes (the
AdamW warmup of warmup_iters steps, or the range test and its hold: at most `max_start` steps), so that every
timed step of a line-search setting is a searched step; then `timed_steps` rounds, one step
of each setting per round, so that drift on a shared machine hits all alike. Reported per setting: median
and p10/p90 of the step time, tokens/s, forwards per step (1 training forward + trial forwards x n_trial /
accumulation steps), MFU (CUDA), peak memory, and ratios to the first adamw setting with the same tokens per
step, so one run can compare several accumulation counts (a setting may override gradient_accumulation_steps).

Peak memory: each setting in a fresh process (this script with --mem_probe=i) that runs the burnin and
mem_steps steps. CUDA: torch.cuda.max_memory_allocated. CPU: peak RSS (getrusage ru_maxrss, process-wide and
monotone, hence one process per setting) minus the RSS before the first step.

Collectives (under torchrun): one more untimed step per setting runs under a dispatch mode that sees every
    c10d and functional collective that goes through the dispatcher (FSDP2's gathers and reduce-scatters,
    DTensor's, the search's all-reduces; not DDP's bucketed gradient all-reduce, which its C++ reducer issues
    directly): per step, each op's count and the bytes of the largest tensor it touches (the whole tensor of
    an all-gather). Muon under FSDP2 shows its one all-gather per sharded matrix there. Only rank 0 reports;
    peak memory is not probed.

$ python bench.py                           # CPU, 4 layers x 128, 8 micro-batches of 8x128
$ python bench.py --gradient_accumulation_steps=5 --settings='adamw; alsals; alsals --ls_skip_stable=3'
$ python bench.py config/train_gpt2.py --dataset=shakespeare --device=cuda --dtype=bfloat16 --compile=True \
      --gradient_accumulation_steps=5 --out=results/bench_124M.json   # 124M: an 8-GPU rank's (40: one GPU)
$ torchrun --nproc_per_node=2 bench.py --fsdp=True --settings='adamw; muon; muonsls' \
      --out=results/bench_fsdp.json
"""
import gc
import json
import os
import resource
import shlex
import subprocess
import sys
import time
from contextlib import redirect_stdout
from io import StringIO

import numpy as np
import torch
import torch.distributed as dist
from torch.utils._python_dispatch import TorchDispatchMode

from trainer.config import PLAIN_OPTIMIZERS
from trainer.setup import from_args # train.py's setup: the attributes it returns are listed in its docstring

# -----------------------------------------------------------------------------
# optimizer + train.py overrides
settings = 'adamw; alsals; alsals --ls_skip_stable=3; alsals --ls_trial_microsteps=0'
burnin = 5 # untimed steps per setting
# untimed steps a line-search setting may spend in its start (warmup or range test) after burnin
max_start = 500
timed_steps = 20 # timed rounds (one step of each setting per round)
mem_steps = 3 # steps after the burnin in a memory probe
num_threads = 2 # torch intra-op threads on CPU, fixed for comparable timings
out = 'bench.json' # JSON report (e.g. results/bench.json); '' = none
mem_probe = -1 # internal: index of the one setting whose peak memory this process measures
# train.py overrides before this script's other arguments: a small CPU model (a config file or --key=value
# after them wins)
train_defaults = ['--dataset=shakespeare_char', '--device=cpu', '--dtype=float32', '--compile=False',
                  '--n_layer=4', '--n_head=4', '--n_embd=128', '--block_size=128', '--batch_size=8',
                  '--gradient_accumulation_steps=8', '--dropout=0.0', '--warmup_iters=2']
# -----------------------------------------------------------------------------
config_keys = [k for k, v in globals().items() if not k.startswith('_') and isinstance(v, (int, str))]
own = [a for a in sys.argv[1:] if a.startswith('--') and a[2:].split('=', 1)[0] in config_keys]
train_args = [a for a in sys.argv[1:] if a not in own] # config files and --key=value for train.py
from configurator import configure, fail # fail: one line on stderr, exit code 1
with redirect_stdout(StringIO()):
    configure(own, globals(), config_keys)
config = {k: globals()[k] for k in config_keys}

if timed_steps < 20 and mem_probe < 0:
    fail(f"timed_steps must be >= 20 (got {timed_steps}): fewer gives no usable spread")
specs = [shlex.split(s) for s in settings.split(';') if s.strip()]
if not specs:
    fail("settings is empty")
if mem_probe >= len(specs):
    fail(f"mem_probe={mem_probe}: there are {len(specs)} settings")
labels = [' '.join(s) for s in specs]
if len(set(labels)) != len(labels):
    fail(f"settings repeat: {settings!r}")

class Setting:
    def __init__(self, spec):
        """spec: [optimizer, *train.py overrides]. self.train: train.py's setup for it (trainer.setup)."""
        # the search's start, only
        no_search = ['--ls_range_test=False'] if spec[0] in PLAIN_OPTIMIZERS else []
        args = [*train_defaults, *train_args, *spec[1:], *no_search, f'--optimizer={spec[0]}',
                '--wandb_log=False', '--log_file='] # a bench never logs a run
        self.label, self.train = ' '.join(spec), from_args(args, quiet=True) # quiet: config echo, notices
        self.it, self.times, self.fwds = 0, [], []
        self.X, self.Y = self.train.get_batch('train', 0)
        self.cuda = 'cuda' in self.train.device

    def step(self):
        """One train_step; returns (seconds, forwards in units of the step's training forward)."""
        train = self.train
        if self.cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        self.X, self.Y, loss, applied = train.train_step(self.X, self.Y, self.it)
        if self.cuda:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        if not applied:
            fail(f"{self.label}: update skipped (non-finite loss or gradient) at step {self.it}")
        fwd = 1.0
        if train.line_search:
            fwd += train.optimizer.last_stats['forwards'] * train.n_trial / train.gradient_accumulation_steps
        self.it += 1
        return dt, fwd

    def burn(self):
        for _ in range(burnin):
            self.step()
        in_start = lambda: self.train.line_search and self.train.optimizer.in_start
        for _ in range(max_start):
            if not in_start():
                break
            self.step()
        if in_start():
            fail(f"{self.label}: still in its start (warmup or range test) after {burnin + max_start} steps; "
                 f"raise max_start or lower --warmup_iters")

class Collectives(TorchDispatchMode):
    """Counts the collectives dispatched while active: {op: (count, bytes)}, bytes of the largest tensor each
    touches (an all-gather's output, an all-reduce's buffer)."""
    NAMESPACES = ('c10d', 'c10d_functional', '_c10d_functional')
    NOT_COLLECTIVES = ('wait_tensor', '_wrap_tensor_autograd', 'barrier', 'monitored_barrier')

    def __init__(self):
        super().__init__()
        self.ops = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func._overloadpacket.__name__
        if func.namespace in self.NAMESPACES and name not in self.NOT_COLLECTIVES:
            flat = torch.utils._pytree.tree_leaves([args, kwargs, out])
            size = max((t.numel() * t.element_size() for t in flat if isinstance(t, torch.Tensor)), default=0)
            count, total = self.ops.get(name, (0, 0))
            self.ops[name] = (count + 1, total + size)
        return out

def collectives_per_step(s):
    """One more (untimed) step of setting s under Collectives: {op: {'count', 'bytes'}} ({}: one process)."""
    if not dist.is_initialized():
        return {}
    with Collectives() as seen:
        s.step()
    return {op: dict(count=c, bytes=b) for op, (c, b) in sorted(seen.ops.items())}

def rss_bytes():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')

def probe_memory(i):
    """This process: one setting, burnin + mem_steps steps; prints its peak memory in bytes."""
    s = Setting(specs[i])
    if s.cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base = 0 if s.cuda else rss_bytes()
    s.burn()
    for _ in range(mem_steps):
        s.step()
    peak = (torch.cuda.max_memory_allocated() if s.cuda else
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base)
    print(f"MEM_PEAK {peak}")

def measure_memory(i):
    p = subprocess.run([sys.executable, os.path.abspath(__file__), *sys.argv[1:], f'--mem_probe={i}'],
                       capture_output=True, text=True)
    peaks = [int(l.split()[1]) for l in p.stdout.splitlines() if l.startswith('MEM_PEAK ')]
    if p.returncode != 0 or not peaks:
        fail(f"memory probe of {labels[i]!r} failed: {p.stderr.strip()[-500:]}")
    return peaks[0]

def pct(a, q):
    return float(np.percentile(np.asarray(a), q))

def main():
    torch.set_num_threads(num_threads)
    if mem_probe >= 0:
        return probe_memory(mem_probe)
    runs = [Setting(spec) for spec in specs]
    for s in runs:
        s.burn()
    for _ in range(timed_steps): # interleaved: one step of each setting in turn
        for s in runs:
            dt, fwd = s.step()
            s.times.append(dt)
            s.fwds.append(fwd)
    comms = {s.label: collectives_per_step(s) for s in runs}
    results = {}
    for s in runs:
        train, med = s.train, float(np.median(s.times))
        accum, fwd = train.gradient_accumulation_steps, float(np.mean(s.fwds))
        mfu = None
        if s.cuda: # extra_forwards in sequences: the trial forwards beyond the training forward
            mfu = train.raw_model.estimate_mfu(train.config['batch_size'] * accum, med,
                                               extra_forwards=(fwd - 1.0) * train.config['batch_size']
                                               * accum)
        hp = {k: v for k, v in train.optimizer.param_groups[0].items() if isinstance(v, (int, float, bool,
                                                                                         str))}
        results[s.label] = dict(optimizer=train.config['optimizer'], gradient_accumulation_steps=accum,
                                tokens_per_step=train.tokens_per_iter,
                                n_trial=train.n_trial if train.line_search else None,
                                step_time_s=med, step_time_p10_s=pct(s.times,
                                                                     10), step_time_p90_s=pct(s.times, 90),
                                tokens_per_s=train.tokens_per_iter / med, mfu=mfu, forwards_per_step=fwd,
                                final_eta=train.optimizer.eta if train.line_search else None, hparams=hp,
                                step_times_s=s.times, collectives_per_step=comms[s.label])
    device = runs[0].train.device
    del runs, s, train # free the models before the probes (the step's closures refer to their run: a cycle)
    gc.collect()
    if 'cuda' in device:
        torch.cuda.empty_cache()
    # torchrun: no memory probes (one process each would need its own group)
    distributed = dist.is_initialized()
    for i, label in enumerate(labels):
        results[label]['peak_mem_bytes'] = None if distributed else measure_memory(i)
    for v in results.values(): # against the first adamw setting with the same tokens per step (accumulation)
        base = next((b for b in results.values()
                     if b['optimizer'] == 'adamw' and b['tokens_per_step'] == v['tokens_per_step']), None)
        v['step_time_ratio_vs_adamw'] = v['step_time_s'] / base['step_time_s'] if base else None
        v['peak_mem_ratio_vs_adamw'] = (v['peak_mem_bytes'] / base['peak_mem_bytes']
                                        if base and not distributed else None)
    world = 1
    if distributed:
        rank, world = dist.get_rank(), dist.get_world_size()
        dist.destroy_process_group()
        if rank != 0:
            return None
    report = dict(results=results, settings=labels, train_args=[*train_defaults, *train_args], config=config,
                  device=torch.cuda.get_device_name(device) if 'cuda' in device else
                  f"cpu ({torch.get_num_threads()} threads, {os.cpu_count()} cores visible)",
                  torch=torch.__version__,
                  memory_method='torch.cuda.max_memory_allocated' if 'cuda' in device else
                  'peak RSS (ru_maxrss) minus RSS before the first step',
                  timing=f'median of {timed_steps} interleaved steps after {burnin} untimed and the start',
                  world_size=world)
    f = lambda x, fmt: fmt % x if x is not None else '-'
    print(f"{report['device']}, torch {torch.__version__}, {world} process(es); {burnin} untimed + "
          f"{timed_steps} timed steps per setting")
    print(f"{'setting':<36} {'ms/step':>8} {'p10':>8} {'p90':>8} {'x adamw':>8} {'tok/s':>9} {'mfu %':>6} "
          f"{'peak MiB':>9} {'mem x':>6} {'fwd/step':>8}")
    for label, v in results.items():
        print(f"{label:<36} {v['step_time_s']*1e3:8.1f} {v['step_time_p10_s']*1e3:8.1f} "
              f"{v['step_time_p90_s']*1e3:8.1f} {f(v['step_time_ratio_vs_adamw'], '%.3f'):>8} "
              f"{v['tokens_per_s']:9.0f} {f(v['mfu'] and v['mfu']*100, '%.2f'):>6} "
              f"{f(v['peak_mem_bytes'] and v['peak_mem_bytes']/2**20, '%.1f'):>9} "
              f"{f(v['peak_mem_ratio_vs_adamw'], '%.3f'):>6} {v['forwards_per_step']:8.3f}")
    if distributed:
        print("collectives per step (count, MiB of the largest tensor each touches):")
        for label, v in results.items():
            ops = ', '.join(f"{op} {c['count']} ({c['bytes']/2**20:.2f} MiB)"
                            for op, c in v['collectives_per_step'].items())
            print(f"  {label:<34} {ops or '-'}")
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, 'w') as fh:
            json.dump(report, fh, indent=1)
        print(f"wrote {out}")
    return report

if __name__ == '__main__':
    main()
