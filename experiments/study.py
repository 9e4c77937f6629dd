"""
Is ALSALS learning-rate-free, and does it beat a tuned AdamW schedule?

Every AdamW and line-search run is train.py itself, one subprocess per run, on the CPU in float32 with a
JSON-lines log (--log_file); the study only chooses the overrides and reads the logs, so it measures exactly
what users run. The base configs are the shipped ones: config/train_shakespeare_char.py for AdamW, _muon.py
for Muon, _muonsls.py for MuonSLS, config/train_shakespeare_char_alsals.py for the rest of the line-search
family (its ls_* settings as shipped), with the corpus, model size, run length and learning rate overridden.
Warmup is 10% of the run for every method; AdamW and Muon decay by cosine (or WSD) to lr/10 at max_iters. A
seed fixes both the init and the batch order (train.py's get_batch), so seed s sees the same batches with
every method.

  baselines  every run: each of --baselines (default adamw; also adamw@lr_schedule=wsd, muon,
           muon@lr_schedule=wsd) over a grid (AdamW: the lr-free grid or --adamw-lrs; Muon: 1e-2, 3e-2, 1e-1
           or --muon-lrs), extended along 1-3-10 at an edge until its best point is interior. The line search
           is judged against the better of its direction's baselines (AdamW's for ALSALS, Muon's for MuonSLS).
  lrfree   AdamW peak lr and ALSALS warmup target `learning_rate` over 1e-4 .. 1e-2 (the number a user picks).
           ALSALS here is the shipped config (annealed, ls_anneal_frac=0.2); the paper's form is the variant
           PAPER (alsals@ls_skip_stable=0@ls_anneal_frac=0), shown beside it where it was run.
  methods  AdamSLS, SGDSLS, PLASLS, MuonSLS at their shipped first guess; the ones in --methods (variants
           method@key=value: train.py overrides) at each of --lrs if given.
  peers    Prodigy, D-Adapt Adam, Schedule-Free AdamW, SaLSA with their authors' settings (optional extras,
           requirements-study.txt; "not run" when missing), each in its own process on train.py's setup with
           train.py's optimizer replaced (experiments/peers.py).

Sizes: quick (tests, seconds), screen (2 x 64, 16x64 tokens, 600 steps, 3 seeds), headline (3 x 128, 32x128
    tokens, 1000 steps) and the ladder's other rungs (grid.LADDER: wide, batch4x, deep, long). Corpora: char =
    data/shakespeare_char, bible = data/bible_char (character level).

Each run writes results/study/<size>/<corpus>/<run>.json atomically (config, log records, final val, per-step
cost); a rerun skips the runs that exist, so the study resumes where it stopped. Then per size: summary.md
(tables), <corpus>_lrfree.png, <corpus>_val.png, <corpus>_eta.png (experiments/report.py); after a ladder
rung, ladder.md: every rung's final val and forwards per step, one column per rung.

This file runs the runs and holds the command line; the grid (sizes, corpora, methods, train.py's command line
for a run) is experiments/grid.py, the peers' adapters experiments/peers.py, the tables and plots
experiments/report.py.

  python experiments/study.py --size screen --corpus char --what lrfree
  python experiments/study.py --size headline --corpus char,bible --seeds 2
  python experiments/study.py --size wide --what baselines \
      --baselines adamw,adamw@lr_schedule=wsd,muon,muon@lr_schedule=wsd
  python experiments/study.py --size wide --what lrfree,methods --methods muonsls --lrs 1e-4,1e-3,1e-2,1e-1
  python experiments/study.py --quick --out out-study-quick   # what tests/test_study.py runs
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import report
from grid import (BASELINE_LRS, CORPORA, LADDER, LRFREE_LRS, LS_METHODS, QUICK_LRS, ROOT, SIZES,
                  code_fingerprint, shipped_lr, train_args)
from peers import PEER_HAS_LR, PEERS, peer_main, peers_available

THREADS = 1  # torch threads per run (--threads)
JOBS = 1  # runs at a time, the seeds of one grid point (--jobs)
BRACKET = None  # --bracket: rounds of each baseline's grid extension (default: the size's)


def log(msg):
    print(msg, flush=True)


def fmt_lr(lr):
    """1e-2 -> '1e-2', 0.00333 -> '3.33e-3' (run names)."""
    m, e = f"{lr:.2e}".split('e')
    return f"{m.rstrip('0').rstrip('.')}e{int(e)}"


def next_lr(lr, up):
    """The next point of the 1-3-10 grid above (up) or below lr."""
    k = math.floor(math.log10(lr) + 1e-9)
    grid = [float(f'{10.0 ** (k + i) * m:.3g}') for i in (-1, 0, 1) for m in (1, 3)]
    return min(x for x in grid if x > lr * 1.01) if up else max(x for x in grid if x < lr / 1.01)


# ---- one run -----------------------------------------------------------------------------------------------
def read_log(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def summarize(records, seconds, accum=1):
    """Final val, curves and per-step cost from train.py's JSON-lines records. Forwards per step count
    micro-batch
    forwards: the step's `accum` training ones and each trial's one (the shipped ls_trial_microsteps=1), over
    accum."""
    steps = [r for r in records if 'loss' in r]
    evals = [r for r in records if 'val_loss' in r]
    # no eval, no warm-up
    dts = [r['dt_ms'] for r in steps[1:] if not any(e['iter'] == r['iter'] for e in evals)]
    # training forwards + trial forwards (one micro-batch)
    fwd = [1 + r.get('forwards', 0) / accum for r in steps]
    final = evals[-1]['val_loss'] if evals else float('nan')
    return dict(final_val=final, val=[[e['iter'], e['val_loss']] for e in evals],
                train_loss=[r['loss'] for r in steps], eta=[r['lr'] for r in steps],
                ms_per_step=float(np.median(dts)) if dts else float('nan'),
                fwd_per_step=float(np.mean(fwd)) if fwd else float('nan'),
                backtracks=int(sum(r.get('backtracks', 0) for r in steps)),
                skipped=int(sum(bool(r.get('skipped')) for r in steps)), iters=len(steps), seconds=seconds,
                status='ok' if math.isfinite(final) else 'diverged')


def run_one(out_dir, size, corpus, method, lr, seed):
    """Run (or load) one run; returns its record. The JSON appears only when the run has finished."""
    name = f"{method}_lr{fmt_lr(lr)}_s{seed}"
    path = os.path.join(out_dir, corpus, name + '.json')
    if os.path.exists(path):
        log(f"skipped {path} (exists)")
        with open(path) as f:
            return json.load(f)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    work = tempfile.mkdtemp(prefix='study_')
    log_file = os.path.join(work, 'log.jsonl')
    args = train_args(size, corpus, method, lr, seed) + [f"--out_dir={os.path.join(work, 'out')}",
                                                         f"--log_file={log_file}"]
    if method.split('@')[0] in PEERS:
        cmd = [sys.executable, os.path.relpath(os.path.abspath(__file__), ROOT), '--peer', method,
               '--'] + args
    else:
        cmd = [sys.executable, 'train.py'] + args
    t = time.time()
    # one thread per run: on a shared 2-core box two threads per process were measured 20x slower (contention)
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS))
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    seconds = time.time() - t
    records = read_log(log_file) if os.path.exists(log_file) else []
    if p.returncode != 0 and (p.returncode < 0 or not any('loss' in r for r in records)):
        # killed, or refused to start (bad setting): no result, so a rerun tries again
        shutil.rmtree(work, ignore_errors=True)
        sys.exit(f"error: run {name} failed: "
                 f"{p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.returncode}")
    command = [a for a in cmd[1:] if not a.startswith(('--out_dir=', '--log_file='))]  # temp paths: not kept
    rec = dict(name=name, method=method, lr=lr, seed=seed, size=size, corpus=corpus, command=command,
               code=code_fingerprint(), returncode=p.returncode,
               **summarize(records, seconds, SIZES[size].get('accum', 1)))
    if p.returncode != 0:  # e.g. train.py stopped after max_nonfinite_steps: a diverged run is a result
        rec.update(final_val=float('nan'), status='failed: ' + (p.stderr.strip().splitlines() or ['?'])[-1])
    shutil.rmtree(work, ignore_errors=True)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(rec, f)
    os.replace(tmp, path)  # atomic: a killed study leaves no half-written result
    log(f"{size}/{corpus} {name:<28} final val {rec['final_val']:.4f}  {rec['ms_per_step']:.1f} ms/step  "
        f"{rec['fwd_per_step']:.2f} fwd/step  ({seconds:.0f}s) {rec['status']}")
    return rec


# ---- the study ---------------------------------------------------------------------------------------------
def run_corpus(out_dir, size, corpus, what, seeds, lrs, peers, only, variant_lrs=None, adamw_lrs=None,
               baselines=('adamw',), muon_lrs=None, peer_lrs_given=()):
    """Runs (or finds) each baseline's grid, bracketed, and the parts asked for. A method named in `only` (or
        a variant, method@key=value) runs at each of variant_lrs (default: its shipped first guess). The
        tables read every finished run (collect)."""
    runs = {}

    def runs_of(method, lr):
        if (method, lr) not in runs:  # the seeds of one grid point, JOBS of them at a time
            with ThreadPoolExecutor(max_workers=JOBS) as pool:
                runs[(method, lr)] = list(pool.map(lambda s: run_one(out_dir, size, corpus, method, lr, s),
                                                   range(seeds)))
        return runs[(method, lr)]

    rounds = SIZES[size]['bracket_rounds'] if BRACKET is None else BRACKET
    # each baseline (adamw, muon, @lr_schedule=wsd): extend its grid until the best is interior
    for b in baselines:
        grid = sorted((adamw_lrs or lrs) if b.split('@')[0] == 'adamw'
                      else (muon_lrs or BASELINE_LRS['muon']))
        for round_ in range(rounds + 1):
            for lr in grid:
                runs_of(b, lr)
            best = min(grid, key=lambda lr: report.mean_final(runs[(b, lr)]))
            if grid[0] < best < grid[-1]:
                break
            if round_ == rounds:
                log(f"{corpus}: warning: best {b} lr {best:g} is at the edge of the grid (not bracketed)")
                break
            grid.insert(0, next_lr(grid[0], False)) if best == grid[0] else grid.append(next_lr(grid[-1],
                                                                                                True))
            log(f"{corpus}: best {b} lr {best:g} at the edge of the grid; extending to "
                f"{[f'{x:g}' for x in grid]}")
    if 'lrfree' in what:
        for lr in sorted(set(lrs) | {shipped_lr('alsals')}):
            runs_of('alsals', lr)
    methods = list(LS_METHODS) if 'methods' in what else []
    methods += [p for p in PEERS if peers[p] is None] if 'peers' in what else []
    if only:
        methods = [m for m in only if m in methods or '@' in m]
    for m in methods:
        if m in PEERS:  # lr 1: the peer's own setting; one with a step size (PEER_HAS_LR) also at --peer-lrs
            peer_lrs = [1.0] + (list(peer_lrs_given) if m in PEER_HAS_LR else [])
        for lr in peer_lrs if m in PEERS else (variant_lrs or [shipped_lr(m)]) if only else [shipped_lr(m)]:
            runs_of(m, lr)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ['--peer']:  # internal: one peer run (run_one's subprocess)
        return peer_main(argv[1], argv[3:])
    ap = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    ap.add_argument('--size', default='screen', choices=list(SIZES))
    ap.add_argument('--quick', action='store_true', help='--size quick, two lrs (seconds; the tests)')
    ap.add_argument('--corpus', default='char,bible', help='comma list of char, bible')
    ap.add_argument('--what', default='lrfree,methods,peers', help='comma list of lrfree, methods, peers '
                    '(baselines: only the brackets, which every invocation runs)')
    ap.add_argument('--methods', default='',
                    help="comma list: run only these of methods/peers (default all), at "
                    "each of --lrs if given; a variant is method@key=value[@key=value] (train.py overrides), "
                    "e.g. "
                    "alsals@ls_c=0.3")
    ap.add_argument('--baselines', default='adamw',
                    help="comma list of the baselines to bracket: adamw, muon, and "
                    "their variants, e.g. adamw@lr_schedule=wsd (default adamw)")
    ap.add_argument('--muon-lrs', default='', help='comma list: the grid Muon baselines start from (default '
                    '1e-2,3e-2,1e-1)')
    ap.add_argument('--peer-lrs', default='',
                    help='comma list: the lrs of the peers that have one (Schedule-Free '
                    'AdamW), run besides their default (its lr 1 run)')
    ap.add_argument('--seeds', type=int, default=0, help='number of seeds (default: the size\'s)')
    ap.add_argument('--lrs', default='', help='comma list replacing the lr-free grid 1e-4..1e-2 (and the '
                    'first guesses of the --methods named, which otherwise run at their shipped one)')
    ap.add_argument('--adamw-lrs', default='', help='comma list: the AdamW grid to start from (default: the '
                    'lr-free grid or --lrs); with --bracket 0 exactly these')
    ap.add_argument('--out', default=os.path.join(ROOT, 'results', 'study'))
    ap.add_argument('--threads', type=int, default=1, help='torch threads per run (default 1)')
    ap.add_argument('--jobs', type=int, default=1,
                    help='runs at a time: the seeds of a grid point (default 1; '
                    'more share the cores, so their timings are not comparable)')
    ap.add_argument('--bracket', type=int, default=None,
                    help='rounds of each baseline\'s grid extension (default: '
                    'the size\'s)')
    args = ap.parse_args(argv)
    global THREADS, BRACKET, JOBS
    THREADS, BRACKET, JOBS = args.threads, args.bracket, max(1, args.jobs)
    size = 'quick' if args.quick else args.size
    corpora = [c for c in args.corpus.split(',') if c]
    what = {w for w in args.what.split(',') if w}
    for c in corpora:
        if c not in CORPORA:
            sys.exit(f"error: unknown corpus {c!r}; choose from {', '.join(CORPORA)}")
        d = os.path.join(ROOT, 'data', CORPORA[c])
        if not os.path.exists(os.path.join(d, 'train.bin')):
            sys.exit(f"error: {os.path.join('data', CORPORA[c], 'train.bin')} missing: run python "
                     f"data/{CORPORA[c]}/prepare.py first")
    if what - {'lrfree', 'methods', 'peers', 'baselines'}:
        sys.exit(f"error: --what takes lrfree, methods, peers, baselines; got {args.what!r}")
    baselines = [b for b in args.baselines.split(',') if b]
    for b in baselines:
        if b.split('@')[0] not in ('adamw', 'muon'):
            sys.exit(f"error: --baselines: {b!r} is not adamw or muon (or a variant, e.g. "
                     "adamw@lr_schedule=wsd)")
    lrs = [float(x) for x in args.lrs.split(',') if x] or (QUICK_LRS if args.quick else LRFREE_LRS)
    seeds = args.seeds or SIZES[size]['seeds']
    peers = peers_available()
    for p, err in peers.items():
        if err:
            log(f"peer {p} not run ({err})")
    out_dir = os.path.join(args.out, size)
    only = [m for m in args.methods.split(',') if m]
    t0 = time.time()
    for c in corpora:
        run_corpus(out_dir, size, c, what, seeds, lrs, peers, only, variant_lrs=lrs if args.lrs else None,
                   adamw_lrs=[float(x) for x in args.adamw_lrs.split(',') if x], baselines=baselines,
                   muon_lrs=[float(x) for x in args.muon_lrs.split(',') if x],
                   peer_lrs_given=[float(x) for x in args.peer_lrs.split(',') if x])
        section, *pngs = report.write_corpus(out_dir, size, c, peers)
        log(f"{c}: wrote {section} and {', '.join(os.path.basename(p) for p in pngs)}")
    log(f"wrote {report.write_summary(out_dir, size)} in {time.time() - t0:.0f}s")
    if size in LADDER:
        log(f"wrote {report.write_ladder(args.out)}")


if __name__ == '__main__':
    main()
