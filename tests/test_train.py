"""train.py end to end on CPU (subprocesses, tiny model): loss falls, exact resume after kill -9, DDP,
eval_only."""
import json
import math
import os
import shutil
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
        return out, tu.train(dataset=tiny_dataset, out_dir=out, optimizer=optimizer, max_iters=20,
                             warmup_iters=5, **extra)
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


# -------------------------------------------------------------------------- (b, c) exact resume after kill -9

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
    p = subprocess.Popen([sys.executable, os.path.join(tu.ROOT, 'train.py'), *args], cwd=tu.ROOT,
                         env=tu.env_of(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         bufsize=1)
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


@pytest.mark.parametrize('optimizer', ['adamw', 'alsals'])
def test_exact_resume_after_kill(tiny_dataset, tmp_path, optimizer):
    dir_a, dir_b = str(tmp_path / 'A'), str(tmp_path / 'B')

    def run_a():  # A: uninterrupted
        return tu.run_script('train.py', *resume_args(tiny_dataset, dir_a, optimizer))

    def run_b():  # B: killed right after the iter-N checkpoint, then resumed
        out_b1 = run_until_killed(resume_args(tiny_dataset, dir_b, optimizer), dir_b)
        assert load(os.path.join(dir_b, 'ckpt.pt'))['iter_num'] == N
        assert not [f for f in os.listdir(dir_b) if f != 'ckpt.pt']  # no temp file left behind
        return out_b1, tu.run_script('train.py', *resume_args(tiny_dataset, dir_b, optimizer,
                                                              init_from='resume'))

    ra, (out_b1, rb) = tu.parallel(run_a, run_b)
    tu.check_ok(ra)
    tu.check_ok(rb)

    # (b) the resumed run continues from the checkpoint's iteration
    assert f'Resuming training from {dir_b}' in rb.stdout
    assert tu.step_losses(rb.stdout)[0][0] == N
    losses_a, losses_b1, losses_b = (tu.iter_losses(ra.stdout), tu.iter_losses(out_b1),
                                     tu.iter_losses(rb.stdout))
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
    tu.assert_same(ca['optimizer'], cb['optimizer'], 'optimizer')
    tu.assert_same(ca['rng'], cb['rng'], 'rng')
    assert ca['best_val_loss'] == cb['best_val_loss']
    if optimizer == 'alsals':
        ls = ca['optimizer']['param_groups'][0]  # torch style: the search's scalars live in the param groups
        assert ls['step'] == 2 * N and ls['forwards'] > 0  # the search ran after the warmup


# ----------------------------------------------------------------------------- (d) DDP on CPU (gloo)

@pytest.mark.parametrize('optimizer', ['adamw', 'alsals'])
def test_ddp_two_ranks_agree(tiny_dataset, tmp_path, optimizer):
    extra = dict(ls_ema_warmup_steps=3) if optimizer == 'alsals' else {}
    args = tu.args_of(dataset=tiny_dataset, out_dir=tmp_path, optimizer=optimizer, max_iters=50,
                      eval_interval=25, batch_size=4, gradient_accumulation_steps=2, learning_rate=3e-2,
                      warmup_iters=5, lr_decay_iters=50, **extra)
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
        bts = [int(line.rsplit(', bt ', 1)[1].split(',')[0].split()[0]) for line in r.stdout.splitlines()
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


# ----------------------------------------------------------------------------- DDP resume: per-rank RNG

def torchrun(*args, timeout=300):
    return subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone',
                           '--nproc_per_node=2', os.path.join(tu.ROOT, 'train.py'),
                           *args], cwd=tu.ROOT, env=tu.env_of(),
                          capture_output=True, text=True, timeout=timeout)


def test_ddp_resume_bit_exact_with_dropout(tiny_dataset, tmp_path):
    """2 gloo ranks, dropout > 0: a run stopped at iter N and resumed ends bit-identical to an uninterrupted
    one. Each rank's own RNG state is checkpointed and restored (every rank used to restore rank 0's, so after
    a resume rank 1 replayed rank 0's dropout masks)."""
    dir_a, dir_b = str(tmp_path / 'A'), str(tmp_path / 'B')

    def args(out, **kw):
        cfg = dict(dataset=tiny_dataset, out_dir=out, optimizer='alsals', dropout=0.2, batch_size=4,
                   gradient_accumulation_steps=2, warmup_iters=3, ls_ema_warmup_steps=2, lr_decay_iters=2 * N,
                   eval_interval=N, max_iters=2 * N)
        cfg.update(kw)
        return tu.args_of(**cfg)

    ra, rb1 = tu.parallel(lambda: torchrun(*args(dir_a)), lambda: torchrun(*args(dir_b, max_iters=N)))
    tu.check_ok(ra)
    tu.check_ok(rb1)
    ck = load(os.path.join(dir_b, 'ckpt.pt'))
    assert ck['iter_num'] == N and len(ck['rng']) == 2  # one RNG state per rank
    assert not torch.equal(ck['rng'][0]['cpu'], ck['rng'][1]['cpu'])
    rb = torchrun(*args(dir_b, init_from='resume'))
    tu.check_ok(rb)
    assert 'note: the checkpoint holds the RNG states' not in rb.stdout
    losses_a, losses_b = tu.iter_losses(ra.stdout), tu.iter_losses(rb.stdout)
    assert sorted(losses_b) == list(range(N, 2 * N + 1))
    assert [losses_b[i] for i in losses_b] == [losses_a[i] for i in losses_b]
    ca, cb = load(os.path.join(dir_a, 'ckpt.pt')), load(os.path.join(dir_b, 'ckpt.pt'))
    assert ca['iter_num'] == cb['iter_num'] == 2 * N
    for k in ca['model']:
        assert torch.equal(ca['model'][k], cb['model'][k]), k
    tu.assert_same(ca['optimizer'], cb['optimizer'], 'optimizer')
    tu.assert_same(ca['rng'], cb['rng'], 'rng')


def test_fsdp_trains_resumes_exactly_and_samples(tiny_dataset, tmp_path):
    """--fsdp=True under torchrun (2 gloo ranks): FSDP2 on each block and the root, the line search on the
    sharded parameters, checkpoints with torch.distributed.checkpoint (ckpt.pt names the shard directory). A
    run stopped at iter N and resumed prints the same losses as an uninterrupted one and ends with
    bit-identical shards; sample.py samples from the checkpoint; resuming it without --fsdp is a one-line
    error."""
    dir_a, dir_b = str(tmp_path / 'A'), str(tmp_path / 'B')

    def args(out, **kw):
        cfg = dict(dataset=tiny_dataset, out_dir=out, optimizer='alsals', fsdp=True, dropout=0.2,
                   batch_size=4, gradient_accumulation_steps=2, warmup_iters=3, ls_ema_warmup_steps=2,
                   lr_decay_iters=2 * N, eval_interval=N, max_iters=2 * N, always_save_checkpoint=True)
        cfg.update(kw)
        return tu.args_of(**cfg)

    ra, rb1 = tu.parallel(lambda: torchrun(*args(dir_a)), lambda: torchrun(*args(dir_b, max_iters=N)))
    tu.check_ok(ra)
    tu.check_ok(rb1)
    assert load(os.path.join(dir_b, 'ckpt.pt'))['dcp'] == f'ckpt_dcp_{N}'
    rb = tu.check_ok(torchrun(*args(dir_b, init_from='resume')))
    losses_a, losses_b = tu.iter_losses(ra.stdout), tu.iter_losses(rb.stdout)
    assert sorted(losses_b) == list(range(N, 2 * N + 1))
    assert [losses_b[i] for i in losses_b] == [losses_a[i] for i in losses_b]
    ca, cb = load(os.path.join(dir_a, 'ckpt.pt')), load(os.path.join(dir_b, 'ckpt.pt'))
    assert ca['dcp'] == cb['dcp'] == f'ckpt_dcp_{2 * N}' and sorted(os.listdir(dir_b)) == ['ckpt.pt',
                                                                                           cb['dcp']]
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
    full = []
    # the shards gathered, in one process
    for d in (dir_a, dir_b):
        dcp_to_torch_save(os.path.join(d, ca['dcp']), os.path.join(d, 'full.pt'))
        full.append(torch.load(os.path.join(d, 'full.pt'), weights_only=False))
    assert set(full[0]['model']) == set(full[1]['model']) and len(full[0]['optimizer']['state']) > 0
    tu.assert_same(full[0], full[1], 'model and optimizer')
    s = tu.check_ok(tu.run_script('sample.py', f'--out_dir={dir_b}', '--device=cpu', '--num_samples=1',
                                  '--max_new_tokens=20'))
    assert s.stdout.strip()
    tu.check_one_line_error(tu.train(dataset=tiny_dataset, out_dir=dir_b, init_from='resume',
                                     optimizer='alsals'),
                            'fsdp=True')


@pytest.mark.parametrize('optimizer', ['muonsls'])
def test_fsdp_muon_matches_ddp_resumes_exactly_and_samples(tiny_dataset, tmp_path, optimizer):
    """config/train_shakespeare_char_muon.py (tiny), --fsdp=True on 2 gloo ranks: the Muon matrices are
    sharded, gathered for Newton-Schulz. Its losses stay within 1e-5 of the same run under DDP (the same
    batches on each rank, whole matrices: one process's optimizer on each) for 30 steps; stopped at 20 and
    resumed through DCP it logs the same losses as the straight run; sample.py samples from its checkpoint.
    MuonSLS (a 3-step warmup, then the search) takes Muon's sharded direction and adds the search; plain Muon
    under FSDP2 is checked against one process, and through DCP, in tests/test_muon.py."""
    runs = {name: str(tmp_path / name) for name in ('fsdp', 'ddp', 'stopped')}

    def args(name, **kw):
        cfg = dict(dataset=tiny_dataset, out_dir=runs[name], optimizer=optimizer, fsdp=name != 'ddp',
                   batch_size=4, dropout=0.0, gradient_accumulation_steps=2, warmup_iters=3,
                   lr_decay_iters=30, eval_interval=10, max_iters=30, always_save_checkpoint=True,
                   log_file=os.path.join(runs[name], 'log.jsonl'),
                   ls_ema_warmup_steps=2 if optimizer == 'muonsls' else None)
        cfg.update(kw)
        return [os.path.join('config', 'train_shakespeare_char_muon.py'), *tu.args_of(**cfg)]

    def losses(name):
        with open(os.path.join(runs[name], 'log.jsonl')) as f:
            return {r['iter']: r['loss'] for r in map(json.loads, f) if 'loss' in r}

    for r in tu.parallel(lambda: torchrun(*args('fsdp')), lambda: torchrun(*args('stopped', max_iters=20))):
        tu.check_ok(r)
    for r in tu.parallel(lambda: torchrun(*args('ddp')), lambda: torchrun(*args('stopped',
                                                                                init_from='resume'))):
        tu.check_ok(r)
    sharded, whole, resumed = losses('fsdp'), losses('ddp'), losses('stopped')
    assert sorted(sharded) == sorted(whole) == sorted(resumed) == list(range(31))
    # float32: DDP's all-reduce and FSDP2's reduce-scatter round the gradient's last bit differently, and
    # Newton-Schulz's bfloat16 cast turns such a bit now and then into a bfloat16 step (float64: within 1e-5,
    # tests/test_muon.py); a shard's own Newton-Schulz is off by far more
    assert all(abs(sharded[i] - whole[i]) <= 1e-3 for i in sharded), \
        max(abs(sharded[i] - whole[i]) for i in sharded)
    assert sharded[30] < sharded[0] - 0.5
    assert resumed == sharded                                                  # bit for bit, through DCP
    assert load(os.path.join(runs['stopped'], 'ckpt.pt'))['dcp'] == 'ckpt_dcp_30'
    s = tu.check_ok(tu.run_script('sample.py', f"--out_dir={runs['stopped']}", '--device=cpu',
                                  '--num_samples=1', '--max_new_tokens=20'))
    assert s.stdout.strip()


def test_resume_on_other_world_size_reseeds_with_notice(tiny_dataset, tmp_path):
    """A 2-rank checkpoint resumed by one process: a one-line notice and a deterministic reseed (two such
    resumes agree bit for bit)."""
    out = str(tmp_path / 'ddp')
    tu.check_ok(torchrun(*tu.args_of(dataset=tiny_dataset, out_dir=out, dropout=0.2, batch_size=4,
                                     gradient_accumulation_steps=2, max_iters=4, eval_interval=4)))
    runs = []
    for name in ('r1', 'r2'):
        d = tmp_path / name
        d.mkdir()
        shutil.copy2(os.path.join(out, 'ckpt.pt'), d / 'ckpt.pt')
        runs.append(tu.train(dataset=tiny_dataset, out_dir=str(d), init_from='resume', dropout=0.2,
                             batch_size=4, gradient_accumulation_steps=2, max_iters=8, eval_interval=4))
    for r in runs:
        tu.check_ok(r)
        notes = [line for line in r.stdout.splitlines() if line.startswith('note: the checkpoint holds the '
                                                                           'RNG states')]
        assert len(notes) == 1 and 'of 2 ranks, this run has 1' in notes[0]
    assert tu.iter_losses(runs[0].stdout) == tu.iter_losses(runs[1].stdout)


# ----------------------------------------------------------------------------- resume keeps the algorithm

def test_resume_keeps_or_announces_algorithm_settings(tiny_dataset, tmp_path):
    """The line search's settings live in the checkpoint (param_groups): resuming without ls_c keeps the run's
    ls_c; a different ls_c or warmup_iters is applied with a one-line notice each."""
    base = dict(dataset=tiny_dataset, optimizer='alsals', ls_c=0.5, warmup_iters=3, ls_ema_warmup_steps=2,
                lr_decay_iters=12, eval_interval=6, max_iters=6)
    first = str(tmp_path / 'first')
    tu.check_ok(tu.train(out_dir=first, **base))
    dirs = {}
    for name in ('same', 'changed'):
        dirs[name] = tmp_path / name
        dirs[name].mkdir()
        shutil.copy2(os.path.join(first, 'ckpt.pt'), dirs[name] / 'ckpt.pt')
    resume = dict(base, init_from='resume', max_iters=12)
    same, changed = tu.parallel(
        lambda: tu.train(**dict(resume, out_dir=str(dirs['same']), ls_c=None)),  # ls_c not given
        lambda: tu.train(**dict(resume, out_dir=str(dirs['changed']), ls_c=0.3, warmup_iters=4)))
    tu.check_ok(same)
    tu.check_ok(changed)
    assert not [line for line in same.stdout.splitlines() if line.startswith('note:')]
    notes = [line for line in changed.stdout.splitlines() if line.startswith('note:')]
    assert notes == ["note: resuming with warmup_iters=4 (the checkpoint's run used 3)",
                     "note: resuming with ls_c=0.3 (the checkpoint's run used 0.5)"]
    g_same = load(os.path.join(dirs['same'], 'ckpt.pt'))['optimizer']['param_groups']
    g_changed = load(os.path.join(dirs['changed'], 'ckpt.pt'))['optimizer']['param_groups']
    assert all(g['c'] == 0.5 and g['warmup_steps'] == 3 for g in g_same)
    assert all(g['c'] == 0.3 and g['warmup_steps'] == 4 for g in g_changed)


# ---------------------------------------------------------------------------- annealing reaches the optimizer

def test_anneal_reaches_the_optimizer(tiny_dataset, tmp_path):
    """With ls_anneal_frac the line search's lr schedule is warmup-stable-decay: the loop sets each group's
    lr, the JSON log records lr/learning_rate (1, then linear to ls_anneal_to = 0.1; min_lr plays no part),
    and the optimizer applies eta * lr/lr_0 (lr_0 = learning_rate, the lr at the hand-off): the final
    checkpoint's groups hold the last lr and lr_0."""
    log = tmp_path / 'log.jsonl'
    tu.check_ok(tu.train(dataset=tiny_dataset, out_dir=str(tmp_path / 'out'), optimizer='alsals',
                         max_iters=20, eval_interval=20, warmup_iters=4, ls_ema_warmup_steps=2,
                         lr_decay_iters=20, learning_rate=1e-2, min_lr=5e-4, ls_anneal_frac=0.5,
                         log_interval=1, log_file=str(log)))
    recs = [json.loads(line) for line in open(log) if '"loss"' in line]
    factor = {r['iter']: r['lr_factor'] for r in recs}
    assert [factor[i] for i in range(4, 11)] == [1.0] * 7
    assert factor[15] == pytest.approx(1 - 0.5 * 0.9) and factor[20] == pytest.approx(0.1)
    groups = load(os.path.join(tmp_path, 'out', 'ckpt.pt'))['optimizer']['param_groups']
    assert all(g['handoff_lr'] == 1e-2 and g['lr'] == pytest.approx(1e-3) for g in groups)
