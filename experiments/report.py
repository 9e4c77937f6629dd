"""
The study's tables and plots (experiments/study.py): from the finished runs' JSON files of a size and corpus,
<corpus>/section.md (the tables) and <corpus>_lrfree.png, <corpus>_val.png, <corpus>_eta.png; then summary.md,
every corpus's section of that size. Every finished run is read (collect), so a study run in several
invocations (more seeds, more lrs) adds up.
"""
import glob
import json
import math
import os

import numpy as np

from grid import CORPORA, LS_CONFIG, PAPER, SIZES, code_fingerprint, shipped
from peers import PEER_LR, PEERS


# ---- reading the results ----------------------------------------------------------------------------------------
def collect(out_dir, corpus):
    """Every finished run of this size and corpus, {(method, lr): [records by seed]}: the tables and plots show
    them all, so a study run in several invocations (more seeds, more lrs) adds up."""
    runs = {}
    for f in sorted(glob.glob(os.path.join(out_dir, corpus, '*.json'))):
        with open(f) as fh:
            r = json.load(fh)
        runs.setdefault((r['method'], r['lr']), []).append(r)
    return {k: sorted(v, key=lambda r: r['seed']) for k, v in runs.items()}


def mean_final(recs):
    v = [r['final_val'] for r in recs]
    return float(np.mean(v)) if all(math.isfinite(x) for x in v) else float('inf')


def tuned_lr(runs, method='adamw'):
    """The best grid point of `method` (mean final val over seeds) among runs, or None without its runs."""
    lrs = [lr for (m, lr) in runs if m == method]
    return min(lrs, key=lambda lr: mean_final(runs[(method, lr)])) if lrs else None


def spread(recs):
    v = [r['final_val'] for r in recs]
    if not all(math.isfinite(x) for x in v):
        return f"diverged ({sum(not math.isfinite(x) for x in v)}/{len(v)})"
    return f"{np.mean(v):.4f} ± {np.std(v):.4f} (n={len(v)})" if len(v) > 1 else f"{v[0]:.4f} (n=1)"


# ---- tables and plots -------------------------------------------------------------------------------------------
def curve_methods(runs):
    """AdamW, then the shipped ALSALS, then every other method run at two or more lrs (a curve to read)."""
    count = {}
    for (m, _) in runs:
        count[m] = count.get(m, 0) + 1
    rest = sorted(m for m, n in count.items() if n >= 2 and m not in ('adamw', 'alsals'))
    return [m for m in ('adamw', 'alsals') if m in count] + rest


def tables(size, corpus, runs, tuned, peers):
    s = SIZES[size]
    adamw_lrs = sorted(lr for (m, lr) in runs if m == 'adamw')
    edge = '' if adamw_lrs[0] < tuned < adamw_lrs[-1] else \
        " **The best AdamW lr is at the edge of the grid run so far (not bracketed).**"
    out = [f"### {corpus} ({CORPORA[corpus]}), {size}: {s['n_layer']} layers x {s['n_embd']} dims, batch "
           f"{s['batch_size']}x{s['block_size']}, {s['max_iters']} iterations, warmup {max(1, s['max_iters'] // 10)}; "
           f"final val loss over {s['eval_iters']} fixed val batches, mean ± std over n seeds.{edge}", ""]
    # the one number a user picks (a learning rate or a first guess): every method run at two or more of them
    cols = curve_methods(runs)
    lrs = sorted({lr for (m, lr) in runs if m in cols})
    if 'alsals' in cols or len(cols) > 1:
        best = {m: min(mean_final(runs[(mm, lr)]) for (mm, lr) in runs if mm == m) for m in cols}
        out += ["Learning-rate-free test: final val loss against the one number a user picks (AdamW, Muon: the peak "
                "lr; the line searches: `learning_rate`, their first guess or warmup target). `alsals` is the "
                f"shipped config; the paper's form is `{PAPER}` (a search every step, constant eta). In brackets: "
                "% above that method's own best.", "",
                "| lr | " + " | ".join(f"`{m}`" for m in cols) + " |",
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
            out.append(f"| {lr:g} | " + " | ".join(cells) + " |")
        out.append("")
        for m in cols:
            mine = [lr for (mm, lr) in runs if mm == m]
            within = [lr for lr in mine if mean_final(runs[(m, lr)]) <= 1.02 * best[m]]
            out.append(f"- `{m}`: {len(within)} of {len(mine)} within 2% of its own best, whose gap to the tuned "
                       f"AdamW is {100 * (best[m] / mean_final(runs[('adamw', tuned)]) - 1):+.1f}%.")
        out.append("")
    base = runs[('adamw', tuned)]
    b_ms = np.mean([r['ms_per_step'] for r in base])
    b_fwd = np.mean([r['fwd_per_step'] for r in base])
    out += ["Every method against the tuned AdamW (best grid point). Cost: median wall-clock per training step "
            "(no eval; shared CPU, noisy) and forwards per step (exact), each also as a ratio to tuned AdamW's.", "",
            "| method | lr / warmup target | final val | vs tuned AdamW | ms / step | fwd / step | "
            "eta or lr at the end |",
            "|---|---|---|---|---|---|---|"]
    rows = [('adamw', tuned, 'AdamW + cosine (tuned)')]
    rows += [(m, lr, m) for (m, lr) in sorted(runs) if m != 'adamw']
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
    for i, m in enumerate(curve_methods(runs)):
        c, label = ('k', 'AdamW + cosine: peak lr') if m == 'adamw' else (f'C{i}', m)
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


# ---- the files ----------------------------------------------------------------------------------------------------
def write_corpus(out_dir, size, corpus, peers):
    """<corpus>/section.md and the three plots of a size's corpus from every finished run; returns their paths."""
    runs = collect(out_dir, corpus)
    tuned = tuned_lr(runs)
    section = os.path.join(out_dir, corpus, 'section.md')
    with open(section, 'w') as f:
        f.write(tables(size, corpus, runs, tuned, peers))
    return [section] + plots(out_dir, size, corpus, runs, tuned)


def write_summary(out_dir, size):
    """summary.md: every corpus this size has results for (corpora may run in separate invocations)."""
    md = [f"# Optimizer study, size {size} (experiments/study.py)", "",
          "Generated by experiments/study.py from train.py's JSON-lines logs; one JSON per run in the corpus "
          "folders. Wall-clock is on a 2-core CPU shared with other jobs: noisy; forwards per step are exact.", ""]
    for c in CORPORA:
        p = os.path.join(out_dir, c, 'section.md')
        if os.path.exists(p):
            md.append(open(p).read())
    path = os.path.join(out_dir, 'summary.md')
    with open(path, 'w') as f:
        f.write('\n'.join(md))
    return path
