"""sample.py on checkpoints of short training runs: char-level codec, FILE: prompts, GPT-2 BPE, errors; and,
with init_from, on a Hugging Face GPT-2 directory (an export of scripts/export_hf.py)."""
import os
import subprocess
import sys

import numpy as np
import pytest

import trainutil as tu

SEP = '---------------'


def samples_of(stdout):
    """The samples printed by sample.py (each followed by a separator line)."""
    body = stdout.split('Loading meta from', 1)[-1].split('No meta.pkl found', 1)[-1]
    body = body.split('\n', 1)[1]  # drop the rest of the codec line
    parts = body.split('\n' + SEP + '\n')
    assert parts[-1] == '', parts[-1]
    return parts[:-1]


def sample(out_dir, *args):
    return tu.run_script('sample.py', f'--out_dir={out_dir}', '--device=cpu', '--dtype=float32', *args)


def test_char_samples(trained_dir, tiny_dataset):
    r = tu.check_ok(sample(trained_dir, '--num_samples=3', '--max_new_tokens=40', '--start=The '))
    assert f'Loading meta from {os.path.join(tiny_dataset, "meta.pkl")}' in r.stdout
    got = samples_of(r.stdout)
    assert len(got) == 3 and r.stdout.count(SEP) == 3
    vocab = set(tu.vocab_of(tiny_dataset)['stoi'])
    for s in got:
        assert s.startswith('The ') and len(s) == 4 + 40
        assert set(s) <= vocab
    assert len(set(got)) > 1  # sampled, not the same string three times


def test_file_prompt_and_determinism(trained_dir, tmp_path):
    prompt = tmp_path / 'prompt.txt'
    prompt.write_text('When the day\n', encoding='utf-8')
    a, b = tu.parallel(lambda: sample(trained_dir, f'--start=FILE:{prompt}', '--num_samples=2',
                                      '--max_new_tokens=25'),
                       lambda: sample(trained_dir, '--start=When the day\n', '--num_samples=2',
                                      '--max_new_tokens=25'))
    tu.check_ok(a)
    tu.check_ok(b)
    sa, sb = samples_of(a.stdout), samples_of(b.stdout)
    assert len(sa) == 2 and all(s.startswith('When the day\n') and len(s) == 13 + 25 for s in sa)
    assert sa == sb  # same prompt, same seed: the same samples


ERRORS = {  # name: (sample.py arguments, with {ckpt_dir} and {tmp} filled in; needles of the error line)
    'prompt_char_not_in_vocab': (['--out_dir={ckpt_dir}', '--start=caf\u00e9 \u2603'], ["'\u00e9'",
                                                                                        'vocabulary']),
    'missing_prompt_file': (['--out_dir={ckpt_dir}', '--start=FILE:{tmp}/nope.txt'], ['nope.txt']),
    'missing_checkpoint': (['--out_dir={tmp}/empty'], ['ckpt.pt']),
    'num_samples_0': (['--out_dir={ckpt_dir}', '--num_samples=0'], ['num_samples']),
    'temperature_0': (['--out_dir={ckpt_dir}', '--temperature=0.0'], ['temperature']),
    'max_new_tokens_negative': (['--out_dir={ckpt_dir}', '--max_new_tokens=-1'], ['max_new_tokens']),
    'unknown_key': (['--out_dir={ckpt_dir}', '--topk=5'], ['topk']),
}


@pytest.fixture(scope='module')
def error_runs(trained_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp('sample_errors')
    jobs = [[a.format(ckpt_dir=trained_dir, tmp=tmp) for a in args] + ['--device=cpu', '--dtype=float32']
            for args, _ in ERRORS.values()]
    return dict(zip(ERRORS, tu.parallel(*[lambda j=j: tu.run_script('sample.py', *j) for j in jobs])))


@pytest.mark.parametrize('case', list(ERRORS))
def test_one_line_errors(case, error_runs):
    tu.check_one_line_error(error_runs[case], *ERRORS[case][1])


def test_gpt2_bpe_samples(tmp_path):
    """A dataset without meta.pkl trains a padded 50304-token model; sample.py decodes with GPT-2 BPE and
    never emits the padding ids."""
    gpt2_bpe = pytest.importorskip('data.gpt2_bpe')
    try:
        enc = gpt2_bpe.gpt2_encoding()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    data = tmp_path / 'bpe'
    data.mkdir()
    ids = np.array(enc.encode_ordinary(tu.tiny_text(6000)), dtype=np.uint16)
    n = int(len(ids) * 0.9)
    ids[:n].tofile(data / 'train.bin')
    ids[n:].tofile(data / 'val.bin')
    out = tmp_path / 'out'
    r = tu.check_ok(tu.train(dataset=str(data), out_dir=str(out), max_iters=2, eval_interval=2, block_size=16,
                             batch_size=4))
    assert 'defaulting to vocab_size of GPT-2 to 50304' in r.stdout
    r = tu.check_ok(sample(out, '--num_samples=2', '--max_new_tokens=12', '--start=The day'))
    assert 'No meta.pkl found, assuming GPT-2 encodings' in r.stdout
    got = samples_of(r.stdout)
    assert len(got) == 2 and all(s.startswith('The day') for s in got)


@pytest.fixture(scope='module')
def bpe_hf_dir(tmp_path_factory):
    """A Hugging Face GPT-2 directory: a tiny GPT-2 BPE model (vocab 50304), exported by scripts/export_hf.py
    (in this process), tokenizer included."""
    pytest.importorskip('transformers')
    import torch
    from data import gpt2_bpe
    from model import GPT, GPTConfig
    try:
        gpt2_bpe.gpt2_bpe_file()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    sys.path.insert(0, os.path.join(tu.ROOT, 'scripts'))
    import export_hf # scripts/export_hf.py
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32, vocab_size=50304, bias=False))
    hf_dir = str(tmp_path_factory.mktemp('bpe_hf') / 'hf')
    assert export_hf.export(model, hf_dir, bpe=True) == 50257
    return hf_dir


def sample_offline(*args, **env):
    """sample.py on the CPU with the Hugging Face Hub switched off (nothing may download); env: more of it."""
    env = tu.env_of(HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1', **env)
    return subprocess.run([sys.executable, 'sample.py', '--device=cpu', '--dtype=float32', *args],
                          cwd=tu.ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_init_from_hf_dir(bpe_hf_dir, tmp_path):
    """--init_from=DIR samples from the exported model with the GPT-2 BPE (out_dir is not read)."""
    r = tu.check_ok(sample_offline(f'--init_from={bpe_hf_dir}', f'--out_dir={tmp_path}/none',
                                   '--num_samples=2', '--max_new_tokens=10', '--start=The day'))
    assert f'loading weights from the Hugging Face GPT-2 in {bpe_hf_dir}' in r.stdout
    assert 'No meta.pkl found, assuming GPT-2 encodings' in r.stdout
    got = samples_of(r.stdout)
    assert len(got) == 2 and all(s.startswith('The day') and len(s) > len('The day') for s in got)


def test_init_from_errors(tmp_path):
    """A missing directory, one that is no Hugging Face model, and a GPT-2 name missing from the local cache
    (HF_HUB_CACHE): one line each."""
    (tmp_path / 'empty').mkdir()
    runs = tu.parallel(lambda: sample_offline(f'--init_from={tmp_path}/no_such_dir'),
                       lambda: sample_offline(f'--init_from={tmp_path}/empty'),
                       lambda: sample_offline('--init_from=gpt2-large', HF_HUB_CACHE=str(tmp_path / 'cache')))
    tu.check_one_line_error(runs[0], f"init_from='{tmp_path}/no_such_dir'", 'neither a directory nor')
    tu.check_one_line_error(runs[1], f'{tmp_path}/empty has no config.json')
    tu.check_one_line_error(runs[2], "'gpt2-large' is not in the local Hugging Face cache",
                            'hf download openai-community/gpt2-large', 'init_from=DIR')
