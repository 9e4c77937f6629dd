"""Tests of the line-search optimizers against the math (alsals.py): CPU, deterministic, small problems."""
import math
import os
import socket
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import alsals  # noqa: E402
from alsals import alsals_reference, muon  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402

VARIANTS = ['alsals', 'adamsls', 'sgdsls', 'plasls', 'muonsls', 'muonsls_separate']


def mlp(seed=1, dtype=torch.float32):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 1)).to(dtype)


def groups(m, wd=0.1, use_muon=False):
    return [{'params': [p for p in m.parameters() if p.dim() == 2], 'weight_decay': wd, 'use_muon': use_muon},
            {'params': [p for p in m.parameters() if p.dim() < 2], 'weight_decay': 0.0}]


def make_opt(variant, m, reference=False, **kw):
    """A variant of alsals.py or muon.py (or its twin) on the two groups of `m`; 'muonsls' runs Muon's
    direction on the 2-D weights with one eta for all, 'muonsls_separate' with one eta for them and one for
    the biases."""
    if variant == 'plasls':
        kw['components'] = [list(m[0].parameters()), list(m[2].parameters())]
    if variant.startswith('muonsls'):
        kw['separate_eta'] = variant == 'muonsls_separate'
        if reference:
            return alsals_reference.LineSearchReference(groups(m, use_muon=True), variant='muonsls', **kw)
        return muon.MuonSLS(groups(m, use_muon=True), **kw)
    if reference:
        return alsals_reference.LineSearchReference(groups(m), variant=variant, **kw)
    return alsals.OPTIMIZERS[variant](groups(m), **kw)


def totals(opt):
    """The run's totals and counters, which live in every param group alike."""
    return {k: opt.param_groups[0][k] for k in ('step', 'forwards', 'backtracks', 'exhaustions', 'skipped')}


def components(opt):
    """The search state per component (group['component']): its parameters, eta, D, G, in component order."""
    comps = {}
    for g in opt.param_groups:
        c = comps.setdefault(g['component'], dict(params=[], eta=g['eta'], D=g['D'], G=g['G'],
                                                   exhausted=g['exhausted']))
        c['params'] += list(g['params'])
    return [comps[k] for k in sorted(comps)]


def set_component(opt, k, **values):
    """Set the k-th component's scalars (in each of its groups, as the optimizer keeps them)."""
    cid = sorted({g['component'] for g in opt.param_groups})[k]
    for g in opt.param_groups:
        if g['component'] == cid:
            g.update(values)


def data(seed=0, n=64, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 10, generator=g, dtype=dtype)
    Y = torch.sin(X[:, :1] * 2) + 0.1 * torch.randn(n, 1, generator=g, dtype=dtype)
    return X, Y


def step_on(m, opt, X, Y):
    """One step of `opt` on the batch (X, Y): f(w) from the training forward, the same batch in the
    closure."""
    loss = F.mse_loss(m(X), Y)
    opt.zero_grad()
    loss.backward()
    opt.step(closure=lambda: F.mse_loss(m(X), Y), loss=loss.detach())
    return loss


def run(m, opt, steps, warmup=0, lr=0.05, batch=16, seed=0, record=None, schedule=None):
    X, Y = data(seed, dtype=next(m.parameters()).dtype)
    for it in range(steps):
        i = (it * batch) % len(X)
        xb, yb = X[i:i + batch], Y[i:i + batch]
        if it < warmup:
            for g in opt.param_groups:
                g['lr'] = lr * (it + 1) / warmup
        elif schedule is not None:   # a learning-rate schedule after the warmup, set as train.py sets it
            for g in opt.param_groups:
                g['lr'] = lr * schedule(it)
        loss = F.mse_loss(m(xb), yb)
        opt.zero_grad()
        loss.backward()
        before = None
        if record is not None:   # w, the batch and the components (with their EMAs) before the step
            before = dict(params={n: p.detach().clone() for n, p in m.named_parameters()}, batch=(xb, yb),
                          comps=components(opt))
        if isinstance(opt, torch.optim.AdamW):
            opt.step()
        else:
            opt.step(closure=lambda: F.mse_loss(m(xb), yb), loss=loss.detach())
        if record is not None:   # the stats, components and moments after the step
            moments = {n: (opt.state[p]['exp_avg'].clone(), opt.state[p]['exp_avg_sq'].clone(),
                           opt.state[p]['step'])
                       if 'exp_avg' in opt.state[p] else opt.state[p]['momentum_buffer'].clone()
                       for n, p in m.named_parameters() if opt.state[p]}
            record.append((before, dict(stats=opt.last_stats, moments=moments,
                                        comps=components(opt))))


@pytest.mark.parametrize('anneal', [False, True])
@pytest.mark.parametrize('variant', VARIANTS)
def test_fast_matches_reference(variant, anneal):
    """The foreach, in-place optimizer and its plain twin (explicit copies of w) agree on the same gradients,
    through warmup with EMA warming, hand-off, backtracking, weight decay, clipping and skip_stable; with
    anneal, a scheduler's lr falls linearly to 0.1 of its hand-off value over steps 30-60, which scales the
    applied step (lr/lr_0) but not the eta the search tests and keeps."""
    lr = 5.0 if variant == 'sgdsls' else 0.3  # large enough to backtrack
    kw = dict(lr=lr, weight_decay=0.1, warmup_steps=5, ema_warmup_steps=3, max_grad_norm=1.0, skip_stable=2)
    schedule = (lambda it: 1.0 - 0.9 * max(0, it - 30) / 30) if anneal else None
    # Muon's Newton-Schulz rounds its input to bfloat16: in float32 the twins' last-bit differences would flip
    # that rounding now and then; float64 keeps them far below it
    dtype = torch.float64 if variant.startswith('muonsls') else torch.float32
    m1, m2 = mlp(dtype=dtype), mlp(dtype=dtype)
    o1, o2 = make_opt(variant, m1, **kw), make_opt(variant, m2, reference=True, **kw)
    run(m1, o1, 60, warmup=5, lr=lr, schedule=schedule)
    run(m2, o2, 60, warmup=5, lr=lr, schedule=schedule)
    assert totals(o1)['backtracks'] > 0, "the test must exercise backtracking"
    for a, b in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert o1.eta == pytest.approx(o2.eta, rel=1e-6)


@pytest.mark.parametrize('variant', VARIANTS)
def test_scheduler_lr_scales_the_applied_step(variant):
    """After the warmup an lr scheduler acts as torch users expect: from the same state and batch, a step with
    group lr = s * lr_0 runs the same search (same trials, same accepted eta, same EMAs) and lands at w*(1 -
    s*eta*wd) + s*eta*d_final, where d_final is read off the unscaled step: p1 = w*(1 - eta*wd) + eta*d_final.
    """
    import copy
    lr = 5.0 if variant == 'sgdsls' else 0.3
    m = mlp()
    opt = make_opt(variant, m, lr=lr, weight_decay=0.1, warmup_steps=3, ema_warmup_steps=2)
    run(m, opt, 25, warmup=3, lr=lr)
    w = [p.detach().clone() for p in m.parameters()]
    wd = {id(p): g['weight_decay'] for g in opt.param_groups for p in g['params']}
    assert all(g['handoff_lr'] == lr for g in opt.param_groups)

    def step_from_here(s, xb, yb):
        mm, oo = copy.deepcopy((m, opt))
        for g in oo.param_groups:
            g['lr'] = s * g['handoff_lr']
        loss = F.mse_loss(mm(xb), yb)
        oo.zero_grad()
        loss.backward()
        oo.step(closure=lambda: F.mse_loss(mm(xb), yb), loss=loss.detach())
        return [p.detach().clone() for p in mm.parameters()], oo.last_stats, components(oo)

    for seed in range(7, 30):   # a batch on which the search accepts
        X, Y = data(seed)
        p1, st1, comps1 = step_from_here(1.0, X[:16], Y[:16])
        if st1['accepted']:
            break
    ps, sts, compss = step_from_here(0.3, X[:16], Y[:16])
    assert st1['accepted'] and st1['forwards'] >= 1
    assert st1 == sts and [{k: v for k, v in c.items() if k != 'params'} for c in comps1] == \
        [{k: v for k,
          v in c.items() if k != 'params'} for c in compss]   # the search does not see the schedule
    cid = {id(p): g['component'] for g in opt.param_groups for p in g['params']}
    order = sorted(set(cid.values()))
    for k, p in enumerate(m.parameters()):
        # each parameter's own eta (PLASLS: its component's; every component steps every step)
        eta, lam = comps1[order.index(cid[id(p)])]['eta'], wd[id(p)]
        d_final = (p1[k].double() - w[k].double() * (1 - eta * lam)) / eta
        expected = w[k].double() * (1 - 0.3 * eta * lam) + 0.3 * eta * d_final
        torch.testing.assert_close(ps[k].double(), expected, rtol=1e-5, atol=1e-6)
        assert not torch.equal(ps[k], p1[k])


def test_warmup_is_adamw():
    """During warmup the optimizer is torch.optim.AdamW with group['lr'] (the moments then carry over)."""
    m1, m2 = mlp(), mlp()
    o1 = alsals.ALSALS(groups(m1), lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1, warmup_steps=20)
    o2 = torch.optim.AdamW(groups(m2), lr=1e-2, betas=(0.9, 0.95))
    run(m1, o1, 20, warmup=20, lr=1e-2)
    run(m2, o2, 20, warmup=20, lr=1e-2)
    for a, b in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(o1.state[p1]['exp_avg'], o2.state[p2]['exp_avg'])
    assert o1.eta == pytest.approx(1e-2)  # the search starts from the last warmup lr


@pytest.mark.parametrize('variant', VARIANTS)
@pytest.mark.parametrize('smooth', [False, True])
def test_every_accepted_step_satisfies_its_criterion(variant, smooth):
    """For every accepted search, recomputed here without the optimizer's reported numbers: f(w) and the
    gradient on a copy of the model at w, d_trial from the moments after the step ([A] Eq. 3, [F] Eq. 1, 5),
    f_a = -g.d_trial, the trial loss f(w + eta*d_trial) evaluated at those parameters (PLASLS: only the
    searched component moves), and D' >= c_h * eta * G' with the EMAs before the step ([A] Eq. 8-9; EMAs
    restart when D < 0). Unsmoothed that is the plain Armijo test ([A] Eq. 7 / [F] Eq. 1, 5)."""
    m = mlp()
    opt = make_opt(variant, m, lr=5.0 if variant == 'sgdsls' else 0.5, smooth=smooth, weight_decay=0.0)
    rec = []
    run(m, opt, 80, record=rec)
    hp = opt.param_groups[0]
    c, bs, eps = hp['c'], hp['beta_s'], hp['eps']
    b1, b2 = hp['betas']
    names = {id(p): n for n, p in m.named_parameters()}
    probe = mlp()
    n_checked = 0
    for before, after in rec:
        st = after['stats']
        if not st['accepted'] or st['skipped'] or st['f_trial'] is None:
            continue
        comps = after['comps']
        if len(comps) < len(before['comps']):
            continue                                                    # a merge renumbered the components
        # None: the whole network (PLASLS's first)
        k = st['searched'] or 0
        searched = (set(names.values()) if st['searched'] is None
                    else {names[id(p)] for p in comps[k]['params']})
        eta = comps[k]['eta']                                            # PLASLS: st['eta'] is the mean
        xb, yb = before['batch']
        w = before['params']
        with torch.no_grad():
            for n, p in probe.named_parameters():
                p.copy_(w[n])
        f_w = F.mse_loss(probe(xb), yb)
        grads = dict(zip([n for n, _ in probe.named_parameters()],
                         torch.autograd.grad(f_w, list(probe.parameters()))))
        d = {}
        for n in searched:
            if variant == 'sgdsls':
                d[n] = -grads[n]
                continue
            if variant.startswith('muonsls') and grads[n].dim() == 2:    # Muon: -r * NS((1-mu)*g + mu*B)
                from torch.optim._muon import _zeropower_via_newtonschulz
                u = grads[n].lerp(after['moments'][n], 0.95)               # torch.optim.Muon's rounding
                ortho = _zeropower_via_newtonschulz(u, (3.4445, -4.775, 2.0315), 5, 1e-7).float()
                d[n] = -max(1, grads[n].shape[0] / grads[n].shape[1]) ** 0.5 * ortho
                continue
            mom, sq, t = after['moments'][n]
            denom = (sq / (1 - b2 ** t)).sqrt() + eps
            d[n] = -(mom / (1 - b1 ** t)) / denom if variant in ('alsals', 'muonsls', 'muonsls_separate') \
                else -grads[n] / denom
        f_a = -sum(float((grads[n].double() * d[n].double()).sum()) for n in searched)
        with torch.no_grad():
            for n, p in probe.named_parameters():
                p.copy_(w[n] + eta * d[n] if n in searched else w[n])
            f_trial = F.mse_loss(probe(xb), yb).item()
        comp = before['comps'][k]
        D0, G0 = (0.0, 0.0) if comp['D'] < 0 else (comp['D'], comp['G'])
        dec = f_w.item() - f_trial
        D = bs * D0 + (1 - bs) * dec if smooth else dec
        G = bs * G0 + (1 - bs) * f_a if smooth else f_a
        c_h = c if G > 0 else 1 / c
        assert D >= c_h * eta * G - 1e-6 * abs(eta * G) - 1e-7, (D, G, st)
        assert f_a == pytest.approx(st['f_a'], rel=1e-4, abs=1e-7)
        n_checked += 1
    assert n_checked > 40
    assert totals(opt)['backtracks'] > 0


def test_unsmoothed_alsals_armijo_at_the_new_point():
    """ALSALS without smoothing and weight decay: the accepted update is the trial point itself, so
    f(w) - f(w_new) >= c_h * eta * f_a evaluated directly at the new parameters on the same batch."""
    m = mlp(dtype=torch.float64)
    opt = alsals.ALSALS(m.parameters(), lr=1.0, smooth=False)
    X, Y = data(dtype=torch.float64)
    for it in range(40):
        xb, yb = X[(it * 16) % 64:][:16], Y[(it * 16) % 64:][:16]
        loss = F.mse_loss(m(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step(closure=lambda: F.mse_loss(m(xb), yb), loss=loss.detach())
        st = opt.last_stats
        with torch.no_grad():
            f_new = F.mse_loss(m(xb), yb).item()
        if st['accepted']:
            c_h = 0.6 if st['f_a'] > 0 else 1 / 0.6
            assert loss.item() - f_new >= c_h * st['eta'] * st['f_a'] - 1e-12
        else:  # exhausted: no update
            assert f_new == pytest.approx(loss.item(), abs=1e-12)


@pytest.mark.parametrize('variant', ['sgdsls', 'adamsls', 'alsals'])
@pytest.mark.parametrize('eta0', [1e-5, 1e-3, 1e-1, 1.0])
def test_convex_problem_from_any_step_size(variant, eta0):
    """Full-batch least squares: the loss decreases from any initial step size in 1e-5..1; eta grows when
    too small, backtracks when too large, and never leaves [eta_min, eta_max]."""
    g = torch.Generator().manual_seed(0)
    # curvature ~10: eta = 1 is too large for SGD
    A = 3 * torch.randn(50, 8, generator=g, dtype=torch.float64)
    y = A @ torch.randn(8, 1, generator=g, dtype=torch.float64)
    w = nn.Parameter(torch.zeros(8, 1, dtype=torch.float64))
    # fast growth
    opt = alsals.OPTIMIZERS[variant]([w], lr=eta0, b=5, eta_min=1e-8, eta_max=1.0, smooth=False)
    f = lambda: 0.5 * ((A @ w - y) ** 2).mean()
    f0 = f().item()
    etas = []
    for _ in range(150):
        loss = f()
        opt.zero_grad()
        loss.backward()
        opt.step(closure=f, loss=loss.detach())
        etas.append(opt.eta)
        assert 1e-8 <= opt.eta <= 1.0
    assert f().item() < 0.5 * f0
    if eta0 == 1e-5:
        assert etas[20] == pytest.approx(eta0 * 2 ** (21 / 5))  # grew by 2^(1/b) per step while too small
    if eta0 == 1.0 and variant != 'alsals':
        assert totals(opt)['backtracks'] > 0


def test_fa_is_the_directional_derivative_with_unclipped_gradient():
    """f_a = -grad f(w).d equals the limit of [A] Eq. 6's finite difference, with the UNclipped gradient even
    when clipping is active (clipping only changes the moments)."""
    m = mlp(dtype=torch.float64)
    X, Y = data(dtype=torch.float64)
    opt = alsals.ALSALS(m.parameters(), lr=1e-3, max_grad_norm=1e-3, smooth=False)
    closure = lambda: F.mse_loss(m(X), Y)
    loss = closure()
    loss.backward()
    grads = [p.grad.clone() for p in m.parameters()]
    opt.step(closure=closure, loss=loss.detach())
    st = opt.last_stats
    # reconstruct d from the state after the step: d = -m^/(sqrt(v^)+eps) at t=1 is -sign-like
    ps = list(m.parameters())
    d = [-(opt.state[p]['exp_avg'] / 0.1) / ((opt.state[p]['exp_avg_sq'] / 0.001).sqrt() + 1e-8) for p in ps]
    fa_exact = -sum((g * di).sum().item() for g, di in zip(grads, d))
    assert st['f_a'] == pytest.approx(fa_exact, rel=1e-9)
    # the moments saw the clipped gradient: m_1 = (1-beta1) * coef * g
    norm = math.sqrt(sum((g ** 2).sum().item() for g in grads))
    coef = 1e-3 / (norm + 1e-6)
    torch.testing.assert_close(opt.state[ps[0]]['exp_avg'], 0.1 * coef * grads[0])
    # finite difference of the loss along d at w (undo the step first)
    with torch.no_grad():
        for p, di in zip(ps, d):
            p.sub_(st['eta'] * di) if st['accepted'] else None
        lam = 1e-7
        for p, di in zip(ps, d):
            p.add_(lam * di)
        f_l = closure().item()
        for p, di in zip(ps, d):
            p.sub_(lam * di)
    fd = (loss.item() - f_l) / lam
    assert st['f_a'] == pytest.approx(fd, rel=1e-4)


def test_fa_fd_mode_matches_exact():
    m1, m2 = mlp(dtype=torch.float64), mlp(dtype=torch.float64)
    o1 = alsals.ALSALS(m1.parameters(), lr=1e-2, fa='exact', fd_eps=1e-7)
    o2 = alsals.ALSALS(m2.parameters(), lr=1e-2, fa='fd', fd_eps=1e-7)
    X, Y = data(dtype=torch.float64)
    for m, o in ((m1, o1), (m2, o2)):
        loss = F.mse_loss(m(X), Y)
        loss.backward()
        o.step(closure=lambda: F.mse_loss(m(X), Y), loss=loss.detach())
    assert o2.last_stats['f_a'] == pytest.approx(o1.last_stats['f_a'], rel=1e-4)
    assert o2.last_stats['forwards'] == o1.last_stats['forwards'] + 1


def test_nonfinite_trial_is_never_accepted():
    """A NaN/inf trial loss is rejected and eta shrinks; if every trial is non-finite the step is exhausted
    and the parameters are back at w exactly."""
    m = mlp()
    opt = alsals.ALSALS(m.parameters(), lr=1e-2, max_backtracks=5)
    X, Y = data()
    w0 = [p.detach().clone() for p in m.parameters()]
    loss = F.mse_loss(m(X), Y)
    loss.backward()
    opt.step(closure=lambda: torch.tensor(float('nan')), loss=loss.detach())
    st = opt.last_stats
    assert not st['accepted'] and st['exhausted'] and st['backtracks'] == 5 and st['forwards'] == 6
    assert opt.eta == pytest.approx(1e-2 * 2 ** (1 / 500) * 0.9 ** 5)
    for p, w in zip(m.parameters(), w0):
        torch.testing.assert_close(p, w, rtol=0, atol=1e-7)
    # one inf then finite: the inf trial is rejected, a later one accepted
    calls = []

    def closure():
        calls.append(1)
        return torch.tensor(float('inf')) if len(calls) == 1 else F.mse_loss(m(X), Y)
    opt.zero_grad()
    loss = F.mse_loss(m(X), Y)
    loss.backward()
    opt.step(closure=closure, loss=loss.detach())
    assert opt.last_stats['backtracks'] >= 1 and opt.last_stats['accepted']


def test_nonfinite_loss_skips_the_update():
    m = mlp()
    opt = alsals.ALSALS(m.parameters(), lr=1e-2)
    X, Y = data()
    w0 = [p.detach().clone() for p in m.parameters()]
    F.mse_loss(m(X), Y).backward()
    opt.step(closure=lambda: F.mse_loss(m(X), Y), loss=float('nan'))
    assert opt.last_stats['skipped'] and totals(opt)['step'] == 0 and totals(opt)['skipped'] == 1
    assert all(not opt.state[p] for p in m.parameters())
    for p, w in zip(m.parameters(), w0):
        assert torch.equal(p, w)


def test_step_without_closure_after_warmup_is_an_error():
    m = mlp()
    opt = alsals.ALSALS(m.parameters(), lr=1e-2, warmup_steps=1)
    X, Y = data()
    F.mse_loss(m(X), Y).backward()
    opt.step()  # warmup: plain AdamW, no closure needed
    with pytest.raises(RuntimeError, match='closure'):
        opt.step()


def test_bad_hyperparameters_are_errors():
    m = mlp()
    for kw in (dict(lr=0), dict(c=1.5), dict(backtrack=1.0), dict(eta_min=1.0, eta_max=0.5), dict(b=0),
               dict(fa='x')):
        with pytest.raises(ValueError):
            alsals.ALSALS(m.parameters(), **kw)
    with pytest.raises(ValueError, match='components'):
        alsals.PLASLS(m.parameters())
    with pytest.raises(ValueError, match='partition'):
        alsals.PLASLS(list(m.parameters()), components=[list(m[0].parameters())])


@pytest.mark.parametrize('variant', VARIANTS)
def test_state_dict_round_trip_continues_identically(variant, tmp_path):
    kw = dict(lr=0.3, weight_decay=0.1, warmup_steps=4, ema_warmup_steps=2)
    m1 = mlp()
    o1 = make_opt(variant, m1, **kw)
    run(m1, o1, 15, warmup=4, lr=0.3)
    path = tmp_path / 'opt.pt'
    torch.save({'model': m1.state_dict(), 'opt': o1.state_dict()}, path)
    sd = torch.load(path, weights_only=True)
    m2 = mlp(seed=99)
    m2.load_state_dict(sd['model'])
    o2 = make_opt(variant, m2, **kw)
    o2.load_state_dict(sd['opt'])
    assert [{k: v for k, v in g.items() if k != 'params'} for g in o2.param_groups] == \
        [{k: v for k, v in g.items() if k != 'params'} for g in o1.param_groups]
    run(m1, o1, 15, seed=5)
    run(m2, o2, 15, seed=5)
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)
    assert o1.param_groups[0]['step'] == o2.param_groups[0]['step'] == 30 and o1.eta == o2.eta


def test_plasls_merge_rule():
    """[F] Algorithm 1, in the fast optimizer (components are param groups) and in the twin's own
    implementation: the component of smallest eta, once at or below the threshold, joins the one of
    next-smallest eta; both take the mean of their etas and EMAs."""
    m = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2))
    opt = alsals.PLASLS(m.parameters(), lr=0.1, components=[list(l.parameters()) for l in m])
    for k, (eta, D, G) in enumerate([(1e-3, 1.0, 2.0), (1e-13, 0.0, 0.0), (1e-5, 3.0, 4.0)]):
        set_component(opt, k, eta=eta, D=D, G=G)
    assert opt._merge_smallest()
    comps = components(opt)
    assert len(comps) == 2 and comps[1]['params'] == list(m[1].parameters()) + list(m[2].parameters())
    assert (comps[1]['eta'] == pytest.approx((1e-13 + 1e-5) / 2) and comps[1]['D'] == 1.5
            and comps[1]['G'] == 2.0)
    assert not opt._merge_smallest()  # nothing below the threshold any more
    ref = make_opt('plasls', mlp(), reference=True, lr=0.1)
    ref.comps = [dict(params=[1], eta=1e-3, D=1.0, G=2.0, exhausted=False),
                 dict(params=[2], eta=1e-13, D=0.0, G=0.0, exhausted=False),
                 dict(params=[3], eta=1e-5, D=3.0, G=4.0, exhausted=False)]
    ref._merge()
    assert [c['params'] for c in ref.comps] == [[1], [2, 3]] and ref.comps[1]['eta'] == pytest.approx(5e-6)


def test_plasls_searches_one_component_per_step_after_a_whole_network_first_step():
    m = mlp()
    opt = make_opt('plasls', m, lr=0.1)
    rec = []
    run(m, opt, 7, record=rec)
    assert len(components(opt)) == 2
    # None: the whole network
    assert [after['stats']['searched'] for _, after in rec] == [None, 0, 1, 0, 1, 0, 1]
    # a component whose eta is driven below the threshold is merged
    set_component(opt, 1, eta=1e-13)
    run(m, opt, 1)
    assert len(components(opt)) == 1


def test_compiled_model_does_not_recompile_after_step_2():
    import torch._dynamo
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=32, n_layer=1, n_head=2, n_embd=16, dropout=0.0))
    opt = model.configure_optimizers(0.1, 1e-2, (0.9, 0.95), 'cpu', 'alsals', warmup_steps=2,
                                     ema_warmup_steps=1)
    cmodel = torch.compile(model, backend='aot_eager')
    x = torch.randint(0, 32, (4, 16))
    graphs = []
    for it in range(8):
        _, loss = cmodel(x, x)
        opt.zero_grad()
        loss.backward()
        opt.step(closure=lambda: cmodel(x, x)[1], loss=loss.detach())
        graphs.append(counters['stats']['unique_graphs'])
    assert totals(opt)['forwards'] >= 6
    assert graphs[1] == graphs[-1], graphs


def _spawn_ddp(tmp_path, perturb, timeout=120, name='worker'):
    """Run tests/alsals_ddp_worker.py's `name` on 2 gloo processes; a hang (ranks calling different numbers of
    collectives) fails the test instead of blocking the suite."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import alsals_ddp_worker
    worker = getattr(alsals_ddp_worker, name)
    ctx = torch.multiprocessing.start_processes(worker, args=(2, port, str(tmp_path), perturb), nprocs=2,
                                                join=False, start_method='spawn')
    import time
    deadline = time.time() + timeout
    while not ctx.join(timeout=1):
        if time.time() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"DDP ranks hung (perturb={perturb}): they disagreed on the number of collectives")
    return [torch.load(tmp_path / f'rank{r}.pt', weights_only=True) for r in (0, 1)]


@pytest.mark.parametrize('perturb', [0.0, 1e-12, 0.5])
def test_ddp_ranks_end_identical(tmp_path, perturb):
    """2 gloo processes, different data per rank, ALSALS for 60 steps with rejections; rank 1's own f_a is
    off by a relative `perturb` (1e-12: the last bit; 0.5: enough to change its decisions if it used its own
    number). Every decision reads only all-reduced inputs, so both ranks run the same trial forwards, take
    the same eta every step and end with bit-identical parameters."""
    r0, r1 = _spawn_ddp(tmp_path, perturb)
    assert r0['backtracks'] > 0 and r0['backtracks'] == r1['backtracks']
    assert r0['eta'] == r1['eta']
    assert torch.equal(r0['params'], r1['params'])


def test_ddp_range_test_decides_the_edge_on_reduced_losses(tmp_path):
    """The range test on 2 gloo ranks with different data and gradient accumulation (2 micro-batches): the
    f(w) it reads is the mean over ranks of each rank's micro-batch mean, the edge is the one the rule gives
    on those
    means (recomputed here), both ranks end the test at the same step and end bit-identical."""
    r0, r1 = _spawn_ddp(tmp_path, None, name='range_test_worker')
    mean_f = [(a + b) / 2 for a, b in zip(r0['local_f'], r1['local_f'])]
    assert r0['seen_f'] == r1['seen_f'] and r0['seen_f'] == pytest.approx(mean_f, rel=1e-6)
    k, ema, best, edge = 2.0, None, math.inf, None
    for t, f in enumerate(r0['seen_f']):
        ema = f if ema is None else (1 - 1 / k) * ema + f / k
        if ema > 1.02 * best:
            edge = t
            break
        best = min(best, ema)
    assert edge is not None and r0['ends'] == r1['ends'] == [t == edge for t in range(len(r0['ends']))]
    assert r0['eta'] == r1['eta'] and torch.equal(r0['params'], r1['params'])


def test_contradictory_emas_restart_instead_of_locking():
    """A loss spike can leave the smoothed decrease D < 0 while the smoothed slope G > 0: then the smoothed
    test is false for every small eta. The search must restart the EMAs and accept, not exhaust."""
    m = mlp()
    opt = alsals.ALSALS(m.parameters(), lr=1e-2)
    set_component(opt, 0, D=-0.05, G=10.0)
    X, Y = data()
    for _ in range(3):
        step_on(m, opt, X, Y)
        assert opt.last_stats['accepted'] and not opt.last_stats['exhausted']
    assert opt.eta > 1e-3


def test_step_with_closure_only_is_torch_optim_style():
    """opt.step(closure) without loss= works after warmup: f(w) comes from one extra no-grad closure call,
    counted as a forward; the trajectory equals the loss= fast path when the closure at w equals f(w)."""
    X, Y = data()
    m1, m2 = mlp(), mlp()
    o1, o2 = alsals.ALSALS(m1.parameters(), lr=0.3), alsals.ALSALS(m2.parameters(), lr=0.3)
    for _ in range(10):
        loss = F.mse_loss(m1(X), Y)
        o1.zero_grad()
        loss.backward()
        o1.step(closure=lambda: F.mse_loss(m1(X), Y), loss=loss.detach())
        o2.zero_grad()
        F.mse_loss(m2(X), Y).backward()
        f_w = o2.step(lambda: F.mse_loss(m2(X), Y))
        assert o2.last_stats['forwards'] == o1.last_stats['forwards'] + 1
        assert f_w == pytest.approx(loss.item(), rel=1e-6)
    for a, b in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize('bad', [float('nan'), float('inf')])
@pytest.mark.parametrize('max_grad_norm', [0.0, 1.0])
@pytest.mark.parametrize('warmup_steps', [0, 5])
def test_nonfinite_gradient_with_finite_loss_skips(bad, max_grad_norm, warmup_steps):
    """A NaN/inf in the gradient (the loss finite) skips the step: moments and parameters untouched, with or
    without clipping (min(1, nan) is 1 and an inf norm gives coefficient 0, 0*inf = NaN), in warmup or not."""
    m = mlp()
    opt = alsals.ALSALS(m.parameters(), lr=1e-2, max_grad_norm=max_grad_norm, warmup_steps=warmup_steps)
    X, Y = data()
    for _ in range(2):                                          # some state first
        opt.zero_grad()
        loss = F.mse_loss(m(X), Y)
        loss.backward()
        opt.step(closure=lambda: F.mse_loss(m(X), Y), loss=loss.detach())
    w0 = [p.detach().clone() for p in m.parameters()]
    moments0 = [(opt.state[p]['exp_avg'].clone(), opt.state[p]['exp_avg_sq'].clone()) for p in m.parameters()]
    opt.zero_grad()
    loss = F.mse_loss(m(X), Y)
    loss.backward()
    next(m.parameters()).grad[0, 0] = bad
    opt.step(closure=lambda: F.mse_loss(m(X), Y), loss=loss.detach())
    assert opt.last_stats['skipped'] and totals(opt)['step'] == 2
    for p, w, (m0, v0) in zip(m.parameters(), w0, moments0):
        assert torch.equal(p, w)
        assert torch.equal(opt.state[p]['exp_avg'], m0) and torch.equal(opt.state[p]['exp_avg_sq'], v0)


@pytest.mark.parametrize('D', [-0.05, -1e-3, 0.0, 1e-3, 0.05])
@pytest.mark.parametrize('G', [-10.0, -0.1, 0.0, 0.1, 10.0])
def test_search_accepts_from_any_ema_state(D, G):
    """From any (D, G) starting state, including D < 0 with G' <= 0 (as eta -> 0 the smoothed test tends to
    beta_s*D >= 0, false whatever the sign of G'), the first search accepts (the EMAs restart instead of
    locking). From any other state (e.g. D/G far below eta, where the smoothed test needs eta <
    beta_s*D/(c*G'), beyond max_backtracks) at most one search exhausts: it restarts the EMAs, and every later
    search accepts. eta is never cut by more than one exhausted search."""
    m = mlp(dtype=torch.float64)
    eta0 = 1e-2
    opt = alsals.ALSALS(m.parameters(), lr=eta0)
    set_component(opt, 0, D=D, G=G)
    X, Y = data(dtype=torch.float64)
    accepted = []
    for _ in range(4):
        step_on(m, opt, X, Y)
        accepted.append(opt.last_stats['accepted'])
        assert opt.eta >= eta0 * 0.9 ** 20
    if D < 0:
        assert accepted[0], accepted
    assert all(accepted[1:]), accepted


def test_repeated_exhaustion_cuts_eta_once():
    """Every trial non-finite: each search exhausts. The first keeps its last tried eta (8x smaller); the
    following ones go back to the eta they started from, so eta does not fall by 8x again and again."""
    m = mlp()
    opt = alsals.ALSALS(m.parameters(), lr=1e-2)
    X, Y = data()
    growth = 2 ** (1 / 500)
    for k in range(4):
        loss = F.mse_loss(m(X), Y)
        opt.zero_grad()
        loss.backward()
        opt.step(closure=lambda: torch.tensor(float('nan')), loss=loss.detach())
        assert opt.last_stats['exhausted']
        assert opt.eta == pytest.approx(1e-2 * growth ** (k + 1) * 0.9 ** 20, rel=1e-9)


def test_add_param_group_is_optimized():
    """Parameters added with add_param_group (e.g. layers unfrozen while fine-tuning) are searched and
    updated like the others; PLASLS, whose components partition the parameters, refuses with a clear error;
    a group with different search settings is refused."""
    m = mlp()
    opt = alsals.ALSALS(m[0].parameters(), lr=0.1)
    X, Y = data()

    def step():
        step_on(m, opt, X, Y)
    step()
    frozen = [p.detach().clone() for p in m[2].parameters()]
    opt.add_param_group({'params': list(m[2].parameters()), 'weight_decay': 0.1})
    step()
    assert opt.last_stats['accepted']
    assert all(not torch.equal(p, w) for p, w in zip(m[2].parameters(), frozen))
    assert all(opt.state[p]['step'] == 1 for p in m[2].parameters())       # own bias correction
    assert [g['component'] for g in opt.param_groups] == [0, 0] and opt.param_groups[1]['eta'] == opt.eta
    with pytest.raises(ValueError, match='same in every param group'):
        opt.add_param_group({'params': [nn.Parameter(torch.zeros(2))], 'c': 0.3})
    pl = make_opt('plasls', mlp(), lr=0.1)
    with pytest.raises(ValueError, match='add_param_group'):
        pl.add_param_group({'params': [nn.Parameter(torch.zeros(2))]})


def test_state_dict_without_later_settings_loads():
    """A checkpoint written before a setting existed (here: without ramp_from and skipped) loads with that
    setting's default and continues as the run would have; an AdamW state_dict is refused with a one-line
    message. (The converters of the project's own earlier layouts left in 2026-12: CHANGELOG.md.)"""
    import copy
    m1 = mlp()
    o1 = make_opt('alsals', m1, lr=0.3, warmup_steps=2, ema_warmup_steps=1, c=0.5)
    run(m1, o1, 6, warmup=2, lr=0.3)
    old = o1.state_dict()
    old = dict(old, param_groups=[{k: v for k, v in g.items() if k not in ('ramp_from', 'skipped')}
                                  for g in old['param_groups']])
    m2 = copy.deepcopy(m1)
    o2 = make_opt('alsals', m2, lr=0.3, warmup_steps=2, ema_warmup_steps=1)     # c not given: from the file
    o2.load_state_dict(old)
    assert o2.param_groups[0]['c'] == 0.5 and o2.param_groups[0]['ramp_from'] == 0.0
    assert o2.param_groups[0]['skipped'] == 0 and totals(o2) == totals(o1) and o2.eta == o1.eta
    m3, o3 = copy.deepcopy((m1, o1))
    run(m3, o3, 5, seed=3)
    run(m2, o2, 5, seed=3)
    for a, b in zip(m3.parameters(), m2.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match='no line-search state'):
        make_opt('alsals', mlp()).load_state_dict(torch.optim.AdamW(groups(mlp())).state_dict())


def test_loaded_state_is_not_shared_with_its_source():
    """load_state_dict copies: the source optimizer stepping on leaves the loaded one's counters, search
    scalars and moments (exp_avg, exp_avg_sq, step of every parameter) as they were saved."""
    import copy
    m = mlp()
    o1 = make_opt('alsals', m, lr=0.3)
    run(m, o1, 3)
    sd = o1.state_dict()
    saved = copy.deepcopy(sd)
    o2 = make_opt('alsals', mlp(), lr=0.3)
    o2.load_state_dict(sd)
    run(m, o1, 3)
    assert totals(o2)['step'] == 3 and totals(o1)['step'] == 6
    loaded = o2.state_dict()
    tu_same = [torch.equal(loaded['state'][i][k], saved['state'][i][k]) for i in saved['state']
               for k in ('exp_avg', 'exp_avg_sq')]
    moved = [torch.equal(o1.state_dict()['state'][i]['exp_avg'],
                         saved['state'][i]['exp_avg']) for i in saved['state']]
    assert all(tu_same) and not any(moved) and len(tu_same) == 8
    assert [dict(g, params=None) for g in loaded['param_groups']] == [dict(g, params=None)
                                                                       for g in saved['param_groups']]


def test_fd_slope_resolves_in_float32():
    """[A] Eq. 6's finite difference in float32 on a small GPT after some training: at the default fd_eps it
    is within 2% of the exact slope -g.d; at the authors' 5e-8 the loss difference is float32 rounding noise
    (off by more than 10%). fa='fd' refuses 16-bit parameters."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=32, vocab_size=48, n_layer=2, n_head=2, n_embd=32, dropout=0.0))
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, 48, (8, 33), generator=g) for _ in range(4)]
    batches = [(b[:, :-1].contiguous(), b[:, 1:].contiguous()) for b in batches]
    warm = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for it in range(40):
        b = batches[it % 4]
        _, loss = model(*b)
        warm.zero_grad()
        loss.backward()
        warm.step()
    import copy

    def slope(**kw):
        mm = copy.deepcopy(model)
        opt = alsals.ALSALS(mm.parameters(), lr=1e-3, **kw)
        for p, q in zip(model.parameters(), mm.parameters()):
            st = warm.state[p]
            opt.state[q].update(step=int(st['step']), exp_avg=st['exp_avg'].clone(),
                                exp_avg_sq=st['exp_avg_sq'].clone())
        b = batches[0]
        _, loss = mm(*b)
        loss.backward()
        opt.step(closure=lambda: mm(*b)[1], loss=loss.detach())
        return opt.last_stats['f_a']
    exact = slope()
    assert slope(fa='fd') == pytest.approx(exact, rel=0.02)
    assert abs(slope(fa='fd', fd_eps=5e-8) - exact) > 0.1 * abs(exact)
    with pytest.raises(ValueError, match='16-bit'):
        alsals.ALSALS(copy.deepcopy(model).to(torch.bfloat16).parameters(), fa='fd')


def test_search_settings_live_in_param_groups():
    """torch.optim's contract: hyperparameters are in defaults and param_groups (so in state_dict), and a
    group may not change the global search settings."""
    opt = alsals.AdamSLS(mlp().parameters(), lr=0.1)
    assert opt.defaults['c'] == 0.1 and opt.param_groups[0]['smooth'] is False
    assert alsals.ALSALS(mlp().parameters()).defaults['c'] == 0.6
    m = mlp()
    assert alsals.PLASLS(list(m.parameters()), components=[list(m.parameters())]).defaults['eta_min'] == 1e-14
    with pytest.raises(ValueError, match='same in every param group'):
        alsals.ALSALS([{'params': list(m[0].parameters())}, {'params': list(m[2].parameters()), 'b': 50}])


# ---- the PyTorch ecosystem: torch.distributed.checkpoint, FSDP2, lr schedulers -----------------------------
@pytest.mark.parametrize('variant', VARIANTS)
@pytest.mark.parametrize('flatten', [False, True])
def test_distributed_checkpoint_state_dict_round_trips(variant, flatten):
    """torch.distributed.checkpoint.state_dict's get/set_optimizer_state_dict (the APIs FSDP2 and torchtitan
    save and resume with) round-trip, flattened or not: a fresh optimizer given the state continues
    bit-identically. (They expect only parameter keys in optimizer.state, and call step() with lr 0 on a fresh
    optimizer to create its state: that must leave the search alone.)"""
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_optimizer_state_dict,
                                                         set_optimizer_state_dict)
    options = StateDictOptions(flatten_optimizer_state_dict=flatten)
    kw = dict(lr=0.3, weight_decay=0.1, warmup_steps=4, ema_warmup_steps=2)
    m1 = mlp()
    o1 = make_opt(variant, m1, **kw)
    run(m1, o1, 15, warmup=4, lr=0.3)
    sd = get_optimizer_state_dict(m1, o1, options=options)
    m2 = mlp(seed=99)
    m2.load_state_dict(m1.state_dict())
    o2 = make_opt(variant, m2, **kw)
    fresh = get_optimizer_state_dict(m2, o2, options=options)             # runs the lr-0 step on o2
    assert o2.param_groups[0]['step'] == 0 and o2.eta == 0.3
    assert all(isinstance(k, str) for k in (fresh if flatten else fresh['state']))
    import copy
    set_optimizer_state_dict(m2, o2, copy.deepcopy(sd), options=options)   # its tensors are o1's (no copy)
    run(m1, o1, 15, seed=5)
    run(m2, o2, 15, seed=5)
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)
    assert o1.eta == o2.eta and totals(o1) == totals(o2)


@pytest.fixture(scope='module')
def fsdp_saved(tmp_path_factory):
    """ALSALS on 2 gloo ranks under FSDP2 for 30 steps, with a torch.distributed.checkpoint written after 15
    (a save moves nothing): one run serves both tests below. Returns its folder and each rank's record and
    params."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from fsdp_worker import spawn
    out = tmp_path_factory.mktemp('fsdp')
    return out, spawn(out, 'save')


def test_fsdp2_matches_one_process(tmp_path, fsdp_saved):
    """A GPT of model.py, fully_shard on each block and the root, 2 gloo ranks, each with half of the global
    batch: every rank takes the same eta every step, and eta and f(w) stay within 1e-5 of one process on the
    whole batch for 30 steps (5 AdamW warmup steps, 25 searched, backtracks included)."""
    from fsdp_worker import worker
    _, (r0, r1) = fsdp_saved
    worker(0, 1, 0, str(tmp_path), 'run')
    single = torch.load(tmp_path / 'run_rank0.pt', weights_only=True)
    assert len(r0['record']) == len(single['record']) == 30
    assert [r['eta'] for r in r0['record']] == [r['eta'] for r in r1['record']]
    assert sum(not r['warmup'] for r in r0['record']) == 25 and sum(r['backtracks'] for r in r0['record']) > 0
    for a, s in zip(r0['record'], single['record']):
        assert a['eta'] == pytest.approx(s['eta'], rel=1e-5) and a['f_w'] == pytest.approx(s['f_w'], abs=1e-5)
        assert a['backtracks'] == s['backtracks']
    for k in single['params']:
        torch.testing.assert_close(r0['params'][k], single['params'][k], rtol=0, atol=1e-5)


def test_fsdp2_resumes_exactly_through_distributed_checkpoint(fsdp_saved):
    """FSDP2 on 2 gloo ranks: a torch.distributed.checkpoint of model and optimizer after 15 steps, loaded
    into fresh processes, continues bit-identically to the run that was not stopped."""
    from fsdp_worker import spawn
    out, saved = fsdp_saved
    resumed = spawn(out, 'resume')
    for a, b in zip(saved, resumed):
        assert a['record'][15:] == b['record']
        assert all(torch.equal(a['params'][k], b['params'][k]) for k in a['params'])


def test_lr_scheduler_acts_after_the_warmup():
    """A torch.optim.lr_scheduler attached as usual acts on the applied step: with CosineAnnealingLR driving
    lr to 0 over the run, the last steps barely move the parameters, while without it they move as much as
    before; the search's own eta keeps its level (it tests and keeps eta, not eta*lr/lr_0, which ends near 0):
    within 10 % of the unscheduled run's, whose trajectory differs."""
    X, Y = data()
    moves, etas = {}, {}
    for sched in (False, True):
        m = mlp()
        opt = alsals.ALSALS(m.parameters(), lr=0.05, warmup_steps=5)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=40) if sched else None
        step_moves = []
        for it in range(40):
            loss = F.mse_loss(m(X), Y)
            opt.zero_grad()
            loss.backward()
            w = [p.detach().clone() for p in m.parameters()]
            opt.step(closure=lambda: F.mse_loss(m(X), Y), loss=loss.detach())
            step_moves.append(sum((p - q).norm().item() ** 2 for p, q in zip(m.parameters(), w)) ** 0.5)
            if scheduler:
                scheduler.step()
        moves[sched], etas[sched] = step_moves, opt.eta
    assert 0.9 < etas[True] / etas[False] < 1.1
    assert sum(moves[True][-3:]) < 0.02 * sum(moves[False][-3:])
    assert 0.5 < sum(moves[True][5:8]) / sum(moves[False][5:8]) < 1.5    # early on the schedule is near 1


def test_a_non_descent_direction_uses_the_inverted_constant():
    """[A] Eq. 8: where the momentum direction points uphill (f_a < 0; unsmoothed here, so G' = f_a), the test
    is D' >= (1/c)*eta*f_a, not c*eta*f_a. After 20 steps every target is mirrored through the model's output,
    so the gradient flips with the same size while the momentum still points the old way: f_a < 0 for a few
    steps, and the loss rises along d by about eta*|f_a|, which only the inverted constant accepts. Checked on
    the twin (same steps) and independently: on each such step, from the reported numbers, the decrease lies
    between (1/c)*eta*f_a and c*eta*f_a, and the step was accepted at its first trial."""
    m1, m2 = mlp(dtype=torch.float64), mlp(dtype=torch.float64)
    kw = dict(lr=0.01, smooth=False)
    o1 = alsals.ALSALS(m1.parameters(), **kw)
    o2 = alsals_reference.LineSearchReference(m2.parameters(), variant='alsals', **kw)
    X, _ = data(dtype=torch.float64)
    target = torch.full((64, 1), 2.0, dtype=torch.float64)
    uphill = 0
    for it in range(30):
        if it == 20:
            with torch.no_grad():
                target = 2 * m1(X) - target                 # the mirror image: the gradient flips, same size
        for m, o in ((m1, o1), (m2, o2)):
            loss = F.mse_loss(m(X), target)
            o.zero_grad()
            loss.backward()
            o.step(closure=lambda: F.mse_loss(m(X), target), loss=loss.detach())
        for a, b in zip(m1.parameters(), m2.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)
        st = o1.last_stats
        assert st['accepted']
        if st['f_a'] < 0:
            dec, eta_fa = st['f_w'] - st['f_trial'], st['eta'] * st['f_a']
            assert (1 / 0.6) * eta_fa <= dec < 0.6 * eta_fa and st['backtracks'] == 0
            uphill += 1
    assert uphill >= 3


def test_first_guess_far_too_high_comes_down():
    """A first guess 1000x too high, no warmup: the first searches fail the test at every eta they try (the
    first with every trial worse than f(w), the next with too little decrease), so each exhausts. It must keep
    cutting eta (by backtrack**max_backtracks each time) rather than return to where it started, so after a
    few exhausted steps the search accepts and the loss falls (it used to livelock, eta growing to eta_max).
    """
    X, Y = data()
    m = mlp()
    opt = alsals.ALSALS(m.parameters(), lr=50.0, eta_max=100.0)        # a good step size here is ~0.05
    f0 = F.mse_loss(m(X), Y).item()
    exhausted = []
    for it in range(60):
        step_on(m, opt, X, Y)
        exhausted.append(opt.last_stats['exhausted'])
    assert 2 <= sum(exhausted) <= 6 and not any(exhausted[10:]), exhausted
    assert opt.eta < 0.5 and F.mse_loss(m(X), Y).item() < 0.5 * f0


# ---- the start by an LR range test (alsals/start.py) -------------------------------------------------------
def test_range_start_matches_reference():
    """ramp > 0, rule 'range': no AdamW warmup; eta starts at lr/100 and doubles every `ramp` steps while the
    training loss's EMA is tracked; when it rises 2 % above its minimum, eta becomes the eta at the minimum
    and the search takes over. The twin implements the same start."""
    kw = dict(lr=0.5, weight_decay=0.1, ramp=3.0, max_grad_norm=1.0, skip_stable=2, ramp_hold=8,
              ema_warmup_steps=3)
    m1, m2 = mlp(dtype=torch.float64), mlp(dtype=torch.float64)   # lr 0.5 amplifies float32's last bits
    o1, o2 = make_opt('alsals', m1, **kw), make_opt('alsals', m2, reference=True, **kw)
    rec = []
    run(m1, o1, 60, batch=64, record=rec)                              # full batch: a smooth loss to read
    run(m2, o2, 60, batch=64)
    ends = [i for i, (_, after) in enumerate(rec) if after['stats'].get('ramp_end')]
    assert len(ends) == 1 and 5 < ends[0] < 50 and totals(o1)['backtracks'] > 0
    for a, b in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert o1.eta == pytest.approx(o2.eta, rel=1e-6)


@pytest.mark.parametrize('sigma', [1.0, 2.0])
def test_range_start_ends_at_the_edge(sigma):
    """Recomputed from the losses the optimizer saw: eta = lr/100 * 2**(t/ramp) at ramp step t; the EMA over
    `ramp` steps of f(w); the ramp ends at the first step whose EMA exceeds 1.02 x its running minimum (the
    edge), with eta = the edge's eta / ramp_sigma; no trial forward before the end; then `ramp` steps hold
    that eta with one trial each (warming D and G), then the search (eta grows by 2**(1/b) or backtracks)."""
    k, lr = 4.0, 0.5
    m = mlp()
    opt = alsals.ALSALS(m.parameters(), lr=lr, ramp=k, ramp_sigma=sigma, ramp_hold=-1)
    rec = []
    run(m, opt, 80, batch=64, record=rec)
    f = [after['stats']['f_w'] for _, after in rec]
    etas = [after['stats']['eta'] for _, after in rec]
    fwd = [after['stats']['forwards'] for _, after in rec]
    end = next(i for i, (_, after) in enumerate(rec) if after['stats'].get('ramp_end'))
    ema, best = None, math.inf
    for t in range(end + 1):
        if t < end:
            assert etas[t] == pytest.approx(lr / 100 * 2 ** (t / k), rel=1e-12) and fwd[t] == 0
        ema = f[t] if ema is None else (1 - 1 / k) * ema + f[t] / k
        assert (ema > 1.02 * best) == (t == end)
        best = min(best, ema)
    assert etas[end] == pytest.approx(lr / 100 * 2 ** ((end - 1) / k) / sigma, rel=1e-12)
    hold = range(end + 1, end + 1 + int(k))               # ema_warmup_steps (100) > k: every hold step warms
    assert all(etas[t] == etas[end] and fwd[t] == 1 and rec[t][1]['stats']['accepted'] for t in hold)
    assert opt.param_groups[0]['D'] != 0.0 and etas[end + 1 + int(k)] != etas[end]   # warmed, then the search


def start_state(**settings):
    """The settings and state that alsals/start.py reads from the first param group (ALSALS's defaults)."""
    s = dict(ramp=1.0, ramp_sigma=2.0, ramp_hold=0, ramp_from=0.0, eta_max=1.0, smooth=True,
             ema_warmup_steps=100)
    return dict(s, **settings, **alsals.start.STATE)


@pytest.mark.parametrize('ramp_from', [0.0, 2e-3])
def test_range_start_from_ramp_from_matches_reference(ramp_from):
    """ramp_from > 0 starts the range test at that eta instead of lr/100; ALSALS and its twin agree either
    way."""
    kw = dict(lr=0.5, ramp=3.0, ramp_hold=6, ema_warmup_steps=3, skip_stable=2, ramp_from=ramp_from)
    m1, m2 = mlp(dtype=torch.float64), mlp(dtype=torch.float64)
    o1, o2 = make_opt('alsals', m1, **kw), make_opt('alsals', m2, reference=True, **kw)
    rec = []
    run(m1, o1, 50, batch=64, record=rec)
    run(m2, o2, 50, batch=64)
    assert rec[0][1]['stats']['eta'] == pytest.approx(ramp_from or 0.5 / 100, rel=1e-12)
    for a, b in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_range_from_makes_the_first_guess_irrelevant():
    """With ramp_from set, lr plays no part: first guesses 1e-4 and 10 take bit-identical steps through the
    range test, its hold and the search (the applied step is eta * lr/lr_0 = eta), from eta = ramp_from *
    2**(t/ramp)."""
    runs = []
    for lr in (1e-4, 10.0):
        m = mlp()
        opt = alsals.ALSALS(m.parameters(), lr=lr, ramp=4.0, ramp_hold=4, ramp_from=1e-3, ema_warmup_steps=2)
        rec = []
        run(m, opt, 80, batch=64, record=rec)
        runs.append((m, [after['stats']['eta'] for _, after in rec], opt))
    (m1, e1, o1), (m2, e2, o2) = runs
    assert e1 == e2 and e1[:3] == pytest.approx([1e-3, 1e-3 * 2 ** 0.25, 1e-3 * 2 ** 0.5], rel=1e-12)
    assert not o1.in_start and totals(o1)['forwards'] > 0       # the search ran too
    assert all(torch.equal(a, b) for a, b in zip(m1.parameters(), m2.parameters()))


def test_range_start_on_losses_that_rise_one_percent_a_step():
    """The rule's 2 % on a loss without a cliff: it falls to 0.8, then rises 1 % a step. With ramp = 1 the EMA
    is the loss itself, so the edge is the second rising step (1.01**2 = 1.0201 > 1.02; a 20 % threshold would
    wait for the 19th, 1.01**19 = 1.208), and eta there is the previous step's eta / ramp_sigma."""
    losses = [1.0, 0.9, 0.8] + [0.8 * 1.01 ** j for j in range(1, 30)]
    s, eta, modes = start_state(eta_max=1e9), 1.0, []
    for f in losses:
        eta, mode = alsals.start.step([s], eta, f)
        modes.append(mode)
        if mode == 'edge':
            break
    assert modes == ['ramp'] * 4 + ['edge'] and eta == 0.01 * 2 ** 3 / 2


def test_range_start_ends_on_the_loss_rising_gradually():
    """A loss that rises gradually as eta doubles (a diagonal quadratic, curvatures 0.1 to 10, float64: Adam's
    near-sign steps overshoot more and more coordinates), so the rule's constant decides where the range test
    ends: the first step whose EMA exceeds 1.02 x its running minimum, recomputed here from the f(w) the
    optimizer saw; there the EMA is still below 1.2 x the minimum, so a 20 % rule would go on ramping."""
    k = 8.0
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(32, dtype=torch.float64))
    h = torch.logspace(-1, 1, 32, dtype=torch.float64)
    f = lambda: 0.5 * (h * w * w).sum()  # noqa: E731
    opt = alsals.ALSALS([w], lr=3.0, ramp=k, eta_max=100.0)
    seen, end = [], None
    for t in range(80):
        loss = f()
        opt.zero_grad()
        loss.backward()
        opt.step(closure=f, loss=loss.detach())
        seen.append(opt.last_stats['f_w'])
        if opt.last_stats['ramp_end']:
            end = t
            break
    assert end is not None and end > 10
    ema, best = None, math.inf
    for t, x in enumerate(seen):
        ema = x if ema is None else (1 - 1 / k) * ema + x / k
        assert (ema > 1.02 * best) == (t == end), t
        best = min(best, ema) if t < end else best
    assert 1.02 < ema / best < 1.2


def test_range_start_without_a_rise_ends_at_eta_max():
    """A loss that only falls: the test ends at the first step whose eta would reach eta_max, with the eta
    before it / ramp_sigma, then holds it for ramp_hold steps (the last ema_warmup_steps of them warming D and
    G)."""
    s, eta, out = start_state(ramp=2.0, ramp_hold=3, ema_warmup_steps=2), 0.5, []
    for t in range(40):
        step = alsals.start.step([s], eta, 1.0 / (t + 1))
        if step is None:
            break
        eta, mode = step
        out.append((eta, mode))
    edge = math.ceil(2 * math.log2(1.0 / (0.5 / 100)))           # the first t with lr/100 * 2**(t/2) >= 1
    assert [m for _, m in out] == ['ramp'] * edge + ['edge', 'hold', 'warm', 'warm']
    assert all(e < 1.0 for e,
               _ in out) and out[edge][0] == pytest.approx(0.5 / 100 * 2 ** ((edge - 1) / 2) / 2)


def test_range_start_never_exceeds_eta_max():
    """A first guess whose lr/100 is already at eta_max: the test ends at once, and neither that step nor the
    hold after it moves by more than eta_max."""
    m = mlp()
    opt = alsals.ALSALS(m.parameters(), lr=400.0, eta_max=2.0, ramp=2.0, ramp_hold=3)
    X, Y = data()
    for it in range(4):
        step_on(m, opt, X, Y)
        assert opt.param_groups[0]['eta'] <= 2.0 and opt.last_stats['eta'] <= 2.0, it
    assert opt.last_stats['ramp_end'] is False and not opt.in_start


def test_range_start_needs_a_ramp_of_at_least_one_step():
    """ramp is steps per doubling and sets the EMA's weight 1/ramp: below 1 the EMA would weigh the past
    negatively, so 0 < ramp < 1 is an error (configurator.py gives train.py's warmup_iters < 10 ramp = 1)."""
    for ramp in (0.5, 0.999, -1.0):
        with pytest.raises(ValueError, match='ramp'):
            alsals.ALSALS(mlp().parameters(), ramp=ramp)
    for ramp in (0.0, 1.0, 2.5):
        alsals.ALSALS(mlp().parameters(), ramp=ramp)


@pytest.mark.parametrize('at', ['ramp', 'hold'])
def test_state_dict_round_trip_in_the_range_test_continues_identically(at, tmp_path):
    """Saved in the middle of the range test (or of its hold) and loaded into a fresh optimizer, the run goes
    on as if never stopped: the same edge, the same parameters."""
    kw = dict(lr=0.5, ramp=3.0, ramp_hold=6, ema_warmup_steps=3, weight_decay=0.1)
    m1 = mlp()
    o1 = alsals.ALSALS(m1.parameters(), **kw)
    rec1, rec2 = [], []
    run(m1, o1, 4, batch=64, record=rec1)
    while (at == 'hold') != (o1.param_groups[0]['hold_left'] > 3):       # into the hold's plain steps
        run(m1, o1, 1, batch=64, record=rec1)
    assert o1.param_groups[0]['ramping'] == (at == 'ramp') and o1.in_start
    torch.save({'model': m1.state_dict(), 'opt': o1.state_dict()}, tmp_path / 'ckpt.pt')
    sd = torch.load(tmp_path / 'ckpt.pt', weights_only=True)
    m2 = mlp(seed=7)
    m2.load_state_dict(sd['model'])
    o2 = alsals.ALSALS(m2.parameters(), **kw)
    o2.load_state_dict(sd['opt'])
    run(m1, o1, 30, batch=64, record=rec1)
    run(m2, o2, 30, batch=64, record=rec2)
    ends = [[i for i, (_, after) in enumerate(r[-30:]) if after['stats'].get('ramp_end')] for r in (rec1,
                                                                                                    rec2)]
    assert ends[0] == ends[1] and (len(ends[0]) == 1) == (at == 'ramp')
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)
    assert o1.eta == o2.eta and not o2.in_start




# ----------------------------------------------------------------------------- the no-search control

def test_control_takes_no_trial_and_is_the_shipped_run_when_no_trial_fails():
    """search=False (the study's no-search control): after the range test and its hold not one trial forward;
    and when every trial of the searched run passes at its first eta (c = 0.1, no growth, a constant lr), the
    two runs end with bit-identical parameters: the search then adds nothing but forwards."""
    kw = dict(lr=0.05, ramp=2.0, ramp_hold=4, ramp_from=1e-3, ema_warmup_steps=2, c=0.1, b=1e9)
    runs = []
    for search in (True, False):
        m = mlp()
        opt = make_opt('alsals', m, search=search, **kw)
        run(m, opt, 40)
        assert not opt.in_start and opt.param_groups[0]['backtracks'] == 0
        runs.append((m, opt))
    (m1, o1), (m2, o2) = runs
    assert o1.param_groups[0]['forwards'] > 30 and o2.param_groups[0]['forwards'] == 0
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)
