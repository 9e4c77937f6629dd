"""The documentation is short, its links work, and every figure in it comes from a result file.

README.md (the project) and results/README.md (the study, the landscape, the cost) quote measured figures.
    These tests trace each one back to the files the scripts wrote, so that a figure typed wrong, or left
    behind when a result changed, fails here. The result files: the run JSONs
    results/study/<size>/<corpus>/*.json and the summary.md experiments/study.py generates from them,
    results/skip_stable/*.jsonl, results/landscape/*.json, results/range_test/*.json, results/bench.json,
    results/bench_gpu_h200.json, results/gpu_check.json and .md.
Series (a loss or a step size per iteration) are not figures: of a run only its scalars, its evals and its
largest, first searched and last step size count.

A figure is a number with 3 or more significant digits (or 2 and 3 decimals, 0.044), in a table row or in the
text of either file. Traced means:
- `mean ± std (n=k)` is the mean and std over seeds (np.std, as experiments/study.py `spread`) of the final
  val losses of one group of runs (same size, corpus, method and lr): mean, std and n together, of the corpus
  its table column names (char / bible) and of the size its section names (heading or links);
- `x (n=1)` is the final val loss of a group of one run;
- any other figure is, written with the same decimals, a value of the result files of its section: those
  the section links to (results/study/<size>/..., results/landscape/<name>.*, results/bench.json, ...), else
  those its heading names (study, landscape, cost, headline / screen). It is of the kind its column names
  (ms, fwd / step, MFU, η in use, ...), a percentage only where it is one, and one seed's value (an eval, a
  step size) only when quoted to 3 significant digits at most;
- or it is derived, within the rounding of its operands, from two figures traced as above: their difference,
  or their ratio where it is written as a % or a ×. In a table the operands are another figure of its cell
  (of its row if the cell has none) and a figure of that one's column (`(+43.5%)`: this mean against the
  column's best; `vs tuned`: this row's loss minus the tuned row's); in the text, two of its paragraph or
  bullet.
Not figures: numbers in code, links and arXiv ids, bounds and estimates (≤ 1.03, ~1.03, ≈ 8.7 ms), numbers
with fewer than 3 significant digits (1e-2, 0.62, 5.0 %, 0.002) except 2-digit ones with 3 decimals (0.044),
and in the text integers with thousands separators (1,000 iterations: a setting).

Also: README.md has at most 300 lines and links to results/README.md; every relative link of both files points
to an existing file and every #anchor to a heading of its target (GitHub's slugs); every cited
`test_x.py::test_name` exists; neither file, no config and no experiment cites an issue number."""
import glob
import json
import os
import re
import sys
import unicodedata
from functools import lru_cache

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, 'results')
DOCS = ['README.md', 'results/README.md']
MAX_README_LINES = 300
sys.path.insert(0, os.path.join(ROOT, 'experiments'))
from grid import SIZES  # noqa: E402  the study's sizes
# experiments/study.py: 10% of max_iters
WARMUP = {size: max(1, s['max_iters'] // 10) for size, s in SIZES.items()}

# a number: 1,234(.5) | 1.25 | 1.25e-3 | 3e-3, signed when a sign stands before it; not part of a word, a
# version (2.11.0) or a name (GPT-2, H200, cu130)
NUM = re.compile(r'(?<![\w.])([-+−]?)(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d+(?:e[-+]?\d+)?|\d+e[-+]?\d+)'
                 r'(?![\w.]*\d)(?![\w])')
PAIR = re.compile(r'(\d+\.\d+) ± (\d+\.\d+)(?: \(n=(\d+)\))?')
ONE = re.compile(r'(?<![±\d.] )(?<!± )(\d+\.\d+) \(n=1\)')


# ---- figures ----

class Fig:
    """A figure as written: its value, the half-unit of its last digit, whether it is a % or a ×."""

    def __init__(self, sign, tok, after='', pos=0):
        self.tok, self.signed, self.pos = tok, sign != '', pos
        t = tok.replace(',', '')
        self.value = float(t) * (-1 if sign in ('-', '−') else 1)
        mant, _, ex = t.partition('e')
        self.decimals = len(mant.partition('.')[2])
        self.sci = bool(ex)
        self.half = 0.5 * 10 ** (-self.decimals + (int(ex) if ex else 0))
        self.sig = len(mant.replace('.', '').lstrip('0'))
        # 1.28, 0.044; not 1.5e-3, 0.62, 0.002
        self.checked = self.sig >= 3 or (self.sig == 2 and self.decimals >= 3)
        self.pct = bool(re.match(r' ?%', after))
        self.times = bool(re.match(r' ?[×x]', after))

    def render(self, v):
        """v written the way this figure is (same notation and decimals), without sign."""
        v = abs(v)
        if self.sci:
            m, e = f"{v:.{self.decimals}e}".split('e')
            return f"{m}e{int(e)}"
        return f"{v:.{self.decimals}f}"

    def __repr__(self):
        return self.tok


def figures(s):
    """The figures of s; a bound (≤ 1.03, ~1.03) is a goal or an estimate, not a figure."""
    return [Fig(*m.groups(), s[m.end():m.end() + 2], m.start()) for m in NUM.finditer(s)
            if not re.search(r'[≤≥<>~≈] ?$', s[:m.start()])]


def blank(pattern, s):
    """s with pattern's matches blanked out, positions kept."""
    return pattern.sub(lambda m: ' ' * len(m.group(0)), s)


# ---- the result files ----

def _scalars(x, path=()):
    """(key path, value) of every number of a JSON document that is not part of a series (a list of
    numbers)."""
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return
    if isinstance(x, (int, float)):
        yield path, float(x)
    elif isinstance(x, dict):
        for k, v in x.items():
            yield from _scalars(v, path + (str(k),))
    elif isinstance(x, list):
        if x and all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in x):
            return
        for e in x:
            yield from _scalars(e, path)


def _text_numbers(path):
    """(value, kind) of every number of a generated text: kind 'pct' for a percentage."""
    with open(path) as fh:
        return [(f.value, 'pct' if f.pct else 'text') for f in figures(fh.read())]


@lru_cache(None)
def runs():
    """{(size, corpus, method, lr): [run records]} from every study JSON."""
    out = {}
    for f in sorted(glob.glob(os.path.join(RESULTS, 'study', '*', '*', '*.json'))):
        with open(f) as fh:
            r = json.load(fh)
        out.setdefault((r['size'], r['corpus'], r['method'], r['lr']), []).append(r)
    return out


@lru_cache(None)
def groups():
    """[(size, corpus, n, mean, std)] of the final val losses of each group, as experiments/study.py
    spread."""
    return [(k[0], k[1], len(rs), float(np.mean([r['final_val'] for r in rs])),
             float(np.std([r['final_val'] for r in rs]))) for k, rs in runs().items()]


COST_KINDS = {'step_time_s': 'ms', 'step_time_p10_s': 'ms', 'step_time_p90_s': 'ms', 'tokens_per_s': 'tok',
              'forwards_per_step': 'fwd', 'step_time_ratio_vs_adamw': 'ratio',
              'peak_mem_ratio_vs_adamw': 'mem'}
LANDSCAPE_KINDS = {'eta': 'eta', 'crossing': 'crossing', 'eta_best_batch': 'eta_best',
                   'eta_best_val': 'eta_best'}


@lru_cache(None)
def pools():
    """{source: [(value, kind)]}: the figures each result source gives. Sources: 'study/<size>' (its run JSONs
    and summary.md), 'skip_stable', 'landscape/<name>', 'range_test', 'probe', 'bench', 'bench_gpu_h200',
    'gpu_check'."""
    out = {}
    for (size, _, _, _), rs in runs().items():
        study = out.setdefault(f'study/{size}', [])
        study += [(float(np.mean([r['final_val'] for r in rs])), 'loss'),
                  (float(np.mean([r['fwd_per_step'] for r in rs])), 'fwd'),
                  (float(np.mean([r['ms_per_step'] for r in rs])), 'ms')]
        for r in rs:  # one seed's figures: 'run', quoted to 3 significant digits at most
            study += [(r['final_val'], 'run')] + [(v, 'run') for _, v in r['val']]
            if r['eta']:
                first_searched = r['eta'][min(WARMUP[size], len(r['eta']) - 1)]
                study += [(v, 'run') for v in (max(r['eta']), r['eta'][-1], first_searched)]
    for f in glob.glob(os.path.join(RESULTS, 'study', '*', 'summary.md')):
        out.setdefault('study/' + os.path.basename(os.path.dirname(f)), []).extend(_text_numbers(f))
    skip = {}
    for f in sorted(glob.glob(os.path.join(RESULTS, 'skip_stable', '*.jsonl'))):
        with open(f) as fh:
            evals = [r for r in map(json.loads, fh) if 'val_loss' in r]
        skip.setdefault(os.path.basename(f).split('_')[0], []).append(evals[-1]['val_loss'])
    out['skip_stable'] = ([(v, 'run') for vs in skip.values() for v in vs]
                          + [(float(np.mean(vs)), 'loss') for vs in skip.values()])

    for f in glob.glob(os.path.join(RESULTS, 'landscape', '*.json')):
        with open(f) as fh:
            d = json.load(fh)
        pool = out['landscape/' + os.path.basename(f)[:-5]] = []
        for ckpts in d['results'].values():
            for c in ckpts.values():
                for path, v in _scalars({k: v for k, v in c.items() if k != 'batches'}):
                    pool.append((v, LANDSCAPE_KINDS.get(path[0], 'text')))
                if c.get('G'):
                    pool.append((c['D'] / (c['eta'] * c['G']), 'dg'))

    pool = out['probe'] = []  # experiments/probe.py: its summary's mid-run readings of every probe run
    with open(os.path.join(RESULTS, 'probe', 'summary.json')) as fh:
        pool += [(v, 'text') for path, v in _scalars(json.load(fh))]

    pool = out['range_test'] = []  # experiments/range_test.py: its summary scalars (not the per-step series)
    for f in glob.glob(os.path.join(RESULTS, 'range_test', '*.json')):
        with open(f) as fh:
            d = json.load(fh)
        pool += [(v, 'text') for path, v in _scalars({k: v for k, v in d.items() if k not in ('lr', 'loss')})]

    for name in ('bench', 'bench_gpu_h200', 'gpu_check'):
        pool = out[name] = []
        with open(os.path.join(RESULTS, name + '.json')) as fh:
            for path, v in _scalars(json.load(fh)):
                key = path[-1] if path else ''
                kind = COST_KINDS.get(key, 'text')
                pool.append((1000 * v if kind == 'ms' else v, kind))
                if key == 'mfu':
                    pool.append((100 * v, 'pct'))
                if key.endswith('bytes'):
                    pool.append((v / 2 ** 20, 'text'))  # MiB
    out['gpu_check'] += _text_numbers(os.path.join(RESULTS, 'gpu_check.md'))
    return out


@lru_cache(None)
def rendered(source, kind, sci, decimals):
    """The values of a source of one kind (None: any but a percentage) written with these decimals."""
    probe = Fig('', ('1.' + '0' * decimals if decimals else '1') + ('e0' if sci else ''))
    return frozenset(probe.render(v) for v, k in pools()[source]
                     if k == kind or (kind is None and k not in ('pct', 'run')))


def source_of(link):
    """The result source a link (relative to the repository) points into, or None."""
    m = re.match(r'results/(study/\w+|landscape/\w+|skip_stable|range_test|probe|bench_gpu_h200|bench|'
                 r'gpu_check)\b', link)
    return m and m.group(1)


def sources(heading, links):
    """The result sources a section quotes: those it links to; else those its heading names (unknown: all)."""
    linked = {s for s in map(source_of, links) if s}
    if linked:
        return tuple(sorted(linked))
    h, every = heading.lower(), sorted(pools())
    size = 'headline' if 'headline' in h else 'screen' if 'screen' in h else ''
    if 'landscape' in h:
        return tuple(s for s in every if s.startswith(('landscape', 'study')))
    if any(w in h for w in ('cheap', 'cost', 'gpu', 'cpu', 'bench')):
        return ('bench', 'bench_gpu_h200', 'gpu_check')
    if size or any(w in h for w in ('study', 'anneal', 'run length', 'learning-rate-free', 'answer')):
        return tuple(s for s in every if s.startswith('study/' + size) or s == 'skip_stable')
    return tuple(every)


COLUMN_KINDS = [('memory', 'mem'), ('mfu', 'pct'), ('tokens/s', 'tok'), ('fwd', 'fwd'), ('forwards', 'fwd'),
                ('ms/step', 'ms'), ('ms / step', 'ms'), ('× adamw', 'ratio'), ('best η', 'eta_best'),
                ('η in use', 'eta'), ('r̄', 'crossing'), ('d/(ηg)', 'dg'), ('final val', 'loss')]


def column_kind(header):
    h = header.lower()
    return next((kind for word, kind in COLUMN_KINDS if word in h), None)


# ---- reading markdown ----

def _plain(s):
    """Text without code spans, link targets and comments: their numbers are settings and paths, not
    figures."""
    s = re.sub(r'`[^`]*`', '', s)
    s = re.sub(r'\]\([^)]*\)', ']', s)
    s = re.sub(r'arXiv:\S+', 'arXiv', s)
    return re.sub(r'<!--.*?-->', '', s)


def blocks(text, path):
    """The tables and paragraphs of a markdown file outside code blocks, each with the result sources of its
    section (heading to heading): ('table', sources, size, header cells, [(line, cells)]) and
    ('para', sources, size, line, text). A bullet is a paragraph of its own."""
    lines, out, i, fence = text.splitlines(), [], 0, False
    here = os.path.dirname(path)
    section = []  # (heading, [links]) per section, the current one last
    for ln in lines:
        if ln.startswith('```'):
            fence = not fence
        if not fence and (ln.startswith('#') or not section):
            section.append((ln if ln.startswith('#') else '', []))
        if not fence:
            section[-1][1].extend(os.path.relpath(os.path.normpath(os.path.join(here, l.partition('#')[0])),
                                                  ROOT)
                                  for l in re.findall(r'\]\(([^)\s]+)\)', ln) if not re.match(r'[a-z]+:|#',
                                                                                              l))
    k, fence = -1 if lines and lines[0].startswith('#') else 0, False

    def src():
        names = sources(*section[k])
        sizes = {s.split('/')[1] for s in names if s.startswith('study/')}
        return names, _size(section[k][0]) or (sizes.pop() if len(sizes) == 1 else None)

    while i < len(lines):
        ln = lines[i]
        if ln.startswith('```'):
            fence = not fence
            i += 1
            continue
        if fence or not ln.strip():
            i += 1
            continue
        if ln.startswith('#'):
            k += 1
            i += 1
            continue
        if ln.startswith('|') and i + 1 < len(lines) and re.fullmatch(r'\|[-| :]+\|', lines[i + 1].strip()):
            header = [c.strip() for c in ln.strip().strip('|').split('|')]
            rows, i = [], i + 2
            while i < len(lines) and lines[i].startswith('|'):
                rows.append((i + 1, [_plain(c).strip() for c in lines[i].strip().strip('|').split('|')]))
                i += 1
            out.append(('table', *src(), header, rows))
            continue
        start, buf = i, [ln]
        i += 1
        while (i < len(lines) and lines[i].strip() and not lines[i].startswith(('#', '|', '```'))
               and not re.match(r'\s*(- |\d+\. )', lines[i])):
            buf.append(lines[i])
            i += 1
        out.append(('para', *src(), start + 1, _plain(' '.join(buf))))
    return out


def _corpus(header):
    """The corpus a column header names: 'bible' (Bible, bible char), 'char' (char, Shakespeare char) or
    None."""
    h = header.lower()
    return 'bible' if 'bible' in h else 'char' if 'char' in h or 'shakespeare' in h else None


def _size(heading):
    h = heading.lower()
    return 'headline' if 'headline' in h else 'screen' if 'screen' in h else None


# ---- tracing ----

def pair_traced(m, corpus, size):
    mean, std, n = Fig('', m.group(1)), Fig('', m.group(2)), m.group(3)
    return any(mean.render(mu) == mean.tok and std.render(sd) == std.tok and (n is None or int(n) == k)
               and corpus in (None, c) and size in (None, s) for s, c, k, mu, sd in groups())


def one_traced(tok, corpus, size):
    f = Fig('', tok)
    return any(k == 1 and f.render(mu) == tok and corpus in (None, c) and size in (None, s)
               for s, c, k, mu, _ in groups())


def in_pools(fig, names, kind):
    """fig is a value of the named pools: of its column's kind, a percentage if it is one; one seed's value
    only if quoted to 3 significant digits at most (a 4-decimal loss is a mean over seeds)."""
    kinds = ('pct',) if fig.pct else (kind, 'run') if kind in (None, 'loss') and fig.sig <= 3 else (kind,)
    return any(fig.render(fig.value) in rendered(p, k, fig.sci, fig.decimals) for p in names for k in kinds)


def derived(fig, pairs):
    """fig is a - b of one of the (a, b) figure pairs within their rounding; if fig is a %, 100 (a / b - 1);
    if a ×, a / b."""
    lo, hi = fig.value - fig.half, fig.value + fig.half
    for a, b in pairs:
        corners = [(x, y) for x in (a.value - a.half, a.value + a.half) for y in (b.value - b.half,
                                                                                  b.value + b.half)]
        if fig.pct or fig.times:
            if not all(y > 0 for _, y in corners):
                continue
            vals = [100 * (x / y - 1) if fig.pct else x / y for x, y in corners]
        else:
            vals = [x - y for x, y in corners]
        for s in ((1,) if fig.signed or fig.pct or fig.times else (1, -1)):  # "0.081 behind": either order
            if min(s * v for v in vals) <= hi + 1e-12 and max(s * v for v in vals) >= lo - 1e-12:
                return True
    return False


def _direct(s, names, kind, corpus, size):
    """The figures of s traced directly, {position: Fig}, and (figure, why) for those that are not: a pair or
    an n=1 figure that no run gives, a figure in none of the sources (which may still be derived)."""
    direct, rest = {}, []
    for m in PAIR.finditer(s):
        if pair_traced(m, corpus, size):
            direct.update({f.pos: f for f in figures(s[:m.end()]) if f.pos >= m.start()})
        else:
            rest.append((None, m.group(0), 'mean ± std of no group of runs'))
    for m in ONE.finditer(s):
        if one_traced(m.group(1), corpus, size):
            direct.update({f.pos: f for f in figures(s[:m.end()]) if f.pos >= m.start()})
        else:
            rest.append((None, m.group(0), 'final val of no single run'))
    for f in figures(blank(ONE, blank(PAIR, s))):
        if f.checked and in_pools(f, names, kind):
            direct[f.pos] = f
        elif f.checked:
            rest.append((f, f.tok, f'in no result of kind {kind} in {", ".join(names)}'))
    return direct, rest


def untraced(text, path):
    """(line, figure, why) for every figure of a markdown file's text that no result file gives. A figure is
    traced directly (a value of its sources), or derived from two figures traced directly."""
    bad = []
    for b in blocks(text, os.path.join(ROOT, path)):
        if b[0] == 'table':
            _, names, size, header, rows = b
            direct, rest = {}, []  # {(line, column, position): Fig}; [(line, column, Fig or None, tok, why)]
            for ln, cells in rows:
                for j, c in enumerate(cells):
                    h = header[j] if j < len(header) else ''
                    d, r = _direct(c, names, column_kind(h), _corpus(h), size)
                    direct.update({(ln, j, pos): f for pos, f in d.items()})
                    rest += [(ln, j, f, tok, why) for f, tok, why in r]
            for ln, j, f, tok, why in rest:
                if f is not None:
                    # a: another figure of its cell, or of its row if its cell has none; b: of a's column
                    a_of = {k: a for k, a in direct.items() if k[:2] == (ln, j)} or \
                        {k: a for k, a in direct.items() if k[0] == ln}
                    pairs = [(a, b) for ka, a in a_of.items()
                             for kb, b in direct.items() if kb[1] == ka[1] and kb != ka]
                    if derived(f, pairs):
                        continue
                bad.append((ln, tok, 'table: ' + why))
        else:
            _, names, size, ln, s = b
            direct, rest = _direct(s, names, None, None, size)
            ops = list(direct.values())
            for f, tok, why in rest:
                if f is not None and (',' in tok or
                                      derived(f, [(a, b) for a in ops for b in ops if a is not b])):
                    continue  # 1,000 iterations, 4,096 tokens: settings
                bad.append((ln, tok, 'text: ' + why))
    return bad


@pytest.mark.parametrize('doc', DOCS)
def test_every_figure_comes_from_a_result_file(doc):
    with open(os.path.join(ROOT, doc)) as f:
        bad = untraced(f.read(), doc)
    assert not bad, f"{doc}: figures no result file gives:\n" + '\n'.join(
        f"  line {ln}: {f} ({why})" for ln, f, why in bad)


def test_a_wrong_figure_is_caught():
    """The check is not vacuous: one unit off in the last digit of a mean, a std, an n, a single run, a
    difference, a percentage, a cost figure or a landscape figure fails."""
    with open(os.path.join(ROOT, 'results', 'README.md')) as f:
        text = f.read()
    probes = [('1.6727 ± 0.0104 (n=3)', '1.6728 ± 0.0104 (n=3)'),
              ('1.6727 ± 0.0104 (n=3)', '1.6727 ± 0.0105 (n=3)'),
              ('1.6727 ± 0.0104 (n=3)', '1.6727 ± 0.0104 (n=2)'), ('1.7166 (n=1)', '1.7167 (n=1)'),
              ('| +0.170 |', '| +0.171 |'), ('(+43.5%)', '(+43.6%)'), ('| 129.8 |', '| 129.9 |'),
              ('| 1.63e-3 |', '| 1.64e-3 |')]
    before = set(untraced(text, 'results/README.md'))
    for old, new in probes:
        assert old in text, f"probe {old!r} is no longer in results/README.md: pick another"
        after = set(untraced(text.replace(old, new, 1), 'results/README.md'))
        assert after - before, f"{old!r} -> {new!r} was not caught"


# ---- length and links ----

def test_readme_is_short_and_links_the_study():
    with open(os.path.join(ROOT, 'README.md')) as f:
        text = f.read()
    n = len(text.splitlines())
    assert n <= MAX_README_LINES, \
        f"README.md has {n} lines (at most {MAX_README_LINES}): move details to results/README.md"
    assert re.search(r'\]\(results/README\.md[)#]', text), "README.md must link to results/README.md"


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation and symbols dropped, spaces to hyphens."""
    s = re.sub(r'`', '', heading.lstrip('#').strip().lower())
    s = ''.join(c for c in s if c in '-_ ' or unicodedata.category(c)[0] in 'LNM')
    return s.replace(' ', '-')


def anchors(path):
    with open(path) as f:
        text = re.sub(r'```.*?```', '', f.read(), flags=re.S)
    seen, out = {}, set()
    for h in re.findall(r'^#{1,6} .*$', text, re.M):
        s = slug(h)
        out.add(s if s not in seen else f"{s}-{seen[s]}")
        seen[s] = seen.get(s, 0) + 1
    return out


@pytest.mark.parametrize('doc', DOCS)
def test_links_point_to_existing_files_and_headings(doc):
    path = os.path.join(ROOT, doc)
    with open(path) as f:
        text = re.sub(r'```.*?```', '', f.read(), flags=re.S)
    bad = []
    for target in re.findall(r'\]\(([^)\s]+)\)', text):
        if re.match(r'[a-z]+:', target):
            continue  # http(s), mailto
        file, _, anchor = target.partition('#')
        dest = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
        if not os.path.exists(dest):
            bad.append(f"{target}: no file {os.path.relpath(dest, ROOT)}")
        elif anchor and dest.endswith('.md') and anchor not in anchors(dest):
            bad.append(f"{target}: no heading #{anchor} in {os.path.relpath(dest, ROOT)}")
    assert not bad, f"{doc}: broken links:\n  " + '\n  '.join(bad)


@pytest.mark.parametrize('doc', DOCS)
def test_cited_tests_exist(doc):
    """A guarantee names the test that checks it: `test_x.py::test_name` is a test function of
    tests/test_x.py."""
    with open(os.path.join(ROOT, doc)) as f:
        cited = re.findall(r'`(test_\w+\.py)::(test_\w+)', f.read())
    missing = []
    for file, name in cited:
        path = os.path.join(ROOT, 'tests', file)
        with open(path) if os.path.exists(path) else open(os.devnull) as fh:
            if not re.search(rf'^\s*def {name}\(', fh.read(), re.M):
                missing.append(f"{file}::{name}")
    assert not missing, f"{doc} cites tests that do not exist: {missing}"


# ---- named by content ----

ISSUE = re.compile(r'\bissues?[\s-]*#?\d+', re.I)  # issue(s), spaces, a hyphen or a line break, '#', a number


SEED_CLAIM = re.compile(r'\b(one|two|three|[123]) seeds?\b', re.I)
GAP = re.compile(r'([+−-]\d+(?:\.\d+)?) ?%')
WORDS = {'one': 1, 'two': 2, 'three': 3}


def tuned_adamw():
    """{(size, corpus): mean}: each rung's tuned AdamW, the AdamW group (cosine or WSD) with the most seeds,
    the lowest mean among those, as experiments/report.py picks the best lr and then runs its seeds."""
    best = {}
    for (size, corpus, method, _), rs in runs().items():
        if method.split('@')[0] == 'adamw':
            key = (-len(rs), float(np.mean([r['final_val'] for r in rs])))
            best[(size, corpus)] = min(best.get((size, corpus), key), key)
    return {k: v[1] for k, v in best.items()}


def seed_count_mismatches(text, path):
    """(line, gap, n) for every gap to tuned AdamW (+1.1 %) in a paragraph that says its figures are of n
    seeds ("one seed each", "3 seeds") that no group of n runs at any rung has against that rung's tuned
    AdamW, within the gap's rounding."""
    tuned, bad = tuned_adamw(), []
    for b in blocks(text, os.path.join(ROOT, path)):
        if b[0] != 'para':
            continue
        claims = {WORDS.get(m.group(1).lower()) or int(m.group(1)) for m in SEED_CLAIM.finditer(b[4])}
        if len(claims) != 1:
            continue
        n = claims.pop()
        for m in GAP.finditer(b[4]):
            tok = m.group(1).replace('−', '-')
            half = 0.5 * 10 ** -len(tok.partition('.')[2])
            if not any(k == n and (s, c) in tuned and abs(100 * (mu / tuned[(s, c)] - 1) - float(tok)) <= half
                       for s, c, k, mu, _ in groups()):
                bad.append((b[3], m.group(0), n))
    return bad


@pytest.mark.parametrize('doc', DOCS)
def test_seed_counts_match_the_runs(doc):
    """A paragraph that gives gaps as of one seed (or 3) quotes gaps that groups of that many runs have: the
    answer must not give one-seed gaps beside a table of 3-seed means."""
    with open(os.path.join(ROOT, doc)) as f:
        bad = seed_count_mismatches(f.read(), doc)
    assert not bad, f"{doc}: gaps no group of the stated seed count has:\n" + '\n'.join(
        f"  line {ln}: {g} (n={n})" for ln, g, n in bad)


def test_no_issue_numbers():
    """The docs, configs, experiments and code name the question or the result, not the issue that asked for
    it: issues are not part of the product."""
    files = DOCS + sorted(os.path.relpath(p, ROOT)
                          for d in ('config', 'experiments', 'alsals', 'trainer', 'scripts', '.')
                          for p in glob.glob(os.path.join(ROOT, d, '*.py')))
    bad = []
    for rel in files:
        with open(os.path.join(ROOT, rel)) as f:
            text = f.read()
        bad += [f"{rel}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)!r}"
                for m in ISSUE.finditer(text)]
    assert not bad, "issue numbers (name the question or the result instead):\n  " + '\n  '.join(bad)
