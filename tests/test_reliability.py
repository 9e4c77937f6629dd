"""Reliability: atomic checkpoints, corrupt checkpoints, bad input (one-line errors, checkpoint untouched),
non-finite losses."""
import os
import pickle
import shutil
import subprocess
import sys

import pytest
import torch

from trainer import checkpoint
import trainutil as tu
from data.loader import load_meta


# ----------------------------------------------------------------------------- atomic save

def test_atomic_save_failure_keeps_previous(tmp_path, monkeypatch):
    path = str(tmp_path / 'ckpt.pt')
    checkpoint.save({'w': torch.arange(10.0), 'iter_num': 1}, path)
    before = tu.file_bytes(path)

    def broken_save(obj, f, *a, **kw):  # e.g. a full disk: some bytes written, then an error
        f.write(b'PK\x03\x04 partial checkpoint bytes')
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(checkpoint.torch, 'save', broken_save)
    with pytest.raises(OSError):
        checkpoint.save({'w': torch.zeros(10), 'iter_num': 2}, path)
    monkeypatch.undo()
    assert tu.file_bytes(path) == before
    assert os.listdir(tmp_path) == ['ckpt.pt']  # no temp file left
    ck = checkpoint.load(path)
    assert ck['iter_num'] == 1 and torch.equal(ck['w'], torch.arange(10.0))


def test_kill_during_save_keeps_previous(tmp_path):
    # a real kill -9 in the middle of writing: the previous checkpoint stays intact and loadable
    path = str(tmp_path / 'ckpt.pt')
    code = f"""
import os, signal, torch
from trainer import checkpoint
checkpoint.save({{'w': torch.arange(10.0), 'iter_num': 1}}, {path!r})
def dying_save(obj, f, *a, **kw):
    f.write(b'partial'); f.flush(); os.kill(os.getpid(), signal.SIGKILL)
torch.save = dying_save
checkpoint.save({{'w': torch.zeros(10), 'iter_num': 2}}, {path!r})
"""
    r = subprocess.run([sys.executable, '-c', code], cwd=tu.ROOT, env=tu.env_of(), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == -9, r.stderr
    ck = checkpoint.load(path)
    assert ck['iter_num'] == 1 and torch.equal(ck['w'], torch.arange(10.0))
    assert len(os.listdir(tmp_path)) == 2  # ckpt.pt and the killed save's temp file
    checkpoint.save({'w': torch.ones(10), 'iter_num': 3}, path)  # the next save removes the stale temp file
    assert os.listdir(tmp_path) == ['ckpt.pt'] and checkpoint.load(path)['iter_num'] == 3


def test_save_roundtrip_and_prefix(tmp_path):
    path = str(tmp_path / 'sub' / 'ckpt.pt')  # the directory is created
    sd = {'_orig_mod.a': torch.ones(2), 'b': torch.zeros(1)}
    checkpoint.save({'model': sd, 'config': {'x': 1}}, path)
    ck = checkpoint.load(path)
    assert set(checkpoint.strip_compile_prefix(ck['model'])) == {'a', 'b'}


def test_rng_state_roundtrip():
    state = checkpoint.get_rng_state()
    a = torch.rand(5)
    checkpoint.set_rng_state(state)
    assert torch.equal(a, torch.rand(5))


# ----------------------------------------------------------------------------- corrupt checkpoints

def test_load_truncated_names_file(tmp_path):
    path = str(tmp_path / 'ckpt.pt')
    checkpoint.save({'w': torch.randn(1000)}, path)
    data = tu.file_bytes(path)
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])
    with pytest.raises(SystemExit) as e:
        checkpoint.load(path)
    assert isinstance(e.value.code, str) and path in e.value.code and '\n' not in e.value.code


def test_load_missing_names_file(tmp_path):
    path = str(tmp_path / 'ckpt.pt')
    with pytest.raises(SystemExit) as e:
        checkpoint.load(path)
    assert path in e.value.code


def test_load_refuses_pickled_code(tmp_path):
    # weights_only: a checkpoint that would execute code on load is refused, not run
    path = str(tmp_path / 'ckpt.pt')
    torch.save({'obj': subprocess.Popen}, path)  # not a plain value: loading it needs arbitrary unpickling
    with pytest.raises(SystemExit) as e:
        checkpoint.load(path)
    assert path in e.value.code


def truncate(path):
    data = tu.file_bytes(path)
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 3])
    return tu.file_bytes(path)


def test_corrupt_checkpoint_train_and_sample(trained_dir, tiny_dataset, tmp_path):
    """train.py --init_from=resume and sample.py on a truncated ckpt.pt: one-line error, the file left as it
    was."""
    outs = []
    for name in ('train', 'sample'):
        out = tmp_path / name
        out.mkdir()
        shutil.copy2(os.path.join(trained_dir, 'ckpt.pt'), out / 'ckpt.pt')
        outs.append((str(out), str(out / 'ckpt.pt'), truncate(str(out / 'ckpt.pt'))))
    (out_t, ckpt_t, bytes_t), (out_s, ckpt_s, bytes_s) = outs
    rt, rs = tu.parallel(
        lambda: tu.train(dataset=tiny_dataset, out_dir=out_t, init_from='resume'),
        lambda: tu.run_script('sample.py', f'--out_dir={out_s}', '--device=cpu', '--dtype=float32'))
    tu.check_one_line_error(rt, ckpt_t, 'corrupt')
    tu.check_one_line_error(rs, ckpt_s, 'corrupt')
    assert tu.file_bytes(ckpt_t) == bytes_t and tu.file_bytes(ckpt_s) == bytes_s  # left as is, for inspection


# ----------------------------------------------------------------------------- bad input

def empty_dataset(tmp_path):
    d = tmp_path / 'empty_data'
    d.mkdir()
    (d / 'train.bin').write_bytes(b'')
    (d / 'val.bin').write_bytes(b'')
    return str(d)


def small_vocab_dataset(tmp_path):
    """A char dataset whose meta.pkl claims fewer symbols than its token ids use."""
    d = tu.write_char_dataset(str(tmp_path / 'small_vocab'), n_chars=5000)
    with open(os.path.join(d, 'meta.pkl'), 'wb') as f:
        pickle.dump({'vocab_size': 10}, f)
    return d


class RunsCode:
    """Unpickling this calls os.makedirs(path): a stand-in for any code a meta.pkl from elsewhere could
    run."""
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.makedirs, (self.path,)


def code_meta_dataset(tmp_path):
    d = tu.write_char_dataset(str(tmp_path / 'code_meta'), n_chars=5000)
    meta = tu.vocab_of(d)
    with open(os.path.join(d, 'meta.pkl'), 'wb') as f:
        pickle.dump({**meta, 'payload': RunsCode(str(tmp_path / 'code_ran'))}, f)
    return d


def code_meta_checkpoint(tmp_path):
    """out_dir whose checkpoint names a dataset with a code-running meta.pkl (sample.py reads it)."""
    out = tmp_path / 'out'
    ck = checkpoint.load(str(out / 'ckpt.pt'))
    ck['config']['dataset'] = code_meta_dataset(tmp_path)
    checkpoint.save(ck, str(out / 'ckpt.pt'))
    return str(out)


def write(path, text):
    path.write_text(text)
    return str(path)


def train_case(*args, **overrides):
    """A train.py case: TINY + dataset + out_dir (holding a copy of a good ckpt.pt) + overrides. Arguments and
    override values may be functions of the case's tmp dir (a pathlib.Path)."""
    def make(tmp, ds, out):
        at = lambda v: v(tmp) if callable(v) else v
        cfg = {'dataset': ds, 'out_dir': out, 'max_iters': 4, 'eval_interval': 2, **overrides}
        return 'train.py', [*map(at, args), *tu.args_of(**{k: at(v) for k, v in cfg.items()})]
    return make


def sample_case(*args):
    return lambda tmp, ds, out: ('sample.py', [a(tmp) if callable(a) else a for a in args])


# name: (case, needles that the one error line must contain)
BAD_INPUTS = {
    'unknown_key': (train_case(nonexistent_key=1), ['nonexistent_key']),
    'wrong_type': (train_case(batch_size='abc'), ['batch_size']),
    'missing_config_file': (train_case('/nonexistent/dir/my_config.py'), ['my_config.py']),
    'unknown_key_in_config_file': (train_case(lambda tmp: write(tmp / 'c.py', 'bath_size = 4\n')),
                                   ['bath_size']),
    'missing_data_bin': (train_case(dataset=lambda tmp: str(tmp / 'no_such_dataset')), ['train.bin']),
    'empty_data_bin': (train_case(dataset=empty_dataset), ['train.bin', '0 tokens']),
    'block_size_larger_than_data': (train_case(block_size=1_000_000), ['block_size']),
    'resume_without_checkpoint': (train_case(out_dir=lambda tmp: str(tmp / 'none'), init_from='resume'),
                                  ['ckpt.pt']),
    'sample_without_checkpoint': (sample_case(lambda tmp: f'--out_dir={tmp / "none"}', '--device=cpu',
                                              '--dtype=float32'), ['ckpt.pt']),
    'batch_size_0': (train_case(batch_size=0), ['batch_size']),
    'learning_rate_negative': (train_case(learning_rate=-1), ['learning_rate']),
    'ls_eta_max_0': (train_case(optimizer='alsals', ls_eta_max=0), ['ls_eta_max']),
    'unknown_optimizer': (train_case(optimizer='adamx'), ['adamx']),
    'resume_with_other_optimizer': (train_case(init_from='resume', optimizer='alsals'), ['optimizer',
                                                                                         'adamw']),
    # more settings that would otherwise fail deep inside torch, or train with nonsense
    'bad_dtype': (train_case(dtype='float8'), ['dtype']),
    'float16_line_search': (train_case(optimizer='alsals', dtype='float16'), ['float16']),
    'dropout_out_of_range': (train_case(dropout=1.5), ['dropout']),
    'n_embd_not_divisible': (train_case(n_embd=33), ['n_embd', 'n_head']),
    'n_components_0': (train_case(optimizer='plasls', ls_n_components=0), ['ls_n_components']),
    'anneal_frac_above_1': (train_case(optimizer='alsals', ls_anneal_frac=1.5), ['ls_anneal_frac']),
    'anneal_to_above_1': (train_case(optimizer='alsals', ls_anneal_to=2.0), ['ls_anneal_to']),
    'unknown_lr_schedule': (train_case(lr_schedule='linear'), ['lr_schedule', 'wsd']),
    'decay_frac_0': (train_case(lr_schedule='wsd', decay_frac=0.0), ['decay_frac']),
    'wsd_with_line_search': (train_case(optimizer='alsals', lr_schedule='wsd'), ['lr_schedule',
                                                                                 'ls_anneal_frac']),
    'muon_adamw_ratio_0': (train_case(optimizer='muon', muon_adamw_ratio=0.0), ['muon_adamw_ratio']),
    'ls_setting_the_variant_lacks': (train_case(optimizer='alsals', ls_separate_eta=True), ['separate_eta']),
    'range_test_without_line_search': (train_case(optimizer='muon', ls_range_test=True), ['ls_range_test',
                                                                                          'muon']),
    'fsdp_without_torchrun': (train_case(optimizer='alsals', fsdp=True), ['fsdp=True', 'torchrun']),
    # the finite-difference slope under bfloat16 autocast measures rounding noise
    'ls_fa_fd_under_bfloat16': (train_case(optimizer='alsals', ls_fa='fd', dtype='bfloat16'), ["ls_fa='fd'",
                                                                                               'float32']),
    # a token id the embedding cannot index: found when the data is opened, not as a traceback in the
    # embedding
    'token_id_at_or_above_vocab': (train_case(dataset=small_vocab_dataset), ['train.bin', 'token id',
                                                                             'vocab_size']),
    # meta.pkl is read with a plain-values unpickler: one that would run code is refused (and nothing runs)
    'meta_pkl_runs_code': (train_case(dataset=code_meta_dataset), ['meta.pkl', 'plain']),
    'sample_meta_pkl_runs_code': (sample_case(lambda tmp: f'--out_dir={code_meta_checkpoint(tmp)}',
                                              '--device=cpu',
                                              '--dtype=float32'), ['meta.pkl', 'plain']),
}
if not torch.cuda.is_available():
    BAD_INPUTS['cuda_without_cuda'] = (train_case(device='cuda', dtype='bfloat16'), ['CUDA'])


# the cases run as a user runs them, in their own process (two at a time): the configurator's own errors,
# every sample.py case, a resume, code in meta.pkl; the others are train.py's setup in this process
# (trainer.setup.from_args, what train.py runs first), whose SystemExit is the one line train.py would print
IN_PROCESS_NOT = {'unknown_key', 'missing_config_file', 'resume_without_checkpoint',
                  'sample_without_checkpoint', 'meta_pkl_runs_code', 'sample_meta_pkl_runs_code',
                  'cuda_without_cuda'}


def setup_in_process(args):
    """train.py's setup for args in this process, as a CompletedProcess: its SystemExit's one line on
    stderr."""
    from trainer.setup import from_args
    try:
        from_args(args, quiet=True, cwd=tu.ROOT)
    except SystemExit as e:
        return subprocess.CompletedProcess(args, 1, '', f"{e.code}\n")
    return subprocess.CompletedProcess(args, 0, '', '')


@pytest.fixture(scope='module')
def bad_input_runs(tmp_path_factory, trained_dir, tiny_dataset):
    """Every bad-input case, each in its own out_dir holding a copy of a good checkpoint.
    Returns {case: (out_dir, checkpoint bytes before, CompletedProcess)}."""
    jobs = {}
    for case, (spec, _) in BAD_INPUTS.items():
        tmp = tmp_path_factory.mktemp(case)
        out = tmp / 'out'
        out.mkdir()
        shutil.copy2(os.path.join(trained_dir, 'ckpt.pt'), out / 'ckpt.pt')
        script, args = spec(tmp, tiny_dataset, str(out))
        jobs[case] = (str(out), tu.file_bytes(out / 'ckpt.pt'), script, args)
    apart = [c for c in jobs if c in IN_PROCESS_NOT or jobs[c][2] != 'train.py']
    results = dict(zip(apart, tu.parallel(*[lambda j=jobs[c]: tu.run_script(j[2], *j[3]) for c in apart])))
    results.update({c: setup_in_process(j[3]) for c, j in jobs.items() if c not in results})
    return {case: (j[0], j[1], results[case]) for case, j in jobs.items()}


@pytest.mark.parametrize('case', list(BAD_INPUTS))
def test_bad_input_one_line_error(case, bad_input_runs):
    out, before, r = bad_input_runs[case]
    tu.check_one_line_error(r, *BAD_INPUTS[case][1])
    assert tu.file_bytes(os.path.join(out, 'ckpt.pt')) == before  # the existing checkpoint is untouched
    assert os.listdir(out) == ['ckpt.pt']


@pytest.mark.parametrize('case', ['meta_pkl_runs_code', 'sample_meta_pkl_runs_code'])
def test_meta_pkl_code_never_runs(case, bad_input_runs):
    out, _, _ = bad_input_runs[case]
    assert not os.path.exists(os.path.join(os.path.dirname(out), 'code_ran'))


def test_load_meta_plain_values(tmp_path):
    path = tmp_path / 'meta.pkl'
    meta = {'vocab_size': 3, 'stoi': {'a': 0, 'b': 1, '\n': 2}, 'itos': {0: 'a', 1: 'b', 2: '\n'},
            'extra': [1.5, 'x']}
    path.write_bytes(pickle.dumps(meta))
    assert load_meta(str(path)) == meta  # nanoGPT's format reads back unchanged
    path.write_bytes(pickle.dumps({'vocab_size': 3, 'payload': RunsCode(str(tmp_path / 'ran'))}))
    with pytest.raises(SystemExit) as e:
        load_meta(str(path))
    assert str(path) in e.value.code and '\n' not in e.value.code
    assert not os.path.exists(tmp_path / 'ran')


def test_gradient_accumulation_not_divisible(tiny_dataset, tmp_path):
    """Under torchrun with 2 processes, gradient_accumulation_steps=3 is a one-line error from each rank and a
    non-zero exit (torchrun then adds its own report of the failed workers; train.py itself prints no
    traceback)."""
    args = tu.args_of(dataset=tiny_dataset, out_dir=tmp_path, gradient_accumulation_steps=3, max_iters=2)
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
                        os.path.join(tu.ROOT, 'train.py'), *args], cwd=tu.ROOT, env=tu.env_of(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    assert 'error: gradient_accumulation_steps=3 must be divisible by the number of processes (2)' in r.stderr
    assert 'train.py", line' not in r.stderr  # no traceback from train.py
    assert not os.path.exists(os.path.join(tmp_path, 'ckpt.pt'))


# ----------------------------------------------------------------------------- non-finite losses

def test_nonfinite_loss_stops_and_keeps_good_checkpoint(tiny_dataset, ckpt_copy):
    out, ckpt = ckpt_copy  # a good checkpoint at iter 10
    # resume with a learning rate that blows the weights up: the losses turn non-finite
    r = tu.train(dataset=tiny_dataset, out_dir=out, init_from='resume', max_iters=30, eval_interval=2,
                 always_save_checkpoint=True, learning_rate=1e30, warmup_iters=0, decay_lr=False,
                 grad_clip=0.0, max_nonfinite_steps=3)
    tu.check_one_line_error(r, 'non-finite')
    skipped = [line for line in r.stdout.splitlines()
               if 'update skipped: non-finite loss or gradient' in line]
    assert len(skipped) == 3, r.stdout
    assert checkpoint.load(ckpt)['nonfinite_steps'] == 0
    assert 'val loss is not finite: not saving a checkpoint' in r.stdout
    ck = checkpoint.load(ckpt)
    # the last good checkpoint (re-saved at the resume's first eval, before any update)
    assert ck['iter_num'] == 10
    for k, v in ck['model'].items():
        assert torch.isfinite(v).all(), k
    assert os.listdir(out) == ['ckpt.pt']


def test_nonfinite_count_survives_resume(tiny_dataset, ckpt_copy):
    """The count of consecutive skipped steps is checkpointed: resuming a run that had skipped 2 steps in a
    row stops at the 3rd (max_nonfinite_steps=3), not after 3 more."""
    out, ckpt = ckpt_copy
    ck = checkpoint.load(ckpt)
    ck['nonfinite_steps'] = 2
    ck['model']['transformer.ln_f.weight'][0] = float('nan')  # every loss from here on is NaN
    checkpoint.save(ck, ckpt)
    r = tu.train(dataset=tiny_dataset, out_dir=out, init_from='resume', max_iters=30, eval_interval=2,
                 max_nonfinite_steps=3)
    tu.check_one_line_error(r, 'non-finite', '3 consecutive')
    skipped = [line for line in r.stdout.splitlines()
               if 'update skipped: non-finite loss or gradient' in line]
    assert len(skipped) == 1 and '(3/3 in a row)' in skipped[0], r.stdout
