"""
The study's grid (experiments/study.py): sizes, corpora, methods and learning rates, and train.py's command
line for one run of it. Every run is train.py on the CPU in float32 from a shipped config: AdamW's
(config/train_shakespeare_char.py, also the base of the peers), Muon's, MuonSLS's
(config/train_shakespeare_char_muonsls.py) or the line search's (config/train_shakespeare_char_alsals.py, its
ls_* settings as shipped), with the corpus, model size, run length, learning rate and seed overridden. Warmup
is 10% of the run for every method; AdamW and Muon decay by cosine (or, as method@lr_schedule=wsd,
warmup-stable-decay) to lr/10 at max_iters. Also read by experiments/landscape.py.
"""
import os

from peers import PEERS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADAMW_CONFIG = 'config/train_shakespeare_char.py'
LS_CONFIG = 'config/train_shakespeare_char_alsals.py'
MUON_CONFIG = 'config/train_shakespeare_char_muon.py'
MUONSLS_CONFIG = 'config/train_shakespeare_char_muonsls.py'
# Muon's runs: the AdamW part at lr / MUON_ADAMW_RATIO unless a variant sets muon_adamw_lr (the study's tuned
# pair, Muon 0.03 with AdamW 0.01, has this ratio; MuonSLS's config has it as muon_adamw_ratio = 1/3)
MUON_ADAMW_RATIO = 3
# the baselines study.py can bracket (--baselines): method@lr_schedule=wsd is the same with
# warmup-stable-decay; each one's grid starts from these lrs (adamw: the lr-free grid or --adamw-lrs) and is
# extended until its best is interior. The line search is judged against the better schedule of its
# direction's baseline (report.py)
BASELINE_LRS = {'muon': [1e-2, 3e-2, 1e-1]}
WSD = '@lr_schedule=wsd'
CORPORA = {'char': 'shakespeare_char', 'bible': 'bible_char'}
LRFREE_LRS = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
LS_METHODS = ('alsals', 'adamsls', 'sgdsls', 'plasls', 'muonsls')
# the ALSALS of the paper beside the shipped config: a search on every step, constant eta (no annealing)
PAPER = 'alsals@ls_skip_stable=0@ls_anneal_frac=0@ls_range_test=False'
HEADLINE = dict(n_layer=3, n_head=4, n_embd=128, batch_size=32, block_size=128, max_iters=1000,
                eval_interval=250, eval_iters=20, seeds=3, bracket_rounds=3)
SIZES = {
    'quick': dict(n_layer=1, n_head=2, n_embd=16, batch_size=4, block_size=16, max_iters=20, eval_interval=10,
                  eval_iters=2, seeds=2, bracket_rounds=1),
    'screen': dict(n_layer=2, n_head=4, n_embd=64, batch_size=16, block_size=64, max_iters=600,
                   eval_interval=150, eval_iters=20, seeds=3, bracket_rounds=3),
    'headline': HEADLINE,
    # the ladder's other rungs, each a change of the headline shape: 3x the run, a 4x larger batch (half the
    # steps), twice the width (8 heads, half the steps), twice the depth, and GPT-2's direction: 8x the
    # batch through 8 accumulated micro-batches (the trial re-evaluates the first, as the GPT-2 configs do;
    # the tokens of batch4x)
    'long': dict(HEADLINE, max_iters=3000, eval_interval=750, seeds=1, bracket_rounds=2),
    'batch4x': dict(HEADLINE, batch_size=128, max_iters=500, eval_interval=125, seeds=1, bracket_rounds=2),
    'wide': dict(HEADLINE, n_head=8, n_embd=256, max_iters=500, eval_interval=125, seeds=1, bracket_rounds=2),
    'deep': dict(HEADLINE, n_layer=6, seeds=1, bracket_rounds=2),
    'batch8x': dict(HEADLINE, accum=8, max_iters=300, eval_interval=75, seeds=1, bracket_rounds=2),
}
LADDER = ['headline', 'wide', 'batch4x', 'deep', 'batch8x', 'long'] # the shape ladder: a column per rung
QUICK_LRS = [1e-3, 1e-2]  # --quick: two points of the lr-free grid


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


def shipped_lr(method):
    """The first guess (learning_rate) a line-search method ships with: MuonSLS's config's, or ALSALS's."""
    return shipped(MUONSLS_CONFIG if method.split('@')[0] == 'muonsls' else LS_CONFIG)['learning_rate']


def train_args(size, corpus, method, lr, seed):
    """train.py's command line for one run (config file first, then overrides)."""
    s = SIZES[size]
    warmup = max(1, s['max_iters'] // 10)
    method, *overrides = method.split('@')  # a variant: alsals@ls_c=0.3@ls_b=100 (train.py overrides)
    base = (ADAMW_CONFIG if method == 'adamw' or method in PEERS else MUON_CONFIG if method == 'muon' else
            MUONSLS_CONFIG if method == 'muonsls' else LS_CONFIG)
    args = [base, f"--dataset={CORPORA[corpus]}", f"--seed={1337 + seed}",
            f"--n_layer={s['n_layer']}", f"--n_head={s['n_head']}", f"--n_embd={s['n_embd']}",
            f"--batch_size={s['batch_size']}", f"--block_size={s['block_size']}",
            f"--gradient_accumulation_steps={s.get('accum', 1)}",
            f"--max_iters={s['max_iters']}", f"--lr_decay_iters={s['max_iters']}", f"--warmup_iters={warmup}",
            f"--learning_rate={lr!r}", f"--min_lr={lr / 10!r}",
            f"--eval_interval={s['eval_interval']}", f"--eval_iters={s['eval_iters']}", "--log_interval=1",
            "--always_save_checkpoint=False", "--device=cpu", "--compile=False", "--dtype=float32"]
    if method in LS_METHODS:
        args.append(f"--optimizer={method}")
    if method == 'muon':  # MuonSLS's config sets its AdamW part by a ratio to learning_rate (the same 1/3)
        args.append(f"--muon_adamw_lr={lr / MUON_ADAMW_RATIO!r}")
    return args + [f"--{o}" for o in overrides]


def code_fingerprint():
    """sha1 of the code a run measures, so a result can be matched to (or found stale against) the code."""
    import hashlib
    h = hashlib.sha1()
    for f in ('train.py', 'trainer/defaults.py', 'trainer/config.py', 'trainer/setup.py', 'trainer/step.py',
              'alsals/alsals.py', 'alsals/_functional.py', 'alsals/variants.py', 'alsals/start.py',
              'alsals/muon.py',
              'model.py', 'data/loader.py', ADAMW_CONFIG, LS_CONFIG, MUON_CONFIG, MUONSLS_CONFIG):
        with open(os.path.join(ROOT, f), 'rb') as fh:
            h.update(fh.read())
    return h.hexdigest()[:12]
