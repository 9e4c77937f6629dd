"""Helpers shared by the trainer tests: a tiny deterministic dataset, running train.py / sample.py as a user
does (subprocess, cwd = repo root, CPU, one thread), and parsing their logs. Imported as a plain module
(conftest.py puts tests/ on sys.path; tests/ is deliberately not a package)."""
import os
import pickle
import math
import random
import re
import subprocess
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# a tiny GPT that trains in milliseconds per step on one CPU thread
TINY = dict(n_layer=1, n_head=2, n_embd=32, block_size=32, batch_size=8, eval_iters=2, compile=False,
            device='cpu', dtype='float32', gradient_accumulation_steps=1, log_interval=1, bias=False,
            dropout=0.0, learning_rate=1e-2, min_lr=1e-3, warmup_iters=5, lr_decay_iters=20, max_iters=20,
            eval_interval=10, wandb_log=False)

WORDS = ("the of and to a in that is was he for it with as his on be at by this had not are but from or have "
         "an they which one you were her all she there would their we him been has when who will more no if "
         "out so said what up its about into than them can only other new some could time these two may then "
         "do first any my now such like our over man me even most made after also did many before must "
         "through back years where much your way well down should because each just those people how too "
         "little good very make world still own see men work long get here between both life being under "
         "never day same another know while last might great old year off come since against go came right "
         "used take three").split()


def tiny_text(n_chars=50_000, seed=0):
    """Deterministic pseudo-English: capitalised sentences of common words, a newline every few sentences."""
    rng = random.Random(seed)
    out, n = [], 0
    while n < n_chars:
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 12))]
        s = ' '.join(words).capitalize() + rng.choice('..,;!?') + rng.choice('  \n')
        out.append(s)
        n += len(s)
    return ''.join(out)[:n_chars]


def write_char_dataset(out_dir, n_chars=50_000, val_frac=0.1):
    """train.bin / val.bin (uint16 char ids) and meta.pkl, in the layout of
    data/shakespeare_char/prepare.py."""
    text = tiny_text(n_chars)
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    itos = {i: ch for i, ch in enumerate(chars)}
    ids = np.array([stoi[c] for c in text], dtype=np.uint16)
    n = int(len(ids) * (1 - val_frac))
    os.makedirs(out_dir, exist_ok=True)
    ids[:n].tofile(os.path.join(out_dir, 'train.bin'))
    ids[n:].tofile(os.path.join(out_dir, 'val.bin'))
    with open(os.path.join(out_dir, 'meta.pkl'), 'wb') as f:
        pickle.dump({'vocab_size': len(chars), 'itos': itos, 'stoi': stoi}, f)
    return out_dir


def vocab_of(dataset):
    with open(os.path.join(dataset, 'meta.pkl'), 'rb') as f:
        return pickle.load(f)


def args_of(**overrides):
    """--key=value arguments for train.py: TINY, then the overrides (value None drops a key)."""
    cfg = {**TINY, **overrides}
    return [f'--{k}={v}' for k, v in cfg.items() if v is not None]


def env_of(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'LOCAL_WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')}
    env.update(OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', PYTHONUNBUFFERED='1', WANDB_MODE='disabled')
    env.update(extra)
    return env


def run_script(script, *args, timeout=300, env=None):
    """Run a repo script (train.py, sample.py) with sys.executable, cwd = repo root (env: env_of()'s)."""
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *args], cwd=ROOT, env=env or env_of(),
                          capture_output=True, text=True, timeout=timeout)


def train(*args, timeout=300, **overrides):
    """train.py with TINY + overrides (+ extra positional args, e.g. a config file)."""
    return run_script('train.py', *args, *args_of(**overrides), timeout=timeout)


def check_ok(r):
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}"
    return r


def check_one_line_error(r, *needles):
    """Exit code != 0, exactly one line on stderr, no traceback, and the line mentions every needle."""
    assert r.returncode != 0, f"expected a failure, got exit 0\nstdout:\n{r.stdout[-2000:]}"
    assert 'Traceback' not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{r.stderr}"
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


ITER_RE = re.compile(r'^iter (\d+): loss (\S+),', re.M)
STEP_RE = re.compile(r'^step (\d+): train loss (\S+), val loss (\S+)$', re.M)


def iter_losses(stdout):
    """{iter: loss as logged (string, so equality is exact to the printed digits)} from 'iter N: loss X'
    lines."""
    return {int(i): loss for i, loss in ITER_RE.findall(stdout)}


def step_losses(stdout):
    """[(iter, train loss, val loss)] of the eval lines."""
    return [(int(i), float(t), float(v)) for i, t, v in STEP_RE.findall(stdout)]


def file_bytes(path):
    with open(path, 'rb') as f:
        return f.read()


def parallel(*thunks, workers=2):
    """Call the thunks (each starts a single-threaded subprocess) two at a time: the machine's 2 cores in use
    while pytest itself runs tests one by one. Returns their results in order; re-raises the first error."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=workers) as ex:
        futures = [ex.submit(t) for t in thunks]
        return [f.result() for f in futures]


def assert_same(a, b, path='state'):
    """Recursive bit-exact equality of checkpoint contents."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, path
        assert torch.equal(a, b), path
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (path, set(a) ^ set(b))
        for k in a:
            assert_same(a[k], b[k], f'{path}.{k}')
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f'{path}[{i}]')
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), path
    else:
        assert a == b, (path, a, b)
