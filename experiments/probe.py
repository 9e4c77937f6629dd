"""
What one trial forward and the gradients already at hand read, along AdamW's own trajectory: the probe behind
the search's level (results/README.md, "The level read during the run").

AdamW (train.py's model, batches and param groups, through trainer/setup.py) runs at a given lr with a linear
warmup over the first 10 % and no decay (the probe reads the level, not the anneal). At every step it records,
with g the step's gradient (clipped as the step clips it), m_prev the first moment before the step, P the
step's preconditioner 1/(sqrt(v^) + eps) and Delta = w_new - w_old the step AdamW took:

  f_w, f_t   the batch loss at w and at w + Delta (one extra no-grad forward on the same micro-batches)
  lin        g . Delta: the first-order change; quad = f_t - f_w - lin: the second-order one along Delta
  gPg        sum g^2 P: the slope of Adam without momentum; its part from the batch's own noise inflates the
             same-batch slope
  gPm        sum g P m^_prev (m^: bias-corrected): the cross slope, against a moment without this batch
  gg, gm     the same without P

So f(w + s Delta) ~ f_w + s lin + s^2 quad on the batch, and the same-batch optimum along the step is s* =
-lin / (2 quad). rho = E[gPm] / E[gPg] estimates the signal fraction |G|^2 / E|g|^2 of the gradient
(McCandlish et al., "An Empirical Model of Large-Batch Training", 2018): gPg's excess over gPm is the noise at
this batch. Writes results/probe/<size>_<corpus>_lr<lr>.jsonl (one record per step, resumable per run) and
results/probe/summary.json (summarize: the mid-run readings of every run).

  python experiments/probe.py --size wide --lrs 3e-3,1e-3
  python experiments/probe.py --quick --out out-probe-quick
"""
import argparse
import json
import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, ROOT)
from grid import SIZES, train_args  # noqa: E402


def probe(size, corpus, lr, seed, path, stop_frac):
    import torch
    from trainer.setup import from_args
    args = train_args(size, corpus, 'adamw', lr, seed)
    train = from_args(args, quiet=True, cwd=ROOT)
    opt, model, ctx = train.optimizer, train.model, train.ctx
    cfg = train.config
    accum, warmup = train.gradient_accumulation_steps, cfg['warmup_iters']
    beta1, beta2 = cfg['beta1'], cfg['beta2']
    params = [p for g in opt.param_groups for p in g['params']]
    stop = int(cfg['max_iters'] * stop_frac)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        for it in range(stop):
            lr_t = lr * min(1.0, (it + 1) / (warmup + 1))
            for group in opt.param_groups:
                group['lr'] = lr_t
            batches = [train.get_batch('train', it * accum + k) for k in range(accum)]
            losses = []
            for X, Y in batches:
                with ctx:
                    loss = model(X, Y)[1]
                losses.append(loss.detach())
                (loss / accum).backward()
            f_w = torch.stack(losses).mean().item()
            torch.nn.utils.clip_grad_norm_(params, cfg['grad_clip'])
            grads = [p.grad.detach().clone() for p in params]
            m_prev, t_prev = [], []
            for p in params:
                st = opt.state.get(p, {})
                m_prev.append(st['exp_avg'].clone() if 'exp_avg' in st else torch.zeros_like(p))
                t_prev.append(float(st['step']) if 'step' in st else 0.0)
            w_old = [p.detach().clone() for p in params]
            opt.step()
            opt.zero_grad(set_to_none=True)
            rec = dict(iter=it, lr=lr_t, f_w=f_w)
            with torch.no_grad():
                with ctx:
                    rec['f_t'] = torch.stack([model(X, Y)[1] for X, Y in batches]).mean().item()
                lin = gpg = gpm = gg = gm = 0.0
                for p, g, m, t0, w in zip(params, grads, m_prev, t_prev, w_old):
                    st = opt.state[p]
                    t = float(st['step'])
                    denom = (st['exp_avg_sq'] / (1 - beta2 ** t)).sqrt() + opt.param_groups[0]['eps']
                    m_hat = m / (1 - beta1 ** t0) if t0 > 0 else m
                    lin += torch.sum(g * (p.detach() - w)).item()
                    gpg += torch.sum(g * g / denom).item()
                    gpm += torch.sum(g * m_hat / denom).item()
                    gg += torch.sum(g * g).item()
                    gm += torch.sum(g * m_hat).item()
            rec.update(lin=lin, quad=rec['f_t'] - f_w - lin, gPg=gpg, gPm=gpm, gg=gg, gm=gm,
                       bc1=1 - beta1 ** (it + 1))
            if cfg['eval_interval'] and it % cfg['eval_interval'] == 0:
                rec['val'] = train.estimate_loss()['val']
            f.write(json.dumps(rec) + '\n')
            if not math.isfinite(f_w):
                break
    os.replace(tmp, path)


def summarize(out):
    """results/probe/summary.json: per probe run (from a third of its steps on, when the warmup is over), the
    lr, the same-batch optimum along the step s* = -E[lin] / (2 E[quad]), the Polyak ratio f(w) / ||g||^2_P
    over the lr (f(w) / E[gPg] / lr), the cross slope's share E[gPm] / E[gPg] and the last val loss."""
    import glob
    import numpy as np
    rows = {}
    for path in sorted(glob.glob(os.path.join(out, '*.jsonl'))):
        with open(path) as f:
            recs = [json.loads(line) for line in f]
        mid = recs[len(recs) // 3:]
        col = lambda k: np.array([r[k] for r in mid])
        lr = float(col('lr').mean())
        rows[os.path.basename(path)[:-6]] = dict(
            lr=lr, steps=len(recs), s_star=round(float(col('lin').mean() / (-2 * col('quad').mean())), 2),
            polyak_over_lr=round(float(col('f_w').mean() / col('gPg').mean() / lr), 2),
            cross_share=round(float(col('gPm').mean() / col('gPg').mean()), 3),
            last_val=round([r['val'] for r in recs if 'val' in r][-1], 4))
    path = os.path.join(out, 'summary.json')
    with open(path, 'w') as f:
        json.dump(rows, f, indent=1)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    ap.add_argument('--size', default='headline', choices=list(SIZES))
    ap.add_argument('--corpus', default='char')
    ap.add_argument('--lrs', default='1e-2')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--stop', type=float, default=0.6, help='fraction of max_iters to probe (default 0.6)')
    ap.add_argument('--quick', action='store_true')
    ap.add_argument('--out', default=os.path.join(ROOT, 'results', 'probe'))
    a = ap.parse_args(argv)
    size = 'quick' if a.quick else a.size
    os.makedirs(a.out, exist_ok=True)
    for lr in [float(x) for x in a.lrs.split(',')]:
        path = os.path.join(a.out, f"{size}_{a.corpus}_lr{lr:g}.jsonl")
        if os.path.exists(path):
            print(f"skipped {path} (exists)")
            continue
        probe(size, a.corpus, lr, a.seed, path, a.stop)
        print(f"wrote {path}", flush=True)
    print(f"wrote {summarize(a.out)}")


if __name__ == '__main__':
    main()
