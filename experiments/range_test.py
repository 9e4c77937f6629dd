"""
The LR range test of AdamW (Smith, "Cyclical Learning Rates for Training Neural Networks", 2017) at the
study's
sizes: where does the training loss stop falling as the lr grows, against the study's tuned AdamW lr? This is
the measurement behind the range-test start of the line search (train.py's ls_range_test, alsals/alsals.py's
ramp_rule='range'), which runs the same test inside the optimizer.

train.py's setup (trainer/setup.py) for the study's command line of a size and corpus (experiments/grid.py),
then AdamW steps of train.py's train_step with lr = lr0 * rate**t (no schedule), until the loss passes 10 or
is not finite. Each step's lr and loss go to results/range_test/<corpus>_<size>[_<tag>].json; the summary
applies the ramp rule of alsals.py to them: the EMA of the loss over k steps (k = steps per doubling of the
lr), the first step where it is 2 % above its running minimum (the edge), and the lr there.

  python experiments/range_test.py --corpus char --size headline                      # ~3 min on one core
  python experiments/range_test.py --corpus char --size headline --lr0 1e-3 --tag from1e-3
"""
import argparse
import json
import math
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, ROOT)
from trainer.setup import from_args  # noqa: E402
from grid import CORPORA, SIZES, train_args  # noqa: E402


def edge(lrs, losses, k, rise=0.02):
    """alsals/alsals.py's 'range' rule on a recorded ramp: (step, lr) where the EMA over k steps of the loss
    first
    exceeds (1 + rise) x its running minimum, or None."""
    ema, best = None, math.inf
    for t, f in enumerate(losses):
        ema = f if ema is None else (1 - 1 / k) * ema + f / k
        if ema > (1 + rise) * best:
            return t, lrs[t]
        best = min(best, ema)
    return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    ap.add_argument('--corpus', default='char', choices=list(CORPORA))
    ap.add_argument('--size', default='headline', choices=list(SIZES))
    ap.add_argument('--lr0', type=float, default=1e-5, help='the first lr')
    ap.add_argument('--rate', type=float, default=1.05, help='lr growth per step')
    ap.add_argument('--steps', type=int, default=400, help='at most this many steps')
    ap.add_argument('--tag', default='', help='suffix of the output file')
    ap.add_argument('--out', default=os.path.join(ROOT, 'results', 'range_test'))
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    train = from_args(train_args(args.size, args.corpus, 'adamw', args.lr0, 0) + ['--log_file=',
                      '--out_dir=out-range-test'], quiet=True, cwd=ROOT)
    opt, X, Y = train.optimizer, *train.get_batch('train', 0)
    lrs, losses = [], []
    for t in range(args.steps):
        lr = args.lr0 * args.rate ** t
        for g in opt.param_groups:
            g['lr'] = lr
        X, Y, loss, _ = train.train_step(X, Y, t)
        lrs.append(lr)
        losses.append(float(loss))
        if not math.isfinite(losses[-1]) or losses[-1] > 10:
            break
    k = math.log(2) / math.log(args.rate)
    found = edge(lrs, losses, k)
    s = SIZES[args.size]
    rec = dict(corpus=args.corpus, size=args.size, model=f"{s['n_layer']} x {s['n_embd']}",
               batch=f"{s['batch_size']}x{s['block_size']}", lr0=args.lr0, rate=args.rate,
               steps_per_doubling=k,
               lr=lrs, loss=losses, edge_step=found and found[0], edge_lr=found and found[1],
               command=['experiments/range_test.py', *(argv if argv is not None else sys.argv[1:])])
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"{args.corpus}_{args.size}{'_' + args.tag if args.tag else ''}.json")
    with open(path + '.tmp', 'w') as f:
        json.dump(rec, f)
    os.replace(path + '.tmp', path)
    print(f"{args.corpus} {args.size}: {len(lrs)} steps, k = {k:.1f} steps per doubling; edge at step "
          f"{found[0]}, lr {found[1]:.3g}" if found else "no edge", f"; wrote {path}")


if __name__ == '__main__':
    main()
