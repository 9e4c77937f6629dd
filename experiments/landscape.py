"""
What sets ALSALS's step size? The one-batch landscape along the Adam direction, in the
style of Figs. 2-4 of "Improving Line Search Methods for Large Scale Neural Network Training" (Kenneweg,
Kenneweg, Hammer, 2024).

Two runs of train.py itself (the study's seed-0 runs: experiments/grid.py's command line): ALSALS in the
paper's form (grid.PAPER: a search on every step and a constant applied step, so that every step shows what
the search accepts), and AdamW at its tuned peak lr (the best grid point of results/study/<size>/<corpus>, or
--adamw_lr). Each runs in stages (max_iters = each checkpoint iteration, then init_from=resume), and the
checkpoint of each stage is kept: early (just after the hand-off), mid and late. For each checkpoint,
loaded through train.py's own setup (trainer/setup.py, init_from=resume), and each of K batches the next step
could see (the batch of the next step and the K-1 after it):
  g    = the batch's gradient at w;  m, v, t: the moments with that gradient folded in (clipped as the step
         would), d = -m^/(sqrt(v^)+eps): the direction ALSALS searches on (also AdamW's update direction)
  f_a  = -g.d (the slope),  dec(eta) = f(w) - f(w + eta d) on the same batch, for eta in 1e-5 .. 1e-1
  r(eta) = dec / (eta f_a): the plain Armijo ratio (the test is r >= c) smoothed ratio = (beta_s D +
      (1-beta_s) dec) / (eta (beta_s G + (1-beta_s) f_a)), with the checkpoint's D, G (ALSALS checkpoints):
      the quantity the shipped test compares with c held-out decrease: f(w) - f(w + eta d) on a validation
      batch, along the same d the eta the rule accepts from the checkpoint's state (grown eta, backtracking
      x0.9), for c = 0.1, 0.3, 0.5, 0.6, and, as a check of this reconstruction, the eta that the real
      optimizer.step accepts (c as configured)
Writes results/landscape/<corpus>_<size>.json and .png.

  python experiments/landscape.py                     # screen size, char corpus (a few minutes on 2 cores)
  python experiments/landscape.py --quick --out out-landscape-quick  # seconds (tests/test_landscape.py)
"""
import argparse
import copy
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, ROOT)  # trainer, model, alsals
from trainer import checkpoint  # noqa: E402
from trainer.step import replay_closure  # noqa: E402
from trainer.setup import from_args  # noqa: E402  train.py's setup: its attributes are in its docstring
from grid import CORPORA, LS_CONFIG, PAPER, SIZES, shipped, train_args  # noqa: E402
from report import collect, mean_final, tuned_lr  # noqa: E402

ETAS = np.logspace(-5, -1, 25)
MUON_TUNED = 'muon@muon_adamw_lr=0.01'   # the study's tuned Muon (the AdamW part at AdamW's tuned lr)
MUON_PAPER = 'muonsls@muon_adamw_lr=0.01@ls_skip_stable=0@ls_anneal_frac=0@ls_range_test=False'
CS = (0.1, 0.3, 0.5, 0.6)   # 0.1: the shipped config's; 0.6: the paper's
STAGES = {'quick': (10, 20), 'screen': (100, 300, 600), 'headline': (200, 500, 1000)}


def tuned_adamw_lr(study_dir, corpus):
    """The best AdamW grid point of the study (mean final val over seeds), or None (no finite AdamW run)."""
    runs = collect(study_dir, corpus)
    lr = tuned_lr(runs)
    return lr if lr is not None and math.isfinite(mean_final(runs[('adamw', lr)])) else None


def train_in_stages(work, size, corpus, method, lr, stages):
    """train.py to each stage's iteration (resuming the previous stage); returns {iter: checkpoint dir}."""
    step = math.gcd(*stages)
    out, dirs = os.path.join(work, f'{method}_out'), {}
    log_file = os.path.join(work, f'{method}.jsonl')
    for k, it in enumerate(stages):
        args = train_args(size, corpus, method, lr, 0) + [
            f'--max_iters={it}', f'--eval_interval={step}', '--eval_iters=2', '--always_save_checkpoint=True',
            f'--out_dir={out}', f'--log_file={log_file}', f"--init_from={'resume' if k else 'scratch'}"]
        # lr_decay_iters stays the full run's (train_args): the AdamW schedule is the study's at every stage
        p = subprocess.run([sys.executable, 'train.py'] + args, cwd=ROOT, capture_output=True, text=True,
                           env=dict(os.environ, OMP_NUM_THREADS='1'))  # one thread: see study.py
        if p.returncode != 0:
            sys.exit(f"error: train.py {method} to iteration {it} failed: "
                     f"{p.stderr.strip().splitlines()[-1:]}")
        dirs[it] = os.path.join(work, f'{method}_{it}')
        os.makedirs(dirs[it])
        shutil.copy(os.path.join(out, 'ckpt.pt'), dirs[it])
    with open(log_file) as f:
        recs = [json.loads(line) for line in f if line.strip()]
    steps = {}
    for r in recs:
        if 'lr' in r:
            steps[r['iter']] = r['lr']  # a resumed stage re-runs its first step: the last record wins
    return dirs, [steps[i] for i in sorted(steps)]


def load(size, corpus, method, lr, ckpt_dir):
    """train.py's setup from a checkpoint (init_from=resume): trainer.setup's Run."""
    args = train_args(size, corpus, method, lr, 0) + [f'--out_dir={ckpt_dir}', '--init_from=resume']
    return from_args(args, quiet=True, cwd=ROOT)


def probe(train, n_batches, etas):
    """The landscape along the Adam direction at a checkpoint (train: trainer.setup's Run), for n_batches
    batches. See the docstring."""
    import torch
    model, opt, get_batch, ctx = train.model, train.optimizer, train.get_batch, train.ctx
    line_search = train.line_search
    it = train.iter_num
    params = [p for grp in opt.param_groups for p in grp['params']]
    hp = opt.param_groups[0]
    max_norm = hp['max_grad_norm'] if line_search else train.config['grad_clip']
    w0 = [p.detach().clone() for p in params]
    Xv, Yv = get_batch('val', 10_000)
    model.train()

    @torch.no_grad()
    def f_at(eta, d, X, Y):
        for p, w, di in zip(params, w0, d):
            p.copy_(w + eta * di)
        with ctx:
            return model(X, Y)[1].item()

    out = []
    for k in range(n_batches):
        X, Y = get_batch('train', it + k)
        for p, w in zip(params, w0):
            p.data.copy_(w)
        model.zero_grad(set_to_none=True)
        with ctx:
            loss = model(X, Y)[1]
        loss.backward()
        grads = [p.grad.detach().clone() for p in params]
        norm = torch.linalg.vector_norm(torch.stack([gr.norm() for gr in grads])).item()
        clip = min(1.0, max_norm / (norm + 1e-6)) if max_norm > 0 else 1.0
        d, f_a = [], 0.0
        for p, gr in zip(params, grads):
            di = direction(opt, p, gr, clip)
            d.append(di)
            f_a -= torch.dot(gr.reshape(-1).double(), di.reshape(-1).double()).item()
        f_w, fv_w = loss.item(), f_at(0.0, d, Xv, Yv)
        dec = [f_w - f_at(e, d, X, Y) for e in etas]
        dec_val = [fv_w - f_at(e, d, Xv, Yv) for e in etas]
        rec = dict(batch=it + k, f_w=f_w, f_a=f_a, dec=dec, dec_val=dec_val)
        if line_search:
            comp = search_state(opt)
            rec['rule'] = {str(c): simulate(lambda e: f_w - f_at(e, d, X, Y), f_a, comp, hp, c) for c in CS}
            rec['real'] = real_step(train, X, Y, w0, params)
        out.append(rec)
    with torch.no_grad():
        for p, w in zip(params, w0):
            p.copy_(w)
    return out


def group_of(opt, p):
    return next(g for g in opt.param_groups if any(q is p for q in g['params']))


def direction(opt, p, grad, clip):
    """The step's direction for parameter p with this gradient folded into its state (clipped as the step
    would): Adam's -m^/(sqrt(v^)+eps) (ALSALS, AdamW), or Muon's -r*NS((1-mu)g + mu*B) on a use_muon group
    (MuonSLS, MuonAdamW); scaled, for several param groups, by the group's lr relative to the first group's
    (the trial of MuonSLS with one eta; the update of MuonAdamW)."""
    import torch
    from alsals.muon import _muon_direction
    st, grp = opt.state[p], group_of(opt, p)
    ratio = grp['lr'] / opt.param_groups[0]['lr']
    if grp.get('use_muon'):
        ortho, r = _muon_direction(grp, {'momentum_buffer': st['momentum_buffer'].clone()}, p, grad, clip)
        return -ratio * r * ortho.to(p.dtype)
    (b1, b2), eps = grp['betas'], grp['eps']
    t = int(st['step']) + 1
    m = b1 * st['exp_avg'] + (1 - b1) * clip * grad
    v = b2 * st['exp_avg_sq'] + (1 - b2) * (clip * grad) ** 2
    return -ratio * (m / (1 - b1 ** t)) / ((v / (1 - b2 ** t)).sqrt() + eps)


def search_state(opt):
    """The search's eta, D and G (the first component's: ALSALS has one), from the param groups."""
    return {k: opt.param_groups[0][k] for k in ('eta', 'D', 'G')}


def simulate(dec_at, f_a, comp, hp, c):
    """ALSALS's search from the checkpoint's state (eta, D, G), as alsals.py does it, with constant c."""
    bs = hp['beta_s']
    D, G = (comp['D'], comp['G']) if comp['D'] >= 0 else (0.0, 0.0)  # a negative D restarts the EMAs
    eta = min(comp['eta'] * 2.0 ** (1.0 / hp['b']), hp['eta_max'])
    G_new = bs * G + (1 - bs) * f_a if hp['smooth'] else f_a
    c_h = c if G_new > 0 else 1.0 / c
    for backtracks in range(hp['max_backtracks'] + 1):
        dec = dec_at(eta)
        D_new = bs * D + (1 - bs) * dec if hp['smooth'] else dec
        if math.isfinite(dec) and D_new >= c_h * eta * G_new:
            return dict(eta=eta, backtracks=backtracks, accepted=True, dec=dec)
        if backtracks == hp['max_backtracks'] or eta <= hp['eta_min']:
            break
        eta = max(eta * hp['backtrack'], hp['eta_min'])
    return dict(eta=eta, backtracks=backtracks, accepted=False, dec=dec)


def real_step(train, X, Y, w0, params):
    """The eta that the real optimizer.step accepts on this batch from the checkpoint (state restored after)."""
    import torch
    model, opt = train.model, train.optimizer
    saved = copy.deepcopy(opt.state_dict())
    with torch.no_grad():
        for p, w in zip(params, w0):
            p.copy_(w)
    model.zero_grad(set_to_none=True)
    rng = checkpoint.get_rng_state()
    with train.ctx:
        loss = model(X, Y)[1]
    loss.backward()
    for g in opt.param_groups:
        g['skip_left'] = 0  # search this step even if skip_stable would skip it: the search is measured
    opt.step(closure=replay_closure(model, [(X, Y, rng)], train.ctx), loss=loss.detach())
    st = opt.last_stats
    opt.load_state_dict(saved)
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        for p, w in zip(params, w0):
            p.copy_(w)
    return dict(eta=st['eta'], backtracks=st['backtracks'], accepted=st['accepted'],
                c=opt.param_groups[0]['c'],
                dec=st['f_w'] - st['f_trial'])  # the decrease it measured at its last trial


def analyse(recs, etas, comp=None, hp=None):
    """Per checkpoint: mean curves and where they cross each c."""
    etas = np.asarray(etas)
    dec = np.array([r['dec'] for r in recs])
    f_a = np.array([r['f_a'] for r in recs])
    r_mean = dec.mean(0) / (etas * f_a.mean())  # E[dec] / (eta E[f_a]): where the smoothed test settles
    res = dict(f_a_mean=float(f_a.mean()), dec_mean=dec.mean(0).tolist(),
               dec_val_mean=np.array([r['dec_val'] for r in recs]).mean(0).tolist(),
               ratio_mean=r_mean.tolist(), ratio_each=(dec / (etas[None] * f_a[:, None])).tolist(),
               eta_best_batch=float(etas[np.argmax(dec.mean(0))]),
               eta_best_val=float(etas[np.argmax(np.array([r['dec_val'] for r in recs]).mean(0))]),
               crossing={str(c): crossing(etas, r_mean, c) for c in CS})
    if comp is not None:
        bs = hp['beta_s']
        res['D'], res['G'], res['eta'] = comp['D'], comp['G'], comp['eta']
        res['smoothed_ratio'] = ((bs * comp['D'] + (1 - bs) * dec.mean(0)) /
                                 (etas * (bs * comp['G'] + (1 - bs) * f_a.mean()))).tolist()
        res['smoothed_crossing'] = {str(c): crossing(etas, np.array(res['smoothed_ratio']), c) for c in CS}
        res['rule'] = {str(c): float(np.exp(np.mean([math.log(r['rule'][str(c)]['eta']) for r in recs]))) for c in CS}
        res['real'] = dict(eta=float(np.exp(np.mean([math.log(r['real']['eta']) for r in recs]))),
                           c=recs[0]['real']['c'],
                           agrees=all(math.isclose(r['real']['eta'], r['rule'][str(r['real']['c'])]['eta'],
                                                   rel_tol=1e-6) for r in recs if str(r['real']['c']) in r['rule']))
    return res


def crossing(etas, ratio, c):
    """The largest eta of the grid whose ratio is >= c with every smaller eta also >= c (log-interpolated)."""
    ok = ratio >= c
    if not ok[0]:
        return None
    i = int(np.argmin(ok)) if not ok.all() else len(ok)
    if i == len(ok):
        return float('inf')
    a, b = ratio[i - 1], ratio[i]
    x = math.log(etas[i - 1]) + (a - c) / (a - b) * (math.log(etas[i]) - math.log(etas[i - 1]))
    return float(math.exp(x))


def plot(path, title, etas, res, traj, lr_adamw, stages, runs=('alsals', 'adamw')):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    search, tuned = runs
    fig, ax = plt.subplots(1, 3, figsize=(17, 4.8))
    for run, ls in ((search, '-'), (tuned, '--')):
        for i, it in enumerate(stages):
            r = res[run][str(it)]
            ax[0].plot(etas, r['dec_mean'], ls, color=f'C{i}', label=f'{run} ckpt {it}: same batch')
            ax[0].plot(etas, r['dec_val_mean'], ':', color=f'C{i}', lw=1) if run == search else None
            ax[1].plot(etas, r['ratio_mean'], ls, color=f'C{i}',
                       label=f'{run} ckpt {it}: E[dec]/(eta E[f_a])')
            if run == search:
                ax[1].plot(etas, r['smoothed_ratio'], '-.', color=f'C{i}', lw=2,
                           label=f'ckpt {it}: smoothed (D, G)')
    ax[0].set_xscale('log')
    ax[0].set_yscale('symlog', linthresh=1e-3)
    ax[0].axhline(0, color='gray', lw=0.5)
    ax[0].set_xlabel('eta')
    ax[0].set_ylabel('f(w) - f(w + eta d)   (mean over batches)')
    ax[0].set_title('(a) one-batch decrease (dotted: on a val batch)')
    ax[0].legend(fontsize=6)
    for c in CS:
        ax[1].axhline(c, color='gray', lw=0.7, ls=':')
    ax[1].set_xscale('log')
    ax[1].set_ylim(-0.5, 1.5)
    ax[1].set_xlabel('eta')
    ax[1].set_ylabel('decrease / (eta * slope)')
    ax[1].set_title('(b) the ratio the test compares with c (dotted: c = 0.1, 0.3, 0.5, 0.6)')
    ax[1].legend(fontsize=6)
    ax[2].plot(traj[search], color='C3', label=f"{search} eta (the paper's form)")
    ax[2].plot(traj[tuned], 'k--', label=f'tuned {tuned} lr (peak {lr_adamw:g})')
    for i, it in enumerate(stages):
        r = res[search][str(it)]
        for c, mk in zip(CS, ('^', 's', 'o')):
            ax[2].plot(it, r['rule'][c if isinstance(c, str) else str(c)], mk, color=f'C{i}', ms=7,
                       label=f'rule accepts, c={c}' if i == 0 else None)
        for run, c, mk, col in ((search, '0.3', 'v', 'C3'), (search, '0.6', '+', 'C3'), (tuned, '0.6', 'x',
                                                                                         'k')):
            x = res[run][str(it)]['crossing'][c]
            if x is not None and math.isfinite(x):
                ax[2].plot(it, x, mk, color=col, ms=9,
                           label=f"on {run}'s path: E-ratio = {c}" if i == 0 else None)
    ax[2].set_yscale('log')
    ax[2].set_xlabel('iteration')
    ax[2].set_ylabel('step size')
    ax[2].set_title('(c) eta accepted (one step from each checkpoint) vs AdamW')
    ax[2].legend(fontsize=6)
    ax[2].grid(alpha=0.3, which='both')
    for a in ax[:2]:
        a.grid(alpha=0.3, which='both')
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    ap.add_argument('--quick', action='store_true')
    ap.add_argument('--size', default='screen', choices=list(SIZES))
    ap.add_argument('--corpus', default='char', choices=list(CORPORA))
    ap.add_argument('--batches', type=int, default=8, help='batches per checkpoint')
    ap.add_argument('--adamw_lr', type=float, default=0.0,
                    help='AdamW peak lr (default: the study\'s tuned one)')
    ap.add_argument('--out', default=os.path.join(ROOT, 'results', 'landscape'))
    ap.add_argument('--stages', default='', help='comma list of checkpoint iterations (default: the size\'s)')
    ap.add_argument('--replot', action='store_true', help='only redraw the PNG from the JSON')
    ap.add_argument('--optimizer', default='adamw', choices=('adamw', 'muon'),
                    help="adamw: ALSALS and tuned AdamW along Adam's direction; muon: MuonSLS and tuned Muon along "
                         "Muon's (the tuned lr: the study's best muon grid point, or --adamw_lr)")
    args = ap.parse_args(argv)
    suffix = '' if args.optimizer == 'adamw' else '_muon'
    if args.replot:
        base = os.path.join(args.out, f"{args.corpus}_{'quick' if args.quick else args.size}{suffix}")
        with open(base + '.json') as f:
            d = json.load(f)
        plot(base + '.png',
             f"{d['corpus']}, {d['size']} ({d['model']}, batch {d['batch']}): the landscape along "
             f"the Adam direction, {d['batches_per_ckpt']} batches per checkpoint", np.array(d['etas']), d['results'],
             d['trajectory'], d['adamw_lr'], d['stages'], tuple(d.get('runs', ('alsals', 'adamw'))))
        return
    import torch
    torch.set_num_threads(1)
    size = 'quick' if args.quick else args.size
    n_batches = 2 if args.quick else args.batches
    etas = ETAS[::4] if args.quick else ETAS
    study_dir = os.path.join(ROOT, 'results', 'study', size)
    if args.optimizer == 'adamw':
        lr_adamw = args.adamw_lr or tuned_adamw_lr(study_dir, args.corpus) or 1e-2
        lr_ls = shipped(LS_CONFIG)['learning_rate']
        pairs = (('alsals', PAPER, lr_ls), ('adamw', 'adamw', lr_adamw))
    # Muon: the study's tuned Muon (AdamW part at 1e-2) and MuonSLS in the paper's form from the same lr
    else:
        lr_adamw = args.adamw_lr or tuned_lr(collect(study_dir, args.corpus), MUON_TUNED) or 3e-2
        lr_ls = lr_adamw
        pairs = (('muonsls', MUON_PAPER, lr_ls), ('muon', MUON_TUNED, lr_adamw))
    stages = tuple(int(x) for x in args.stages.split(',') if x) or STAGES[size]
    work = tempfile.mkdtemp(prefix='landscape_')
    res, traj = {}, {}
    try:
        for run, method, lr in pairs:
            dirs, traj[run] = train_in_stages(work, size, args.corpus, method, lr, stages)
            res[run] = {}
            for it, d in dirs.items():
                train = load(size, args.corpus, method, lr, d)
                recs = probe(train, n_batches, etas)
                comp = search_state(train.optimizer) if train.line_search else None
                res[run][str(it)] = dict(analyse(recs, etas, comp, train.optimizer.param_groups[0]),
                                         batches=recs, iter=int(train.iter_num),
                                         lr_adamw=float(train.get_lr(it)) if not train.line_search else None)
                r = res[run][str(it)]
                print(f"{run:6s} ckpt {it:5d}: slope {r['f_a_mean']:.3g}  best one-batch eta "
                      f"{r['eta_best_batch']:.2e}  best val-batch eta {r['eta_best_val']:.2e}  E-ratio "
                      f"crosses c=0.6 at {r['crossing']['0.6']}"
                      + (f"  eta {r['eta']:.2e} D/G {r['D'] / r['G'] if r['G'] else float('nan'):.2e}"
                         f"  rule(c=0.3/0.5/0.6) {r['rule']['0.3']:.2e}/{r['rule']['0.5']:.2e}/{r['rule']['0.6']:.2e}"
                         f"  real step {r['real']['eta']:.2e} (matches: {r['real']['agrees']})" if comp else
                         f"  AdamW lr here {r['lr_adamw']:.2e}"), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    os.makedirs(args.out, exist_ok=True)
    base = os.path.join(args.out, f'{args.corpus}_{size}{suffix}')
    s = SIZES[size]
    meta = dict(corpus=args.corpus, size=size, model=f"{s['n_layer']} x {s['n_embd']}",
                batch=f"{s['batch_size']}x{s['block_size']}", stages=list(stages), etas=list(map(float,
                                                                                                 etas)),
                adamw_lr=lr_adamw, alsals_lr=lr_ls, batches_per_ckpt=n_batches, runs=[p[0] for p in pairs])
    tmp = base + '.json.tmp'
    with open(tmp, 'w') as f:
        json.dump(dict(meta, results=res, trajectory=traj), f)
    os.replace(tmp, base + '.json')
    plot(base + '.png',
         f"{args.corpus}, {size} ({meta['model']}, batch {meta['batch']}): the landscape along "
         f"the {'Adam' if args.optimizer == 'adamw' else 'Muon'} direction, {n_batches} batches per checkpoint", etas,
         res, traj, lr_adamw, stages, tuple(meta['runs']))
    print(f"wrote {base}.json and {base}.png")


if __name__ == '__main__':
    main()
