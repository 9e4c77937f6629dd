"""
The study's tables and plots (experiments/study.py): from the finished runs' JSON files of a size and corpus,
<corpus>/section.md (the tables) and <corpus>_lrfree.png, <corpus>_val.png, <corpus>_eta.png; then summary.md,
every corpus's section of that size; and ladder.md, the shape ladder (grid.LADDER), one column per rung. Every
finished run is read (collect), so a study run in several invocations (more seeds, more lrs) adds up.

Baselines: every AdamW run (method adamw or adamw@..., e.g. adamw@lr_schedule=wsd) and every Muon run. The
    tuned AdamW is the best of them all (the better schedule), likewise the tuned Muon; a method on Muon's
    direction (muon*, muonsls*) is judged against the tuned Muon, every other against the tuned AdamW.
"""
import glob
import json
import math
import os

import numpy as np

from grid import CORPORA, LADDER, LS_CONFIG, PAPER, SIZES, code_fingerprint, shipped
from peers import PEER_LR, PEERS


# ---- reading the results -----------------------------------------------------------------------------------
def collect(out_dir, corpus):
    """Every finished run of this size and corpus, {(method, lr): [records by seed]}: the tables and plots
    show them all, so a study run in several invocations (more seeds, more lrs) adds up."""
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


def family(method):
    return method.split('@')[0]


def is_baseline(method):
    return family(method) in ('adamw', 'muon')


def judge(method):
    """The baseline family a method is judged against: Muon's for a method on Muon's direction, else AdamW's."""
    return 'muon' if family(method) in ('muon', 'muonsls') else 'adamw'


def reference(runs, fam):
    """The tuned baseline of a family ('adamw', 'muon'): the (method, lr) with the best mean final val among
    every run of that family (any schedule), or None."""
    keys = [k for k in runs if family(k[0]) == fam]
    return min(keys, key=lambda k: (mean_final(runs[k]), k)) if keys else None


def label(key):
    """'AdamW + cosine', 'Muon + WSD', or the method's name for another variant."""
    m = key[0]
    names = {'adamw': 'AdamW + cosine', 'adamw@lr_schedule=wsd': 'AdamW + WSD', 'muon': 'Muon + cosine',
             'muon@lr_schedule=wsd': 'Muon + WSD'}
    return names.get(m, m)


def spread(recs):
    v = [r['final_val'] for r in recs]
    if not all(math.isfinite(x) for x in v):
        return f"diverged ({sum(not math.isfinite(x) for x in v)}/{len(v)})"
    return f"{np.mean(v):.4f} ± {np.std(v):.4f} (n={len(v)})" if len(v) > 1 else f"{v[0]:.4f} (n=1)"


# ---- tables and plots --------------------------------------------------------------------------------------
def curve_methods(runs):
    """AdamW, then the shipped ALSALS, then every other method run at two or more lrs (a curve to read)."""
    count = {}
    for (m, _) in runs:
        count[m] = count.get(m, 0) + 1
    rest = sorted(m for m, n in count.items() if n >= 2 and m not in ('adamw', 'alsals'))
    return [m for m in ('adamw', 'alsals') if m in count] + rest


def edge_notes(runs):
    """Each baseline whose best grid point is at an edge of its grid (not bracketed)."""
    notes = []
    for m in sorted({m for (m, _) in runs if is_baseline(m)}):
        lrs = sorted(lr for (mm, lr) in runs if mm == m)
        best = tuned_lr(runs, m)
        if not lrs[0] < best < lrs[-1]:
            notes.append(f"`{m}` ({best:g})")
    return (" **Best lr at the edge of the grid run so far (not bracketed): " + ", ".join(notes) + ".**"
            if notes else '')


def tables(size, corpus, runs, peers):
    s = SIZES[size]
    refs = {fam: reference(runs, fam) for fam in ('adamw', 'muon')}
    ref_of = lambda m: refs[judge(m)] or refs['adamw'] or refs['muon']  # noqa: E731
    out = [f"### {corpus} ({CORPORA[corpus]}), {size}: {s['n_layer']} layers x {s['n_embd']} dims, batch "
           f"{s['batch_size']}x{s['block_size']}, {s['max_iters']} iterations, warmup {max(1, s['max_iters'] // 10)}; "
           f"final val loss over {s['eval_iters']} fixed val batches, mean ± std over n seeds.{edge_notes(runs)}", ""]
    # the one number a user picks (a learning rate or a first guess): every method run at two or more of them
    cols = curve_methods(runs)
    lrs = sorted({lr for (m, lr) in runs if m in cols})
    if 'alsals' in cols or len(cols) > 1:
        best = {m: min(mean_final(runs[(mm, lr)]) for (mm, lr) in runs if mm == m) for m in cols}
        out += ["Learning-rate-free test: final val loss against the one number a user picks (AdamW, Muon: "
                "the peak lr; the line searches: `learning_rate`, their first guess or warmup target). "
                f"`alsals` is the shipped config; the paper's form is `{PAPER}` (a search every step, "
                "constant eta). In brackets: % above that method's own best.", "",
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
            ref = ref_of(m)
            out.append(f"- `{m}`: {len(within)} of {len(mine)} within 2% of its own best, whose gap to the "
                       f"tuned {label(ref)} ({ref[1]:g}) is "
                       f"{100 * (best[m] / mean_final(runs[ref]) - 1):+.1f}%.")
        out.append("")
    base = runs[refs['adamw'] or refs['muon']]
    b_ms = np.mean([r['ms_per_step'] for r in base])
    b_fwd = np.mean([r['fwd_per_step'] for r in base])
    versus = [fam for fam in ('adamw', 'muon') if refs[fam]]
    names = {'adamw': 'AdamW', 'muon': 'Muon'}
    out += ["Every method against the tuned baselines (the best grid point of either schedule; each baseline "
            "schedule's own best point is listed). Cost: median wall-clock per training step (no eval; shared CPU, "
            "noisy) and forwards per step (exact), each also as a ratio to the tuned "
            f"{names[versus[0]]}'s.", "",
            "| method | lr / warmup target | final val | " + " | ".join(f"vs tuned {names[f]}" for f in versus) +
            " | ms / step | fwd / step | eta or lr at the end |",
            "|---" * (6 + len(versus)) + "|"]
    baselines = sorted({m for (m, _) in runs if is_baseline(m)}, key=lambda m: (family(m), m))
    rows = [((m, tuned_lr(runs, m)), f"{label((m, 0))} (tuned)") for m in baselines]
    rows += [((m, lr), m) for (m, lr) in sorted(runs) if not is_baseline(m)]
    for (m, lr), name in rows:
        rs = runs[(m, lr)]
        ms, fwd = np.mean([r['ms_per_step'] for r in rs]), np.mean([r['fwd_per_step'] for r in rs])
        eta = np.mean([r['eta'][-1] for r in rs if r['eta']]) if all(r['eta'] for r in rs) else float('nan')
        gaps = " | ".join(f"{mean_final(rs) - mean_final(runs[refs[f]]):+.4f}" for f in versus)
        out.append(f"| {name} | {PEER_LR.get(m, f'{lr:g}')} | {spread(rs)} | {gaps} | {ms:.1f} "
                   f"({ms / b_ms:.2f}x) | {fwd:.2f} ({fwd / b_fwd:.2f}x) | {eta:.2e} |")
    for p, err in peers.items():
        if err is not None:
            out.append(f"| {p} | | not run: {err} | " + "| " * len(versus) + "| | |")
    codes = sorted({r['code'] for rs in runs.values() for r in rs})
    out += ["", f"Code versions among these runs: {len(codes)} (`code` in each JSON: sha1 of train.py, "
                "alsals.py, "
            f"model.py and the configs; the current one is {code_fingerprint()})."]
    return '\n'.join(out) + '\n'


def plots(out_dir, size, corpus, runs, ref):
    """ref: the tuned baseline's (method, lr), drawn in black."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    pngs = []
    # final val against the one number a user picks
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for i, m in enumerate(curve_methods(runs)):
        c, name = ('k', 'AdamW + cosine: peak lr') if m == 'adamw' else (f'C{i}', m)
        lrs = sorted(lr for (mm, lr) in runs if mm == m)
        if not lrs:
            continue
        v = [[r['final_val'] for r in runs[(m, lr)]] for lr in lrs]
        mu = np.array([np.mean(x) for x in v])
        lo, hi = mu - np.array([np.min(x) for x in v]), np.array([np.max(x) for x in v]) - mu
        ax.errorbar(lrs, mu, yerr=[lo, hi], color=c, marker='o', capsize=3, label=name)
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
    show = [ref] + [(m, lr) for (m, lr) in sorted(runs) if lr == ls_lr and m in ('alsals', PAPER)
                                 or m.split('@')[0] in PEERS]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (m, lr) in enumerate(show):
        v = np.array(runs[(m, lr)][0]['val'])
        if len(v):
            ax.plot(v[:, 0], v[:, 1], marker='.', color='k' if i == 0 else f'C{i}', label=f'{m} ({lr:g})')
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
    ax.plot(runs[ref][0]['eta'], 'k--', label=f'tuned {label(ref)} lr (peak {ref[1]:g})')
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


# ---- the files ---------------------------------------------------------------------------------------------
def write_corpus(out_dir, size, corpus, peers):
    """<corpus>/section.md and the three plots of a size's corpus from every finished run; returns their paths."""
    runs = collect(out_dir, corpus)
    section = os.path.join(out_dir, corpus, 'section.md')
    with open(section, 'w') as f:
        f.write(tables(size, corpus, runs, peers))
    return [section] + plots(out_dir, size, corpus, runs, reference(runs, 'adamw') or reference(runs, 'muon'))


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


def ladder_cell(recs, ref_recs, is_ref):
    """One rung's cell: mean final val, the gap to the tuned baseline (or, for the baseline, its schedule and
    lr is in the row's own key), seeds, and forwards per step."""
    fwd = np.mean([r['fwd_per_step'] for r in recs])
    v = mean_final(recs)
    n = len(recs)
    if not math.isfinite(v):
        return f"{spread(recs)} · {fwd:.2f} fwd"
    gap = '' if is_ref else f" ({100 * (v / mean_final(ref_recs) - 1):+.1f}%)"
    return f"{v:.4f}{gap} n={n} · {fwd:.2f} fwd"


def write_ladder(root, sizes=LADDER):
    """ladder.md beside the sizes' folders: per corpus, one row per method (the tuned AdamW and Muon, each the
    better schedule, then every other method at each lr it ran), one column per rung: mean final val, in
    brackets the gap to the tuned baseline it is judged against at that rung, seeds, and forwards per step."""
    md = ["# The shape ladder (experiments/study.py)", "",
          "Final val loss, mean over n seeds; in brackets the gap to the tuned baseline at the same rung (AdamW's "
          "for ALSALS and the other methods, Muon's for a method on Muon's direction), each the better of cosine "
          "and WSD (the tuned row names the schedule and lr); forwards per step (trial forwards counted).", ""]
    for c in CORPORA:
        per = {z: collect(os.path.join(root, z), c) for z in sizes}
        per = {z: r for z, r in per.items() if r}
        if not per:
            continue
        rungs = list(per)
        shape = lambda z: (f"{SIZES[z]['n_layer']}x{SIZES[z]['n_embd']}, "  # noqa: E731
                           f"{SIZES[z]['batch_size']}x{SIZES[z]['block_size']}, {SIZES[z]['max_iters']} it")
        md += [f"## {c} ({CORPORA[c]})", "",
               "| method | " + " | ".join(f"{z} ({shape(z)})" for z in rungs) + " |",
               "|---" * (len(rungs) + 1) + "|"]
        refs = {z: {fam: reference(runs, fam) for fam in ('adamw', 'muon')} for z, runs in per.items()}
        for fam, name in (('adamw', 'tuned AdamW'), ('muon', 'tuned Muon')):
            if any(refs[z][fam] for z in rungs):
                cells = [f"{ladder_cell(per[z][refs[z][fam]], None, True)} ({label(refs[z][fam])} "
                         f"{refs[z][fam][1]:g})" if refs[z][fam] else '' for z in rungs]
                md.append(f"| {name} | " + " | ".join(cells) + " |")
        keys = sorted({k for runs in per.values() for k in runs if not is_baseline(k[0])})
        for m, lr in keys:
            cells = []
            for z in rungs:
                ref = refs[z][judge(m)] or refs[z]['adamw']
                cells.append(ladder_cell(per[z][(m, lr)], per[z][ref], False) if (m,
                                                                                  lr) in per[z] and ref else
                             ladder_cell(per[z][(m, lr)], None, True) if (m, lr) in per[z] else '')
            md.append(f"| `{m}` {PEER_LR.get(m, f'{lr:g}')} | " + " | ".join(cells) + " |")
        md.append("")
    path = os.path.join(root, 'ladder.md')
    with open(path, 'w') as f:
        f.write('\n'.join(md))
    return path
