"""Hugging Face export (scripts/export_hf.py) and import (GPT.from_pretrained, train.py's init_from):
transformers loads the export with no missing or unexpected weights and computes model.py's logits; the round
trip keeps them. A GPT-2 BPE export is self-contained: its tokenizer (from the local ranks) encodes as
tiktoken does, and a text-generation pipeline runs on it offline."""
import os
import shutil
import subprocess
import sys

import pytest
import torch

import trainutil as tu

transformers = pytest.importorskip('transformers')
from model import GPT, GPTConfig  # noqa: E402
sys.path.insert(0, os.path.join(tu.ROOT, 'scripts'))
import export_hf  # noqa: E402  scripts/export_hf.py


def hf_logits(hf_dir, x):
    model, info = transformers.GPT2LMHeadModel.from_pretrained(hf_dir, output_loading_info=True)
    assert all(not v for v in info.values()), info # no missing, unexpected or mismatched weights
    model.eval()
    with torch.no_grad():
        return model(x).logits


def logits_of(model, x):
    model.eval()
    with torch.no_grad():
        return model(x, x)[0] # targets given: logits at every position


@pytest.mark.parametrize('bias', [False, True])
def test_export_gives_model_py_logits(tmp_path, bias):
    """A GPT-2 BPE model padded to 50304 (cropped to 50257 on export), with and without biases (random ones,
    so a missed bias or transpose shows), in float32: transformers' logits equal model.py's; from_pretrained
    reads the directory back to the same model (bias=False from the zero biases)."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=24, vocab_size=50304, bias=bias))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith('bias') or n.endswith('ln_1.weight'):
                p.normal_()
    assert export_hf.export(model, str(tmp_path), bpe=True) == 50257
    x = torch.randint(0, 50257, (2, 24))
    want = logits_of(model, x)[..., :50257]
    torch.testing.assert_close(hf_logits(str(tmp_path), x), want, atol=1e-5, rtol=0)
    back = GPT.from_pretrained(str(tmp_path))
    assert back.config.bias == bias and back.config.vocab_size == 50257 and back.config.block_size == 24
    torch.testing.assert_close(logits_of(back, x), want, atol=1e-5, rtol=0)
    assert transformers.GenerationConfig.from_pretrained(str(tmp_path)).eos_token_id == 50256


def test_cli_exports_a_trained_and_an_fsdp_checkpoint(trained_dir, tmp_path):
    """export_hf.py on train.py's char-level checkpoint (vocab from the checkpoint, not cropped), and on the
    same weights written as an FSDP2 checkpoint does (ckpt.pt naming a DCP directory): equal logits both ways.
    """
    import torch.distributed.checkpoint as dcp
    from trainer import checkpoint as ckpt_io
    model, checkpoint = ckpt_io.load_model(trained_dir)
    fsdp_out = tmp_path / 'fsdp'
    # trainer.checkpoint.save_checkpoint's
    dcp.save({'model': model.state_dict()}, checkpoint_id=str(fsdp_out / 'ckpt_dcp_10'))
    ckpt_io.save({k: v for k, v in checkpoint.items() if k not in ('model',
                                                                   'optimizer')} | {'dcp': 'ckpt_dcp_10'},
                 str(fsdp_out / 'ckpt.pt'))
    runs = tu.parallel(*[lambda o=o, h=h: tu.run_script('scripts/export_hf.py', f'--out_dir={o}',
                                                        f'--hf_dir={h}')
                         for o, h in [(trained_dir, tmp_path / 'hf'), (fsdp_out, tmp_path / 'hf_fsdp')]])
    V = model.config.vocab_size
    x = torch.randint(0, V, (2, model.config.block_size))
    for r, h in zip(runs, ['hf', 'hf_fsdp']):
        assert f'vocab_size {V}; char-level' in tu.check_ok(r).stdout
        # no BPE: no generation config
        assert sorted(os.listdir(tmp_path / h)) == ['config.json', 'model.safetensors']
        torch.testing.assert_close(hf_logits(str(tmp_path / h), x), logits_of(model, x), atol=1e-5, rtol=0)
    tu.check_one_line_error(tu.run_script('scripts/export_hf.py', f'--out_dir={tmp_path}/none',
                                          f'--hf_dir={tmp_path}/h'),
                            'ckpt.pt')


def hf_cache(root, hf_dir, repo='openai-community/gpt2'):
    """hf_dir laid out as the Hugging Face cache holds a downloaded repo (refs/main naming a snapshot)."""
    repo_dir = os.path.join(root, 'models--' + repo.replace('/', '--'))
    shutil.copytree(hf_dir, os.path.join(repo_dir, 'snapshots', 'abc123'))
    os.makedirs(os.path.join(repo_dir, 'refs'))
    with open(os.path.join(repo_dir, 'refs', 'main'), 'w') as f:
        f.write('abc123')


def test_round_trip_through_train_py(trained_dir, tiny_dataset, tmp_path):
    """export, then train.py --init_from=DIR and --init_from=gpt2 (from a local cache, HF_HUB_CACHE): the same
    val loss as the checkpoint itself (--init_from=resume --eval_only); gpt2 absent from the cache: one line
    saying where to put it."""
    hf_dir = str(tmp_path / 'hf')
    tu.check_ok(tu.run_script('scripts/export_hf.py', f'--out_dir={trained_dir}', f'--hf_dir={hf_dir}'))
    hf_cache(str(tmp_path / 'cache'), hf_dir)
    out = tmp_path / 'resume'
    shutil.copytree(trained_dir, out)

    def train(init_from, out_dir, cache):
        env = tu.env_of(HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE='1')
        return subprocess.run([sys.executable, 'train.py', *tu.args_of(dataset=tiny_dataset,
                                                                       out_dir=str(out_dir),
                               init_from=init_from, eval_only=True)], cwd=tu.ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
    runs = tu.parallel(lambda: train('resume', out, tmp_path / 'none'),
                       lambda: train(hf_dir, tmp_path / 'o1', tmp_path / 'none'),
                       lambda: train('gpt2', tmp_path / 'o2', tmp_path / 'cache'),
                       lambda: train('gpt2-medium', tmp_path / 'o3', tmp_path / 'cache'))
    want = tu.step_losses(tu.check_ok(runs[0]).stdout)
    assert len(want) == 1
    for r in runs[1:3]:
        assert tu.step_losses(tu.check_ok(r).stdout) == [(0,) + want[0][1:]]
    assert os.path.join('snapshots', 'abc123') in runs[2].stdout
    tu.check_one_line_error(runs[3], "'gpt2-medium'", 'hf download openai-community/gpt2-medium',
                            'init_from=DIR')


GPT2_STRINGS = [ # tiktoken's ids are the reference: ASCII, unicode, whitespace runs, the special token's text
    "Hello world, this is GPT-2!", "it's we'll they've I'M 12345 3.14159 x=y+1;",
    "caf\u00e9 na\u00efve \u00dcn\u00efc\u00f6d\u00e9 \u2603 \u65e5\u672c\u8a9e \U0001f642 \u0394\u03b9",
    "a  b   c\n\n\t\tx    \n  ", "   leading and trailing   ", "\n\n\n", " ",
    "<|endoftext|>two documents<|endoftext|>",
]


def run_offline(script, *args):
    """A repo script in a subprocess with the Hugging Face Hub switched off (nothing may download)."""
    return subprocess.run([sys.executable, os.path.join(tu.ROOT, script), *args], cwd=tu.ROOT, text=True,
                          env=tu.env_of(HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1'), capture_output=True,
                          timeout=300)


@pytest.fixture
def offline(monkeypatch):
    """No network in this process: the Hub's offline mode (read at import, so patched too) and no socket
    connects at all."""
    import socket
    import huggingface_hub.constants
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('TRANSFORMERS_OFFLINE', '1')
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', True)

    def no_connect(*args, **kwargs):
        raise OSError('no network in this test')
    monkeypatch.setattr(socket.socket, 'connect', no_connect)


@pytest.fixture(scope='module')
def bpe_export(tmp_path_factory):
    """(hf_dir, the model, export_hf.py's stdout): a tiny GPT-2 BPE model (vocab padded to 50304, as train.py
    pads it) saved as train.py's ckpt.pt, of a dataset without meta.pkl, exported by scripts/export_hf.py."""
    from data import gpt2_bpe
    from trainer import checkpoint as ckpt_io
    try:
        gpt2_bpe.gpt2_bpe_file()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    tmp = tmp_path_factory.mktemp('bpe_export')
    torch.manual_seed(0)
    model_args = dict(n_layer=1, n_head=2, n_embd=16, block_size=32, vocab_size=50304, bias=False,
                      dropout=0.0)
    model = GPT(GPTConfig(**model_args))
    ckpt_io.save({'model_args': model_args, 'model': model.state_dict(), 'iter_num': 0,
                  'config': {'dataset': str(tmp / 'bpe_data')}}, str(tmp / 'out' / 'ckpt.pt'))
    r = tu.check_ok(run_offline('scripts/export_hf.py', f'--out_dir={tmp / "out"}', f'--hf_dir={tmp / "hf"}'))
    return str(tmp / 'hf'), model, r.stdout


def test_bpe_export_holds_gpt2_tokenizer(bpe_export, offline):
    """The export of a GPT-2 BPE checkpoint is self-contained: vocab.json and merges.txt are OpenAI's
    encoder.json and vocab.bpe byte for byte (tiktoken's sha256), and AutoTokenizer loads the directory, with
    <|endoftext|> = 50256 as bos/eos/unk and model_max_length = block_size, encoding as tiktoken does."""
    import hashlib
    from data import gpt2_bpe
    hf_dir, model, stdout = bpe_export
    assert "vocab_size 50257 (cropped from 50304); GPT-2 BPE: GPT-2's tokenizer written" in stdout
    assert sorted(os.listdir(hf_dir)) == ['config.json', 'generation_config.json', 'merges.txt',
                                          'model.safetensors', 'special_tokens_map.json', 'tokenizer.json',
                                          'tokenizer_config.json', 'vocab.json']
    sha = {n: hashlib.sha256(tu.file_bytes(os.path.join(hf_dir, n))).hexdigest()
           for n in ('vocab.json', 'merges.txt')}
    assert sha == {'vocab.json': gpt2_bpe.GPT2_ENCODER_JSON_SHA256,
                   'merges.txt': gpt2_bpe.GPT2_VOCAB_BPE_SHA256}
    try: # the hashes are tiktoken's own, for the data-gym pair of get_encoding('gpt2')
        import inspect
        from tiktoken_ext import openai_public
        source = inspect.getsource(openai_public.gpt2)
        assert gpt2_bpe.GPT2_ENCODER_JSON_SHA256 in source and gpt2_bpe.GPT2_VOCAB_BPE_SHA256 in source
    except ImportError:
        pass
    tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
    assert tok.is_fast and len(tok) == 50257 and tok.model_max_length == model.config.block_size
    assert (tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (50256, 50256, 50256)
    enc = gpt2_bpe.gpt2_encoding()
    assert tok(GPT2_STRINGS[0])['input_ids'] == [15496, 995, 11, 428, 318, 402, 11571, 12, 17, 0]
    for s in GPT2_STRINGS:
        ids = tok(s)['input_ids']
        assert ids == enc.encode(s, allowed_special='all'), s
        assert tok.decode(ids) == s
    assert tok('<|endoftext|>')['input_ids'] == [50256]


def test_pipeline_generates_offline(bpe_export, offline):
    """transformers.pipeline('text-generation', model=hf_dir) needs nothing but the directory: greedy
    generation gives model.py's greedy tokens (over GPT-2's 50257), through the exported tokenizer."""
    from data import gpt2_bpe
    hf_dir, model, _ = bpe_export
    pipe = transformers.pipeline('text-generation', model=hf_dir, device='cpu')
    prompt, n = 'Hello world', 6
    got = pipe(prompt, max_new_tokens=n, do_sample=False, return_tensors=True)[0]['generated_token_ids']
    idx = torch.tensor([gpt2_bpe.gpt2_encoding().encode(prompt)])
    model.eval()
    with torch.no_grad():
        for _ in range(n): # model.py's greedy continuation, stopping after <|endoftext|> as generate does
            nxt = model(idx)[0][:, -1, :50257].argmax(-1, keepdim=True)
            idx = torch.cat([idx, nxt], dim=1)
            if nxt.item() == 50256:
                break
    assert list(got) == idx[0].tolist()
    text = pipe(prompt, max_new_tokens=n, do_sample=False)[0]['generated_text']
    assert text.startswith(prompt) and len(text) > len(prompt)
