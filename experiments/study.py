"""
Is ALSALS learning-rate-free, and does it beat a tuned AdamW schedule? (issue 10, sections 1-2)

Every AdamW and line-search run is train.py itself, one subprocess per run, on the CPU in float32 with a
JSON-lines log (--log_file); the study only chooses the overrides and reads the logs, so it measures exactly
what users run. The base configs are the shipped ones: config/train_shakespeare_char.py for AdamW,
config/train_shakespeare_char_alsals.py for the line-search family (its ls_* settings as shipped), with the
corpus, model size, run length and learning rate overridden. Warmup is 10% of the run for every method; AdamW
decays by cosine to lr/10 at max_iters. A seed fixes both the init and the batch order (train.py's get_batch),
so seed s sees the same batches with every method.

  lrfree   AdamW peak lr and ALSALS warmup target `learning_rate` over 1e-4 .. 1e-2 (issue 10 section 2). The
           AdamW grid is extended along 1-3-10 at an edge until its best point is interior.
           ALSALS here is the shipped config (annealed, ls_anneal_frac=0.2); the paper's form is the variant
           PAPER (alsals@ls_skip_stable=0@ls_anneal_frac=0), shown beside it where it was run.
  methods  AdamSLS, SGDSLS, PLASLS with the shipped warmup target; variants method@key=value (train.py
           overrides) at the shipped target or at each of --lrs.
  peers    Prodigy, D-Adapt Adam, Schedule-Free AdamW, SaLSA with their authors' settings (optional extras,
           requirements-study.txt; "not run" when missing). They cannot go through train.py's command line,
           so each runs in its own process on train.py's setup (runpy, run_name='bench': train.py's model,
           batches, estimate_loss and train_step) with the optimizer global replaced. SaLSA's step takes a
           closure that runs its own backward, so it uses train.py's model and batches but not train_step.

Sizes: quick (tests, seconds), screen (2 x 64, 16x64 tokens, 600 steps, 3 seeds) and headline (3 x 128,
32x128 tokens, 1000 steps). Corpora: char = data/shakespeare_char, bible = data/bible_char (character level).

Each run writes results/study/<size>/<corpus>/<run>.json atomically (config, log records, final val, per-step
cost); a rerun skips the runs that exist, so the study resumes where it stopped. Then per size: summary.md
(tables), <corpus>_lrfree.png, <corpus>_val.png, <corpus>_eta.png.

  python experiments/study.py --size screen --corpus char --what lrfree
  python experiments/study.py --size headline --corpus char,bible --seeds 2
  python experiments/study.py --quick --out out-study-quick   # what tests/test_study.py runs
"""
import argparse
import glob
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADAMW_CONFIG = 'config/train_shakespeare_char.py'
LS_CONFIG = 'config/train_shakespeare_char_alsals.py'
CORPORA = {'char': 'shakespeare_char', 'bible': 'bible_char'}
LRFREE_LRS = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
LS_METHODS = ('alsals', 'adamsls', 'sgdsls', 'plasls')
# the ALSALS of the paper beside the shipped config: a search on every step, constant eta (no annealing)
PAPER = 'alsals@ls_skip_stable=0@ls_anneal_frac=0'
PEER_LR = {'prodigy': 'lr 1 x schedule', 'dadapt_adam': 'lr 1 x schedule', 'schedulefree_adamw': 'lr 0.0025',
           'salsa': 'initial step 1'}  # the authors' settings (peer_main)
PEERS = {'prodigy': 'prodigyopt', 'dadapt_adam': 'dadaptation', 'schedulefree_adamw': 'schedulefree',
         'salsa': 'salsa.SaLSA'}
SIZES = {
    'quick': dict(n_layer=1, n_head=2, n_embd=16, batch_size=4, block_size=16, max_iters=20, eval_interval=10,
                  eval_iters=2, seeds=2, bracket_rounds=1),
    'screen': dict(n_layer=2, n_head=4, n_embd=64, batch_size=16, block_size=64, max_iters=600,
                   eval_interval=150, eval_iters=20, seeds=3, bracket_rounds=3),
    'headline': dict(n_layer=3, n_head=4, n_embd=128, batch_size=32, block_size=128, max_iters=1000,
                     eval_interval=250, eval_iters=20, seeds=3, bracket_rounds=3),
}
QUICK_LRS = [1e-3, 1e-2]  # --quick: two points of the lr-free grid
THREADS = 1  # torch threads per run (--threads)
BRACKET = None  # --bracket: rounds of AdamW grid extension (default: the size's)


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


def shipped(config_path):
    """The config values a config file sets (it may exec another config file, by a path relative to ROOT)."""
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        scope = {}
        exec(open(config_path).read(), scope)
    finally:
        os.chdir(cwd)
    return {k: v for k, v in scope.items() if not k.startswith('_')}


def train_args(size, corpus, method, lr, seed):
    """train.py's command line for one run (config file first, then overrides)."""
    s = SIZES[size]
    warmup = max(1, s['max_iters'] // 10)
    method, *overrides = method.split('@')  # a variant: alsals@ls_c=0.3@ls_b=100 (train.py overrides)
    base = ADAMW_CONFIG if method == 'adamw' or method in PEERS else LS_CONFIG
    args = [base, f"--dataset={CORPORA[corpus]}", f"--seed={1337 + seed}",
            f"--n_layer={s['n_layer']}", f"--n_head={s['n_head']}", f"--n_embd={s['n_embd']}",
            f"--batch_size={s['batch_size']}", f"--block_size={s['block_size']}", "--gradient_accumulation_steps=1",
            f"--max_iters={s['max_iters']}", f"--lr_decay_iters={s['max_iters']}", f"--warmup_iters={warmup}",
            f"--learning_rate={lr!r}", f"--min_lr={lr / 10!r}",
            f"--eval_interval={s['eval_interval']}", f"--eval_iters={s['eval_iters']}", "--log_interval=1",
            "--always_save_checkpoint=False", "--device=cpu", "--compile=False", "--dtype=float32"]
    if method in LS_METHODS:
        args.append(f"--optimizer={method}")
    return args + [f"--{o}" for o in overrides]


def code_fingerprint():
    """sha1 of the code a run measures, so a result can be matched to (or found stale against) the code."""
    import hashlib
    h = hashlib.sha1()
    for f in ('train.py', 'alsals.py', 'model.py', ADAMW_CONFIG, LS_CONFIG):
        with open(os.path.join(ROOT, f), 'rb') as fh:
            h.update(fh.read())
    return h.hexdigest()[:12]


# ---- one run -------------------------------------------------------------------------------------------------
def read_log(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def summarize(records, seconds):
    """Final val, curves and per-step cost from train.py's JSON-lines records."""
    steps = [r for r in records if 'loss' in r]
    evals = [r for r in records if 'val_loss' in r]
    dts = [r['dt_ms'] for r in steps[1:] if not any(e['iter'] == r['iter'] for e in evals)]  # no eval, no warm-up
    fwd = [1 + r.get('forwards', 0) for r in steps]  # training forward + trial forwards (one micro-batch)
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
        cmd = [sys.executable, os.path.relpath(os.path.abspath(__file__), ROOT), '--peer', method, '--'] + args
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
        sys.exit(f"error: run {name} failed: {p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.returncode}")
    command = [a for a in cmd[1:] if not a.startswith(('--out_dir=', '--log_file='))]  # temp paths: not kept
    rec = dict(name=name, method=method, lr=lr, seed=seed, size=size, corpus=corpus, command=command,
               code=code_fingerprint(), returncode=p.returncode, **summarize(records, seconds))
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


# ---- the peers: train.py's setup, another optimizer ---------------------------------------------------------
def peer_main(method, argv):
    """One peer run in this process: train.py's setup without its loop, the optimizer global replaced."""
    import runpy
    import torch
    os.chdir(ROOT)
    sys.path.insert(0, ROOT)
    cfg = dict(a[2:].split('=', 1) for a in argv if a.startswith('--'))
    log_file = cfg.pop('log_file')
    lr = float(cfg['learning_rate'])
    # train.py's lr schedule becomes the peer's multiplier (Prodigy and D-Adaptation use lr=1 with the schedule
    # one would use for Adam): warmup to 1, cosine to 0.1
    argv = [a for a in argv if not a.startswith(('--log_file=', '--learning_rate=', '--min_lr='))]
    sys.argv = ['train.py'] + argv + ['--learning_rate=1.0', '--min_lr=0.1']
    ns = runpy.run_path('train.py', run_name='bench')
    g = ns['train_step'].__globals__  # train.py's own globals: train_step reads the optimizer there
    model, get_batch, get_lr = g['model'], g['get_batch'], g['get_lr']
    wd, betas = g['weight_decay'], (g['beta1'], g['beta2'])
    warmup, max_iters, eval_interval = g['warmup_iters'], g['max_iters'], g['eval_interval']
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{'params': [p for p in params if p.dim() >= 2], 'weight_decay': wd},
              {'params': [p for p in params if p.dim() < 2], 'weight_decay': 0.0}]
    scheduled = method in ('prodigy', 'dadapt_adam')
    if method == 'prodigy':
        # authors' README: lr=1.0 with a cosine schedule; with warmup use safeguard_warmup and bias correction
        from prodigyopt import Prodigy
        opt = Prodigy(groups, lr=1.0, betas=betas, weight_decay=wd, decouple=True, safeguard_warmup=True,
                      use_bias_correction=True)
    elif method == 'dadapt_adam':
        # authors' README: lr=1.0 with the schedule one would use for Adam; decouple=True for AdamW-style decay
        from dadaptation import DAdaptAdam
        opt = DAdaptAdam(groups, lr=1.0, betas=betas, weight_decay=wd, decouple=True)
    elif method == 'schedulefree_adamw':
        # authors' defaults: lr=0.0025, warmup recommended, no schedule
        import schedulefree
        opt = schedulefree.AdamWScheduleFree(groups, lr=0.0025, betas=betas, weight_decay=wd, warmup_steps=warmup)
    else:
        # package defaults (init_step_size=1, c=0.5, speed_up=True); its API has no weight decay
        from salsa.SaLSA import SaLSA
        opt = SaLSA(params)
    g['optimizer'] = opt
    sf = method == 'schedulefree_adamw'

    def rate():
        if method == 'salsa':
            return float(opt.step_size)
        grp = opt.param_groups[0]
        return float(grp['lr']) * float(grp.get('d', 1.0))

    def salsa_step(X, Y, iter_num):
        # SaLSA's closure(backwards) runs the forward (and the backward when asked) on the step's batch itself
        def closure(backwards=False):
            if backwards:
                opt.zero_grad(set_to_none=True)
                with g['ctx']:
                    loss = model(X, Y)[1]
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), g['grad_clip'])
                return loss.detach()
            with torch.no_grad(), g['ctx']:
                return model(X, Y)[1]
        n0 = opt.state['n_forwards']
        loss = opt.step(closure)
        return get_batch('train', iter_num + 1), float(loss), opt.state['n_forwards'] - n0 - 1

    with open(log_file, 'a') as f:
        def write(rec):
            f.write(json.dumps(rec) + '\n')
            f.flush()
        X, Y = get_batch('train', 0)
        if sf:
            opt.train()
        for iter_num in range(max_iters + 1):
            if scheduled:
                for grp in opt.param_groups:
                    grp['lr'] = get_lr(iter_num)
            if iter_num % eval_interval == 0 or iter_num == max_iters:
                if sf:
                    opt.eval()  # schedule-free evaluates at its averaged point
                losses = g['estimate_loss']()
                if sf:
                    opt.train()
                write({'iter': iter_num, 'train_loss': losses['train'], 'val_loss': losses['val']})
                if not math.isfinite(losses['val']):
                    break
            if iter_num == max_iters:
                break
            t0 = time.perf_counter()
            if method == 'salsa':
                (X, Y), loss, extra = salsa_step(X, Y, iter_num)
            else:
                X, Y, loss, _ = g['train_step'](X, Y, iter_num)
                loss, extra = float(loss), 0
            write({'iter': iter_num, 'loss': loss, 'lr': rate(), 'dt_ms': 1000 * (time.perf_counter() - t0),
                   'forwards': extra, 'backtracks': 0, 'skipped': not math.isfinite(loss),
                   'warmup': iter_num < warmup})


def peers_available():
    out = {}
    for m, mod in PEERS.items():
        try:
            __import__(mod)
            out[m] = None
        except Exception as e:  # noqa: BLE001 - optional extra
            out[m] = f"{type(e).__name__}: {e}"
    return out


# ---- orchestration ---------------------------------------------------------------------------------------------
def mean_final(recs):
    v = [r['final_val'] for r in recs]
    return float(np.mean(v)) if all(math.isfinite(x) for x in v) else float('inf')


def run_corpus(out_dir, size, corpus, what, seeds, lrs, peers, only, variant_lrs=None, adamw_lrs=None):
    """Runs (or finds) the AdamW grid, bracketed, and the parts asked for. A variant (method@key=value) runs at
    each of variant_lrs (default: the shipped warmup target). The tables read every finished run (collect)."""
    runs = {}

    def runs_of(method, lr):
        if (method, lr) not in runs:
            runs[(method, lr)] = [run_one(out_dir, size, corpus, method, lr, s) for s in range(seeds)]
        return runs[(method, lr)]

    grid = sorted(adamw_lrs or lrs)
    rounds = SIZES[size]['bracket_rounds'] if BRACKET is None else BRACKET
    for round_ in range(rounds + 1):  # AdamW: extend the grid until the best is interior
        for lr in grid:
            runs_of('adamw', lr)
        best = min(grid, key=lambda lr: mean_final(runs[('adamw', lr)]))
        if grid[0] < best < grid[-1]:
            break
        if round_ == rounds:
            log(f"{corpus}: warning: best AdamW lr {best:g} is at the edge of the grid (not bracketed)")
            break
        grid.insert(0, next_lr(grid[0], False)) if best == grid[0] else grid.append(next_lr(grid[-1], True))
        log(f"{corpus}: best AdamW lr {best:g} at the edge of the grid; extending to {[f'{x:g}' for x in grid]}")
    ls_lr = shipped(LS_CONFIG)['learning_rate']
    if 'lrfree' in what:
        for lr in sorted(set(lrs) | {ls_lr}):
            runs_of('alsals', lr)
    methods = list(LS_METHODS) if 'methods' in what else []
    methods += [p for p in PEERS if peers[p] is None] if 'peers' in what else []
    if only:
        methods = [m for m in only if m in methods or '@' in m]
    for m in methods:
        for lr in [1.0] if m in PEERS else (variant_lrs or [ls_lr]) if '@' in m else [ls_lr]:
            runs_of(m, lr)


def collect(out_dir, corpus):
    """Every finished run of this size and corpus, {(method, lr): [records by seed]}: the tables and plots show
    them all, so a study run in several invocations (more seeds, more lrs) adds up."""
    runs = {}
    for f in sorted(glob.glob(os.path.join(out_dir, corpus, '*.json'))):
        with open(f) as fh:
            r = json.load(fh)
        runs.setdefault((r['method'], r['lr']), []).append(r)
    return {k: sorted(v, key=lambda r: r['seed']) for k, v in runs.items()}


def tuned_lr(runs):
    """The best AdamW grid point (mean final val over seeds) among runs, or None without AdamW runs."""
    lrs = [lr for (m, lr) in runs if m == 'adamw']
    return min(lrs, key=lambda lr: mean_final(runs[('adamw', lr)])) if lrs else None


def spread(recs):
    v = [r['final_val'] for r in recs]
    if not all(math.isfinite(x) for x in v):
        return f"diverged ({sum(not math.isfinite(x) for x in v)}/{len(v)})"
    return f"{np.mean(v):.4f} ± {np.std(v):.4f} (n={len(v)})" if len(v) > 1 else f"{v[0]:.4f} (n=1)"


def tables(size, corpus, runs, tuned, peers):
    s = SIZES[size]
    ls_lr = shipped(LS_CONFIG)['learning_rate']
    adamw_lrs = sorted(lr for (m, lr) in runs if m == 'adamw')
    edge = '' if adamw_lrs[0] < tuned < adamw_lrs[-1] else \
        " **The best AdamW lr is at the edge of the grid run so far (not bracketed).**"
    out = [f"### {corpus} ({CORPORA[corpus]}), {size}: {s['n_layer']} layers x {s['n_embd']} dims, batch "
           f"{s['batch_size']}x{s['block_size']}, {s['max_iters']} iterations, warmup {max(1, s['max_iters'] // 10)}; "
           f"final val loss over {s['eval_iters']} fixed val batches, mean ± std over n seeds.{edge}", ""]
    # issue 10 section 2: the one number a user picks
    cols = [m for m in ('adamw', 'alsals', PAPER) if any(mm == m for (mm, _) in runs)]
    lrs = sorted({lr for (m, lr) in runs if m in cols})
    if 'alsals' in cols:
        best = {m: min(mean_final(runs[(mm, lr)]) for (mm, lr) in runs if mm == m) for m in cols}
        out += ["Learning-rate-free test: final val loss against the one number a user picks (AdamW: peak lr; "
                "ALSALS: warmup target `learning_rate`). ALSALS is the shipped config (annealed); the paper's form "
                f"(`{PAPER}`: a search every step, constant eta) where it was run. In brackets: % above that "
                "method's own best.", "",
                "| lr | " + " | ".join({'adamw': 'AdamW + cosine', 'alsals': 'ALSALS (shipped config)',
                                        PAPER: "ALSALS (paper's form)"}[m] for m in cols) + " |",
                "|---" * (len(cols) + 1) + "|"]
        for lr in lrs:
            cells = []
            for m in cols:
                r = runs.get((m, lr))
                if r is None:
                    cells.append('')
                    continue
                pct = 100 * (mean_final(r) / best[m] - 1)
                cells.append(f"{spread(r)} (+{pct:.1f}%)" if math.isfinite(pct) else spread(r))
            star = ' (shipped ALSALS)' if lr == ls_lr else ''
            out.append(f"| {lr:g}{star} | " + " | ".join(cells) + " |")
        within = [lr for lr in LRFREE_LRS if ('alsals', lr) in runs and mean_final(runs[('alsals', lr)]) <= 1.02 * best['alsals']]
        n = sum(('alsals', lr) in runs for lr in LRFREE_LRS)
        out += ["", f"ALSALS: {len(within)} of {n} warmup targets within 2% of its own best (goal: all).", ""]
    base = runs[('adamw', tuned)]
    b_ms = np.mean([r['ms_per_step'] for r in base])
    b_fwd = np.mean([r['fwd_per_step'] for r in base])
    out += ["Every method against the tuned AdamW (best grid point). Cost: median wall-clock per training step "
            "(no eval; shared CPU, noisy) and forwards per step (exact), each also as a ratio to tuned AdamW's.", "",
            "| method | lr / warmup target | final val | vs tuned AdamW | ms / step | fwd / step | eta or lr at the end |",
            "|---|---|---|---|---|---|---|"]
    rows = [('adamw', tuned, 'AdamW + cosine (tuned)')]
    rows += [(m, lr, m + (' (shipped config)' if m == 'alsals' and lr == ls_lr else '')) for (m, lr) in sorted(runs)
             if m != 'adamw' and not (m in ('alsals', PAPER) and lr != ls_lr)]
    for m, lr, label in rows:
        rs = runs[(m, lr)]
        ms, fwd = np.mean([r['ms_per_step'] for r in rs]), np.mean([r['fwd_per_step'] for r in rs])
        eta = np.mean([r['eta'][-1] for r in rs if r['eta']]) if all(r['eta'] for r in rs) else float('nan')
        d = mean_final(rs) - mean_final(base)
        out.append(f"| {label} | {PEER_LR.get(m, f'{lr:g}')} | {spread(rs)} | {d:+.4f} | {ms:.1f} ({ms / b_ms:.2f}x) | "
                   f"{fwd:.2f} ({fwd / b_fwd:.2f}x) | {eta:.2e} |")
    for p, err in peers.items():
        if err is not None:
            out.append(f"| {p} | | not run: {err} | | | | |")
    codes = sorted({r['code'] for rs in runs.values() for r in rs})
    out += ["", f"Code versions among these runs: {len(codes)} (`code` in each JSON: sha1 of train.py, alsals.py, "
            f"model.py and the two configs; the current one is {code_fingerprint()})."]
    return '\n'.join(out) + '\n'


def plots(out_dir, size, corpus, runs, tuned):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    pngs = []
    # final val against the one number a user picks
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for m, c, label in (('adamw', 'k', 'AdamW + cosine: peak lr'), ('alsals', 'C3', 'ALSALS (shipped): warmup target'),
                        (PAPER, 'C0', "ALSALS (paper's form): warmup target")):
        lrs = sorted(lr for (mm, lr) in runs if mm == m)
        if not lrs:
            continue
        v = [[r['final_val'] for r in runs[(m, lr)]] for lr in lrs]
        mu = np.array([np.mean(x) for x in v])
        lo, hi = mu - np.array([np.min(x) for x in v]), np.array([np.max(x) for x in v]) - mu
        ax.errorbar(lrs, mu, yerr=[lo, hi], color=c, marker='o', capsize=3, label=label)
    ax.set_xscale('log')
    ax.set_xlabel('the number a user picks')
    ax.set_ylabel('final val loss (mean, bars = min/max over seeds)')
    ax.set_title(f'{corpus}, {size}: learning-rate-free test')
    ax.grid(alpha=0.3, which='both')
    ax.legend()
    fig.tight_layout()
    pngs.append(os.path.join(out_dir, f'{corpus}_lrfree.png'))
    fig.savefig(pngs[-1], dpi=90)
    plt.close(fig)
    # val curves and step sizes, seed 0
    ls_lr = shipped(LS_CONFIG)['learning_rate']
    show = [('adamw', tuned)] + [(m, lr) for (m, lr) in sorted(runs) if lr == ls_lr and m in ('alsals', PAPER)
                                 or m.split('@')[0] in PEERS]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (m, lr) in enumerate(show):
        v = np.array(runs[(m, lr)][0]['val'])
        if len(v):
            ax.plot(v[:, 0], v[:, 1], marker='.', color='k' if m == 'adamw' else f'C{i}', label=f'{m} ({lr:g})')
    ax.set_xlabel('iteration')
    ax.set_ylabel('val loss (seed 0)')
    ax.set_title(f'{corpus}, {size}: validation loss')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    pngs.append(os.path.join(out_dir, f'{corpus}_val.png'))
    fig.savefig(pngs[-1], dpi=90)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(runs[('adamw', tuned)][0]['eta'], 'k--', label=f'tuned AdamW lr (peak {tuned:g})')
    for i, lr in enumerate(sorted(lr for (m, lr) in runs if m == 'alsals')):
        ax.plot(runs[('alsals', lr)][0]['eta'], color=f'C{i}', label=f'ALSALS eta, warmup target {lr:g}')
    ax.set_yscale('log')
    ax.set_xlabel('iteration')
    ax.set_ylabel('step size (seed 0)')
    ax.set_title(f'{corpus}, {size}: ALSALS step size vs the tuned AdamW lr')
    ax.grid(alpha=0.3, which='both')
    ax.legend(fontsize=7)
    fig.tight_layout()
    pngs.append(os.path.join(out_dir, f'{corpus}_eta.png'))
    fig.savefig(pngs[-1], dpi=90)
    plt.close(fig)
    return pngs


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ['--peer']:  # internal: one peer run (run_one's subprocess)
        return peer_main(argv[1], argv[3:])
    ap = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    ap.add_argument('--size', default='screen', choices=list(SIZES))
    ap.add_argument('--quick', action='store_true', help='--size quick, two lrs (seconds; the tests)')
    ap.add_argument('--corpus', default='char,bible', help='comma list of char, bible')
    ap.add_argument('--what', default='lrfree,methods,peers', help='comma list of lrfree, methods, peers')
    ap.add_argument('--methods', default='', help="comma list: run only these of methods/peers (default all); "
                    "a variant is method@key=value[@key=value] (train.py overrides), e.g. alsals@ls_c=0.3")
    ap.add_argument('--seeds', type=int, default=0, help='number of seeds (default: the size\'s)')
    ap.add_argument('--lrs', default='', help='comma list replacing the lr-free grid 1e-4..1e-2 (and the '
                    'warmup targets of the --methods variants, which otherwise run at the shipped one)')
    ap.add_argument('--adamw-lrs', default='', help='comma list: the AdamW grid to start from (default: the '
                    'lr-free grid or --lrs); with --bracket 0 exactly these')
    ap.add_argument('--out', default=os.path.join(ROOT, 'results', 'study'))
    ap.add_argument('--threads', type=int, default=1, help='torch threads per run (default 1)')
    ap.add_argument('--bracket', type=int, default=None, help='rounds of AdamW grid extension (default: the size\'s)')
    args = ap.parse_args(argv)
    global THREADS, BRACKET
    THREADS, BRACKET = args.threads, args.bracket
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
                   adamw_lrs=[float(x) for x in args.adamw_lrs.split(',') if x])
        runs = collect(out_dir, c)
        tuned = tuned_lr(runs)
        with open(os.path.join(out_dir, c, 'section.md'), 'w') as f:
            f.write(tables(size, c, runs, tuned, peers))
        pngs = plots(out_dir, size, c, runs, tuned)
        log(f"{c}: wrote {os.path.join(out_dir, c, 'section.md')} and {', '.join(os.path.basename(p) for p in pngs)}")
    # summary.md: every corpus this size has results for (corpora may run in separate invocations)
    md = [f"# Optimizer study, size {size} (experiments/study.py)", "",
          "Generated by experiments/study.py from train.py's JSON-lines logs; one JSON per run in the corpus "
          "folders. Wall-clock is on a 2-core CPU shared with other jobs: noisy; forwards per step are exact.", ""]
    for c in CORPORA:
        p = os.path.join(out_dir, c, 'section.md')
        if os.path.exists(p):
            md.append(open(p).read())
    with open(os.path.join(out_dir, 'summary.md'), 'w') as f:
        f.write('\n'.join(md))
    log(f"wrote {os.path.join(out_dir, 'summary.md')} in {time.time() - t0:.0f}s")


if __name__ == '__main__':
    main()
