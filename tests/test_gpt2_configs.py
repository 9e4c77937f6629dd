"""The GPT-2 124M configs as a user launches them, shrunk to CPU: each FineWeb-Edu config (AdamW, ALSALS, Muon) starts
under torchrun on 2 gloo ranks with its own batch structure (32 accumulated micro-batches) on a BPE fixture laid out
as data/fineweb_edu/prepare.py writes it, and reaches its first eval with HellaSwag scored."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import trainutil as tu

CONFIGS = ['config/train_gpt2_fineweb.py', 'config/train_gpt2_fineweb_alsals.py', 'config/train_gpt2_fineweb_muon.py']
HELLASWAG = dict(ctx='A man is sitting on a roof. he', label=3,
                 endings=['is using wrap to wrap a pair of skis.', 'is ripping level tiles off.',
                          "is holding a rubik's cube.", 'starts pulling up roofing on a roof.'])


@pytest.fixture(scope='module')
def fineweb_fixture(tmp_path_factory):
    """train.bin / val.bin of GPT-2 BPE ids (no meta.pkl: vocab 50304, as the real prep) and a HellaSwag jsonl."""
    d = tmp_path_factory.mktemp('fineweb_edu')
    rng = np.random.default_rng(0)
    for split, n in (('train', 20_000), ('val', 4_000)):
        rng.integers(0, 50257, n, dtype=np.uint16).tofile(d / f'{split}.bin')
    with open(d / 'hellaswag.jsonl', 'w') as f:
        for _ in range(2):
            f.write(json.dumps(HELLASWAG) + '\n')
    return d


@pytest.mark.parametrize('config', CONFIGS)
def test_fineweb_configs_start_under_torchrun(fineweb_fixture, tmp_path, config):
    """The config's own settings, a tiny model and device overrides only: both ranks reach the eval at iter 0
    (val loss, and HellaSwag on the fixture's items), take a step and end with the same parameters."""
    args = [config, f'--dataset={fineweb_fixture}', f'--out_dir={tmp_path}', '--device=cpu', '--dtype=float32',
            '--compile=False', '--n_layer=1', '--n_head=2', '--n_embd=16', '--block_size=32', '--batch_size=1',
            '--eval_iters=1', '--max_iters=0', f'--hellaswag_file={fineweb_fixture / "hellaswag.jsonl"}']
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
                        os.path.join(tu.ROOT, 'train.py'), *args], cwd=tu.ROOT, env=tu.env_of(),
                       capture_output=True, text=True, timeout=300)
    tu.check_ok(r)
    assert 'tokens per iteration will be: 1,024' in r.stdout  # 32 micro-batches of 1 x 32 tokens over 2 ranks
    evals = [line for line in r.stdout.splitlines() if line.startswith('step 0: train loss')]
    assert len(evals) == 1 and 'hellaswag' in evals[0] and '(2 items' in evals[0], r.stdout[-2000:]
    assert 'ranks agree: True' in r.stdout
