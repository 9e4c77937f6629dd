"""train.py end to end on CPU (subprocesses, tiny model): loss falls, exact resume after kill -9, DDP, eval_only."""
import math
import os
import signal
import subprocess
import sys

import pytest
import torch

import trainutil as tu


def load(path):
    return torch.load(path, map_location='cpu', weights_only=True)


# ----------------------------------------------------------------------------- (a) the loss falls

@pytest.fixture(scope='module')
def loss_runs(tiny_dataset, tmp_path_factory):
    """20-iteration runs with AdamW and with ALSALS (5 AdamW warmup steps), run side by side."""
    def run(optimizer):
        out = str(tmp_path_factory.mktemp(f'loss_{optimizer}'))
        extra = dict(ls_ema_warmup_steps=3) if optimizer == 'alsals' else {}
        return out, tu.train(dataset=tiny_dataset, out_dir=out, optimizer=optimizer, max_iters=20, warmup_iters=5,
                             **extra)
    return dict(zip(['adamw', 'alsals'], tu.parallel(lambda: run('adamw'), lambda: run('alsals'))))


@pytest.mark.parametrize('optimizer', ['adamw', 'alsals'])
def test_loss_falls(tiny_dataset, loss_runs, optimizer):
    out, r = loss_runs[optimizer]
    tu.check_ok(r)
    losses = tu.iter_losses(r.stdout)
    assert sorted(losses) == list(range(21))  # iters 0..max_iters
    vals = {i: float(v) for i, v in losses.items()}
    assert all(math.isfinite(v) for v in vals.values())
    vocab = tu.vocab_of(tiny_dataset)['vocab_size']
    assert abs(vals[0] - math.log(vocab)) < 0.15  # init loss ~ ln(vocab)
    first, last = sum(vals[i] for i in range(3)) / 3, sum(vals[i] for i in range(18, 21)) / 3
    assert last < first - 0.5, (first, last)
    steps = tu.step_losses(r.stdout)
    assert [s[0] for s in steps] == [0, 10, 20]
    assert steps[-1][2] < steps[0][2] - 0.5  # val loss too
    if optimizer == 'alsals':
        assert '(warmup)' in r.stdout and ', fwd ' in r.stdout
        assert 'iter 5: ' in r.stdout and '(warmup)' not in r.stdout.split('iter 5: ')[1].splitlines()[0]
    ck = load(os.path.join(out, 'ckpt.pt'))
    assert ck['iter_num'] == 20 and ck['config']['optimizer'] == optimizer


# ----------------------------------------------------------------------------- (b, c) exact resume after kill -9

N = 8  # checkpoint at N, runs end at 2N


def resume_args(tiny_dataset, out_dir, optimizer, **kw):
    cfg = dict(dataset=tiny_dataset, out_dir=out_dir, optimizer=optimizer, max_iters=2 * N, eval_interval=N,
               always_save_checkpoint=True, dropout=0.1, warmup_iters=4, lr_decay_iters=2 * N)
    if optimizer == 'alsals':
        cfg.update(ls_ema_warmup_steps=2)
    cfg.update(kw)
    return tu.args_of(**cfg)


def run_until_killed(args, out_dir):
    """Start train.py, SIGKILL it as soon as a line follows the 'saving checkpoint' of the step-N eval.
    Returns the stdout read so far."""
    p = subprocess.Popen([sys.executable, os.path.join(tu.ROOT, 'train.py'), *args], cwd=tu.ROOT, env=tu.env_of(),
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
    lines, state = [], 'before'
    try:
        for line in p.stdout:
            lines.append(line)
            if state == 'before' and line.startswith(f'step {N}:'):
                state = 'eval'
            elif state == 'eval' and line.startswith('saving checkpoint'):
                state = 'saved'
            elif state == 'saved':
                os.kill(p.pid, signal.SIGKILL)  # a real kill -9, mid-run
                state = 'killed'
                break
    finally:
        if state != 'killed':
            p.kill()
        p.stdout.close()
        p.wait(timeout=60)
    assert state == 'killed', ''.join(lines)
    assert p.returncode == -signal.SIGKILL
    return ''.join(lines)


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


@pytest.mark.parametrize('optimizer', ['adamw', 'alsals'])
def test_exact_resume_after_kill(tiny_dataset, tmp_path, optimizer):
    dir_a, dir_b = str(tmp_path / 'A'), str(tmp_path / 'B')

    def run_a():  # A: uninterrupted
        return tu.run_script('train.py', *resume_args(tiny_dataset, dir_a, optimizer))

    def run_b():  # B: killed right after the iter-N checkpoint, then resumed
        out_b1 = run_until_killed(resume_args(tiny_dataset, dir_b, optimizer), dir_b)
        assert load(os.path.join(dir_b, 'ckpt.pt'))['iter_num'] == N
        assert not [f for f in os.listdir(dir_b) if f != 'ckpt.pt']  # no temp file left behind
        return out_b1, tu.run_script('train.py', *resume_args(tiny_dataset, dir_b, optimizer, init_from='resume'))

    ra, (out_b1, rb) = tu.parallel(run_a, run_b)
    tu.check_ok(ra)
    tu.check_ok(rb)

    # (b) the resumed run continues from the checkpoint's iteration
    assert f'Resuming training from {dir_b}' in rb.stdout
    assert tu.step_losses(rb.stdout)[0][0] == N
    losses_a, losses_b1, losses_b = tu.iter_losses(ra.stdout), tu.iter_losses(out_b1), tu.iter_losses(rb.stdout)
    assert sorted(losses_b) == list(range(N, 2 * N + 1))
    # same run before the kill (sanity), and the logged losses after resuming equal the uninterrupted run's
    assert all(losses_b1[i] == losses_a[i] for i in losses_b1)
    assert [losses_b[i] for i in range(N, 2 * N + 1)] == [losses_a[i] for i in range(N, 2 * N + 1)]
    assert tu.step_losses(rb.stdout) == [s for s in tu.step_losses(ra.stdout) if s[0] >= N]

    # (c) both wrote ckpt.pt at iter 2N: bit-identical parameters, optimizer (incl. line-search) and RNG state
    ca, cb = load(os.path.join(dir_a, 'ckpt.pt')), load(os.path.join(dir_b, 'ckpt.pt'))
    assert ca['iter_num'] == cb['iter_num'] == 2 * N
    assert set(ca['model']) == set(cb['model'])
    for k in ca['model']:
        assert torch.equal(ca['model'][k], cb['model'][k]), k
    assert_same(ca['optimizer'], cb['optimizer'], 'optimizer')
    assert_same(ca['rng'], cb['rng'], 'rng')
    assert ca['best_val_loss'] == cb['best_val_loss']
    if optimizer == 'alsals':
        ls = ca['optimizer']['state']['search']  # torch style: the search state lives in the optimizer's state
        assert ls['step'] == 2 * N and ls['totals']['forwards'] > 0  # the search ran after the warmup
        assert ls == cb['optimizer']['state']['search']


# ----------------------------------------------------------------------------- (d) DDP on CPU (gloo)

@pytest.mark.parametrize('optimizer', ['adamw', 'alsals'])
def test_ddp_two_ranks_agree(tiny_dataset, tmp_path, optimizer):
    extra = dict(ls_ema_warmup_steps=3) if optimizer == 'alsals' else {}
    args = tu.args_of(dataset=tiny_dataset, out_dir=tmp_path, optimizer=optimizer, max_iters=50, eval_interval=25,
                      batch_size=4, gradient_accumulation_steps=2, learning_rate=3e-2, warmup_iters=5,
                      lr_decay_iters=50, **extra)
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
                        os.path.join(tu.ROOT, 'train.py'), *args], cwd=tu.ROOT, env=tu.env_of(),
                       capture_output=True, text=True, timeout=300)
    tu.check_ok(r)
    assert 'ddp param checksum: ' in r.stdout
    assert 'ranks agree: True' in r.stdout, r.stdout[-2000:]
    assert 'tokens per iteration will be: 256' in r.stdout  # 2 ranks x 1 micro-step x 4 x 32
    losses = {i: float(v) for i, v in tu.iter_losses(r.stdout).items()}
    assert sorted(losses) == list(range(51))
    vocab = tu.vocab_of(tiny_dataset)['vocab_size']
    assert abs(losses[0] - math.log(vocab)) < 0.15  # the logged loss is the mean over ranks, not the sum
    assert losses[50] < losses[0] - 0.5
    if optimizer == 'alsals':
        bts = [int(line.rsplit(', bt ', 1)[1].split()[0]) for line in r.stdout.splitlines()
               if line.startswith('iter ') and ', bt ' in line]
        assert len(bts) == 51 and sum(bts) > 0, 'expected some backtracks at learning_rate=3e-2'
    assert load(os.path.join(tmp_path, 'ckpt.pt'))['iter_num'] == 50


# ----------------------------------------------------------------------------- (e) eval_only

def test_eval_only(tiny_dataset, tmp_path, ckpt_copy):
    out, ckpt = ckpt_copy
    before = tu.file_bytes(ckpt)
    scratch, resumed = tu.parallel(
        lambda: tu.train(dataset=tiny_dataset, out_dir=tmp_path / 'scratch', eval_only=True),
        lambda: tu.train(dataset=tiny_dataset, out_dir=out, eval_only=True, init_from='resume', max_iters=20))
    # from scratch: one eval at step 0, no training, no checkpoint
    tu.check_ok(scratch)
    assert [s[0] for s in tu.step_losses(scratch.stdout)] == [0]
    assert not tu.iter_losses(scratch.stdout)
    assert not os.path.exists(tmp_path / 'scratch' / 'ckpt.pt')
    # resumed: one eval at the checkpoint's iteration, no training, the checkpoint is not rewritten
    tu.check_ok(resumed)
    assert [s[0] for s in tu.step_losses(resumed.stdout)] == [10]
    assert not tu.iter_losses(resumed.stdout)
    assert tu.file_bytes(ckpt) == before
