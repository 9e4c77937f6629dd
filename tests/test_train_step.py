"""train.py's own step, in process: its setup as bench.py and the study get it (trainer.setup), then the step
(trainer/step.py: train_step, replay_closure), get_batch and get_lr called directly. Covers the trial
closure's dropout replay, the non-finite-gradient skip, PLASLS merging as train.py builds it, distinct eval
batches and the schedule's lr_decay_iters == warmup_iters case; and that trainer.setup documents every name it
returns."""
import copy
import re
import subprocess
import sys

import pytest
import torch

import model as model_module
import trainer.setup as trainer_setup
from trainer.setup import from_args
from trainer.step import ls_lr_base
import trainutil as tu


def setup(dataset, out_dir, **overrides):
    """train.py's setup (TINY + overrides), as bench.py gets it: trainer.setup's Run."""
    return from_args(tu.args_of(dataset=dataset, out_dir=str(out_dir), **overrides), cwd=tu.ROOT)


def test_setup_names_documented(tiny_dataset, tmp_path):
    """Every attribute of trainer.setup's Run is described in its docstring (the one place they are listed),
    and no other; the step it runs is trainer.step's with the Run's own model and optimizer."""
    documented = re.findall(r'^  (\w+) ', trainer_setup.__doc__, re.M)
    ns = setup(tiny_dataset, tmp_path)
    assert sorted(vars(ns)) == sorted(documented)
    assert ns.step_args['optimizer'] is ns.optimizer and ns.step_args['model'] is ns.model


def params_of(ns):
    return [p.detach().clone() for p in ns.raw_model.parameters()]


# ----------------------------------------------------------------------------- the trial closure

@pytest.mark.parametrize('accum,trial', [(1, 1), (3, 0), (3, 2)])
def test_replay_closure_equals_f_w_with_dropout(tiny_dataset, tmp_path, accum, trial):
    """At unchanged parameters the closure train_step hands the line search equals f(w) of the training
    forward bit for bit, with dropout on: it replays each micro-batch's RNG state. The caller's RNG state is
    kept."""
    ns = setup(tiny_dataset, tmp_path, optimizer='alsals', dropout=0.3, warmup_iters=2,
               gradient_accumulation_steps=accum, ls_trial_microsteps=trial)
    opt = ns.optimizer
    real_step, seen = opt.step, []

    def recording_step(closure=None, loss=None):
        rng = torch.get_rng_state()
        seen.append((closure(), closure(), loss))  # parameters not moved yet: f(w) at the same w, twice
        assert torch.equal(torch.get_rng_state(), rng)  # the training loop's RNG stream is not disturbed
        return real_step(closure=closure, loss=loss)

    opt.step = recording_step
    X, Y = ns.get_batch('train', 0)
    for it in range(4):  # 2 AdamW warmup steps, then searched steps
        X, Y, loss, applied = ns.train_step(X, Y, it)
        assert applied
    assert len(seen) == 4
    for f_closure, f_again, f_w in seen:
        assert f_w.dtype == torch.float32 and torch.isfinite(f_w)
        assert torch.equal(f_closure, f_w) and torch.equal(f_again, f_w)
    # dropout does change the loss here: without the replay the closure could not match
    with torch.no_grad():
        a, b = ns.model(X, Y)[1], ns.model(X, Y)[1]
    assert not torch.equal(a, b)


# --------------------------------------------------------------------------- non-finite gradient, finite loss

class NaNGrad(torch.autograd.Function):
    """Identity forward, NaN backward: a finite loss whose gradient is not finite."""
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return torch.full_like(g, float('nan'))


@pytest.mark.parametrize('optimizer,grad_clip,warmup', [('adamw', 1.0, 0), ('adamw', 0.0, 0), ('alsals', 1.0,
                                                                                               1),
                                                         ('alsals', 0.0, 1), ('alsals', 1.0, 5)])
def test_nonfinite_gradient_skips_update(tiny_dataset, tmp_path, optimizer, grad_clip, warmup):
    """A NaN gradient with a finite loss: train_step reports the update as not applied, and neither the
    parameters nor the optimizer state change (AdamW: clipped or not; the line search in warmup and after)."""
    ns = setup(tiny_dataset, tmp_path, optimizer=optimizer, grad_clip=grad_clip, warmup_iters=warmup)
    X, Y = ns.get_batch('train', 0)
    X, Y, loss, applied = ns.train_step(X, Y, 0)  # one good step: the optimizer has state
    assert applied and torch.isfinite(loss)
    before, state = params_of(ns), copy.deepcopy(ns.optimizer.state_dict())
    hook = ns.raw_model.transformer.h[0].mlp.c_fc.weight.register_hook(
        lambda g: torch.full_like(g, float('nan')))
    X, Y, loss, applied = ns.train_step(X, Y, 1)
    hook.remove()
    assert torch.isfinite(loss) and not applied
    for p, q in zip(params_of(ns), before):
        assert torch.equal(p, q)
    after = ns.optimizer.state_dict()
    # the search state records the skip itself; moments and everything else unchanged
    if optimizer != 'adamw':
        for g, g0 in zip(after['param_groups'], state['param_groups']):
            assert g['skipped'] == g0['skipped'] + 1
            g['skipped'] = g0['skipped']
    tu.assert_same(after, state, 'optimizer')
    # and the run goes on: the next good step is applied
    X, Y, loss, applied = ns.train_step(X, Y, 2)
    assert applied


# train.py itself, every gradient NaN while every loss is finite: model.GPT's forward is patched in the
# process
NAN_GRAD_RUN = """
import sys, torch, model
class NaNGrad(torch.autograd.Function):
    forward = staticmethod(lambda ctx, x: x.view_as(x))
    backward = staticmethod(lambda ctx, g: torch.full_like(g, float('nan')))
forward = model.GPT.forward
def nan_grad_forward(self, idx, targets=None):
    logits, loss = forward(self, idx, targets)
    return logits, (NaNGrad.apply(loss) if loss is not None and torch.is_grad_enabled() else loss)
model.GPT.forward = nan_grad_forward
sys.argv = ['train.py', *sys.argv[1:]]
exec(compile(open('train.py').read(), 'train.py', 'exec'), {'__name__': '__main__'})
"""


@pytest.mark.parametrize('optimizer', ['adamw', 'alsals'])
def test_nonfinite_gradients_counted_and_stop(tiny_dataset, tmp_path, optimizer):
    """The loop counts skipped steps like non-finite losses: max_nonfinite_steps in a row stop the run with a
    one-line error (here every gradient is NaN while every loss is finite)."""
    r = subprocess.run([sys.executable, '-c', NAN_GRAD_RUN,
                        *tu.args_of(dataset=tiny_dataset, out_dir=str(tmp_path), optimizer=optimizer,
                                    warmup_iters=2, max_nonfinite_steps=3, max_iters=20)],
                       cwd=tu.ROOT, env=tu.env_of(), capture_output=True, text=True, timeout=300)
    tu.check_one_line_error(r, 'non-finite')
    skipped = [line for line in r.stdout.splitlines()
               if 'update skipped: non-finite loss or gradient' in line]
    assert [line.split(':')[0] for line in skipped] == ['iter 0', 'iter 1', 'iter 2']
    losses = tu.iter_losses(r.stdout)
    assert all(float(v) < 10 for v in losses.values())  # the losses were finite all along


# ----------------------------------------------------------------------------- PLASLS as train.py builds it

def test_plasls_merges_when_built_by_train_py(tiny_dataset, tmp_path):
    """train.py passes only the ls_* that are set, so PLASLS keeps its own eta_min = 1e-14 below the merge
    threshold 1e-12, and components merge (train.py used to pass eta_min=1e-8: eta never reached 1e-12)."""
    ns = setup(tiny_dataset, tmp_path, optimizer='plasls', learning_rate=1e-12, warmup_iters=0,
               ls_n_components=3)
    opt = ns.optimizer
    assert opt.param_groups[0]['eta_min'] == 1e-14 and opt.param_groups[0]['merge_threshold'] == 1e-12
    X, Y = ns.get_batch('train', 0)
    counts = []
    for it in range(4):
        X, Y, loss, applied = ns.train_step(X, Y, it)
        counts.append(len({g['component'] for g in opt.param_groups}))
    # 3 components (after a whole-network first search), merged
    assert counts[0] == 3 and counts[-1] < 3, counts
    assert min(g['eta'] for g in opt.param_groups) < 1e-12


def test_ls_settings_reach_the_optimizer(tiny_dataset, tmp_path):
    """A set ls_* reaches the optimizer under its own name; an unset one is the variant's own default."""
    ns = setup(tiny_dataset, tmp_path, optimizer='adamsls', ls_c=0.3, ls_skip_stable=2, ls_smooth=True)
    g = ns.optimizer.param_groups[0]
    assert (g['c'], g['skip_stable'], g['smooth']) == (0.3, 2, True)
    ns = setup(tiny_dataset, tmp_path, optimizer='adamsls')
    g = ns.optimizer.param_groups[0]
    assert (g['c'], g['smooth'], g['eta_min']) == (0.1, False, 1e-8)  # AdamSLS's own defaults


# ----------------------------------------------------------------------------- batches and schedule

def test_eval_batches_all_distinct(tiny_dataset, tmp_path):
    """estimate_loss's eval_iters batches (indices -1 .. -eval_iters) are all different, on both splits, and
    different from the training batches (python's hash((.., -1)) == hash((.., -2)) made two of them equal)."""
    ns = setup(tiny_dataset, tmp_path, eval_iters=200, batch_size=2)
    for split in ('train', 'val'):
        batches = {tuple(ns.get_batch(split, -1 - k)[0].flatten().tolist()) for k in range(200)}
        assert len(batches) == 200, split
    train = {tuple(ns.get_batch('train', k)[0].flatten().tolist()) for k in range(50)}
    assert len(train) == 50 and not train & {tuple(ns.get_batch('train', -1 - k)[0].flatten().tolist())
                                            for k in range(200)}


def test_lr_schedule_when_decay_ends_with_warmup(tiny_dataset, tmp_path):
    """lr_decay_iters == warmup_iters: warmup, then min_lr (it divided by zero at it == warmup_iters)."""
    ns = setup(tiny_dataset, tmp_path, learning_rate=1e-2, min_lr=1e-3, warmup_iters=5, lr_decay_iters=5)
    get_lr = ns.get_lr
    assert [get_lr(i) for i in range(5)] == [1e-2 * (i + 1) / 6 for i in range(5)]
    assert get_lr(5) == get_lr(6) == 1e-3
    ns = setup(tiny_dataset, tmp_path, learning_rate=1e-2, min_lr=1e-3, warmup_iters=5, lr_decay_iters=15)
    # cosine as before
    assert ns.get_lr(5) == pytest.approx(1e-2) and ns.get_lr(15) == 1e-3 and 1e-3 < ns.get_lr(10) < 1e-2


def test_anneal_schedule(tiny_dataset, tmp_path):
    """The line search's lr schedule (it scales the applied step, eta * lr/learning_rate, after the warmup):
    the warmup ramp, then learning_rate until the last ls_anneal_frac of lr_decay_iters, then linear to
    ls_anneal_to * learning_rate at lr_decay_iters, where it stays (min_lr plays no part); ls_anneal_frac = 0:
    constant after the warmup (the paper). AdamW keeps its cosine."""
    ns = setup(tiny_dataset, tmp_path, optimizer='alsals', learning_rate=1e-2, min_lr=5e-4, warmup_iters=10,
               lr_decay_iters=100, ls_anneal_frac=0.2, ls_anneal_to=0.2)
    f = ns.get_lr
    assert f(4) == pytest.approx(1e-2 * 5 / 11) and [f(i) for i in (10, 79, 80)] == [1e-2, 1e-2, 1e-2]
    assert f(90) == pytest.approx(1e-2 * (1.0 - 0.5 * 0.8)) and f(100) == pytest.approx(2e-3)
    assert f(150) == pytest.approx(2e-3) and all(f(i) > f(i + 1) for i in range(80, 100))
    ns = setup(tiny_dataset, tmp_path, optimizer='alsals', learning_rate=1e-2, min_lr=1e-3, warmup_iters=10,
               lr_decay_iters=100)
    assert all(ns.get_lr(i) == 1e-2 for i in range(10, 200, 7))   # the default: the paper's constant step
    ns = setup(tiny_dataset, tmp_path, learning_rate=1e-2, min_lr=1e-3, warmup_iters=10, lr_decay_iters=100)
    assert 1e-3 < ns.get_lr(50) < 1e-2 and ns.get_lr(100) == 1e-3                  # AdamW: cosine


@pytest.mark.parametrize('config', ['config/train_shakespeare_char_alsals.py', 'config/train_gpt2_alsals.py'])
def test_shipped_alsals_configs_read_no_learning_rate(tiny_dataset, tmp_path, config):
    """The shipped ALSALS configs start their range test at ls_ramp_from whatever --learning_rate is: from
    first guesses 1e-4 and 1e-1, the training steps through range test, hold, search and the anneal (the last
    20 % of
    lr_decay_iters = 30, to iteration 36) give bit-identical losses, step sizes, applied steps and weights,
    starting at eta = ls_ramp_from."""
    runs = []
    for lr in (1e-4, 1e-1):
        ns = from_args([config, *tu.args_of(dataset=tiny_dataset, out_dir=str(tmp_path), learning_rate=lr,
                                            warmup_iters=4, gradient_accumulation_steps=1, lr_decay_iters=30,
                                            ls_ema_warmup_steps=2, ls_skip_stable=0)], cwd=tu.ROOT)
        X, Y = ns.get_batch('train', 0)
        losses, etas, applied = [], [], []
        for it in range(36):                  # range test (eta doubling every step), hold, search, anneal
            for group in ns.optimizer.param_groups:
                group['lr'] = ns.get_lr(it) * group.get('lr_scale', 1.0)
            X, Y, loss, ok = ns.train_step(X, Y, it)
            losses.append(loss.item())
            etas.append(ns.optimizer.last_stats['eta'])
            g = ns.optimizer.param_groups[0]
            applied.append(g['lr'] / g['handoff_lr'])             # the applied step's factor, eta * lr/lr_0
        assert not ns.optimizer.in_start and ns.optimizer.param_groups[0]['forwards'] >= 8
        assert applied[-1] == pytest.approx(0.1 * applied[0])   # the anneal reached its end
        # the range test's schedule: the bare factor
        assert ns.optimizer.param_groups[0]['handoff_lr'] == 1.0
        runs.append((losses, etas, applied, [p.detach().clone() for p in ns.raw_model.parameters()]))
    assert runs[0][:3] == runs[1][:3] and runs[0][1][0] == 3e-5
    assert all(torch.equal(a, b) for a, b in zip(runs[0][3], runs[1][3]))


@pytest.mark.parametrize('config', ['config/train_shakespeare_char_alsals.py',
                                    'config/train_shakespeare_char_muonsls.py'])
def test_first_guess_does_not_set_the_schedule(tiny_dataset, tmp_path, config):
    """A user of a shipped line-search config who changes only --learning_rate (its first guess; the config's
    min_lr stays) gets the same schedule: get_lr(it) over its base (learning_rate after an AdamW warmup, 1
    after the range test) is the same for every first guess, and anneals to ls_anneal_to = 0.1."""
    ratios = []
    for lr in (1e-4, 1e-1):
        ns = from_args([config, *tu.args_of(dataset=tiny_dataset, out_dir=str(tmp_path), learning_rate=lr,
                                                    min_lr=None, warmup_iters=None, lr_decay_iters=100)],
                       cwd=tu.ROOT)
        assert ns.config['min_lr'] == 3e-4 and ns.config['learning_rate'] == lr
        ratios.append([ns.get_lr(i) / ls_lr_base(ns.config) for i in range(0, 120)])
    assert ratios[0] == pytest.approx(ratios[1], rel=1e-12)
    assert (ratios[0][79] == 1.0 and ratios[0][90] == pytest.approx(0.55)
            and ratios[0][100] == pytest.approx(0.1))


def test_wsd_schedule(tiny_dataset, tmp_path):
    """lr_schedule='wsd' (AdamW, Muon): the same linear warmup, learning_rate until the last decay_frac of
    lr_decay_iters, then linear to min_lr at lr_decay_iters, where it stays; a decay longer than the run after
    the warmup starts at the warmup's end."""
    ns = setup(tiny_dataset, tmp_path, learning_rate=1e-2, min_lr=1e-3, warmup_iters=10, lr_decay_iters=100,
               lr_schedule='wsd', decay_frac=0.2)
    f = ns.get_lr
    assert [f(i) for i in range(10)] == [1e-2 * (i + 1) / 11 for i in range(10)]
    assert [f(i) for i in (10, 50, 79, 80)] == [1e-2] * 4
    for it in (81, 85, 90, 99):
        assert f(it) == pytest.approx(1e-2 - (it - 80) / 20 * 9e-3, rel=1e-12)
    assert f(100) == f(150) == 1e-3
    ns = setup(tiny_dataset, tmp_path, optimizer='muon', learning_rate=2e-2, min_lr=2e-3, warmup_iters=10,
               lr_decay_iters=100, lr_schedule='wsd', decay_frac=0.95)
    f = ns.get_lr
    assert f(10) == 2e-2 and f(55) == pytest.approx(2e-2 - 0.5 * 1.8e-2, rel=1e-12) and f(100) == 2e-3


@pytest.mark.parametrize('config', ['config/train_shakespeare_char_muonsls.py',
                                    'config/train_gpt2_muonsls.py'])
def test_muonsls_configs_read_no_learning_rate(tiny_dataset, tmp_path, config):
    """The MuonSLS configs warm up to ls_lr = 0.02, Muon's lr, whatever --learning_rate is (no range test, the
    ALSALS config's c = 0.1 and no growth), the AdamW part at muon_adamw_ratio = 1/3 of the Muon part's step:
    from first guesses 1e-3 and 1e-1 the warmup, the search and the anneal (to iteration 24) give
    bit-identical losses, step sizes and weights."""
    runs = []
    for lr in (1e-3, 1e-1):
        ns = from_args([config, *tu.args_of(dataset=tiny_dataset, out_dir=str(tmp_path), learning_rate=lr,
                                            min_lr=None, warmup_iters=4, lr_decay_iters=20,
                                            ls_ema_warmup_steps=2, ls_skip_stable=0)], cwd=tu.ROOT)
        opt = ns.optimizer
        assert ns.config['optimizer'] == 'muonsls' and not ns.config['ls_range_test'] and opt.in_warmup
        assert opt.defaults['c'] == 0.1 and opt.defaults['b'] == 1e9
        assert [g['use_muon'] for g in opt.param_groups] == [True, False, False]
        X, Y = ns.get_batch('train', 0)
        losses, etas = [], []
        for it in range(24):
            for group in opt.param_groups:
                group['lr'] = ns.get_lr(it) * group.get('lr_scale', 1.0)
            if it == 4:
                assert [g['lr'] for g in opt.param_groups] == [0.02, 0.02 * (1 / 3), 0.02 * (1 / 3)]
            X, Y, loss, applied = ns.train_step(X, Y, it)
            assert applied and torch.isfinite(loss)
            losses.append(loss.item())
            etas.append(opt.last_stats['eta'])
        assert not opt.in_start and opt.param_groups[0]['forwards'] >= 8
        runs.append((losses, etas, [p.detach().clone() for p in ns.raw_model.parameters()]))
    assert runs[0][:2] == runs[1][:2]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][2], runs[1][2]))


def test_training_leaves_fsdp_unimported():
    """The trainer package's modules do not import torch.distributed.tensor or torch.distributed.fsdp, which
    together take about 0.8 s to import (torch itself 1.2-2 s): a one-process or DDP run (and every test that
    starts one) would pay that at each start. FSDP2's shard() and a DTensor bring them in."""
    code = ("import sys; import alsals, alsals.muon, model, configurator, trainer.setup, trainer.step; "
            "print([m for m in ('torch.distributed.tensor', 'torch.distributed.fsdp') if m in sys.modules])")
    r = subprocess.run([sys.executable, '-c', code], cwd=tu.ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == '[]'
