"""ALSALS vs ADAM+SLS on a small character-level GPT (Shakespeare slice): the behaviour the ALSALS paper
reports at GPT-2 scale ([A] Fig. 1: ADAM+SLS's step size collapses, ALSALS's does not), at test scale.
Measured (2 layers x 64 dims, 30 warmup steps to 1e-2, then 200 search steps): ALSALS eta 3.4e-3 -> 4.0e-3,
ADAM+SLS eta 1.2e-3 -> 4.9e-4, loss 2.48 vs 2.56."""
import importlib.util
import os
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from model import GPT, GPTConfig  # noqa: E402


def _corpus(tmp_path):
    spec = importlib.util.spec_from_file_location('prep', os.path.join(ROOT, 'data', 'shakespeare_char',
                                                                       'prepare.py'))
    prep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prep)
    prep.prepare(out_dir=str(tmp_path), max_chars=300_000)
    import pickle
    with open(tmp_path / 'meta.pkl', 'rb') as f:
        vocab = pickle.load(f)['vocab_size']
    return np.fromfile(tmp_path / 'train.bin', dtype=np.uint16), vocab


def _train(name, data, vocab, steps, warmup=30):
    torch.manual_seed(0)
    m = GPT(GPTConfig(block_size=64, vocab_size=vocab, n_layer=2, n_head=2, n_embd=64, dropout=0.0,
                      bias=False))
    opt = m.configure_optimizers(0.1, 1e-2, (0.9, 0.99), 'cpu', name, warmup_steps=warmup,
                                 ema_warmup_steps=15, max_grad_norm=1.0)
    etas, losses = [], []
    for it in range(steps):
        if it < warmup:
            for g in opt.param_groups:
                g['lr'] = 1e-2 * (it + 1) / (warmup + 1)
        gen = torch.Generator().manual_seed(it)
        ix = torch.randint(len(data) - 65, (16,), generator=gen)
        x = torch.stack([torch.from_numpy(data[j:j + 64].astype(np.int64)) for j in ix])
        y = torch.stack([torch.from_numpy(data[j + 1:j + 65].astype(np.int64)) for j in ix])
        _, loss = m(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step(closure=lambda: m(x, y)[1], loss=loss.detach())
        etas.append(opt.eta)
        losses.append(loss.item())
    return etas, float(np.mean(losses[-30:]))


def test_alsals_step_size_holds_where_adamsls_decays(tmp_path):
    torch.set_num_threads(1)
    data, vocab = _corpus(tmp_path)
    steps, warmup = 230, 30
    eta_al, loss_al = _train('alsals', data, vocab, steps, warmup)
    eta_sls, loss_sls = _train('adamsls', data, vocab, steps, warmup)
    print(f"ALSALS eta {eta_al[warmup]:.2e} -> {eta_al[-1]:.2e}, loss {loss_al:.3f}; "
          f"ADAM+SLS eta {eta_sls[warmup]:.2e} -> {eta_sls[-1]:.2e}, loss {loss_sls:.3f}")
    assert eta_al[-1] >= 0.9 * eta_al[warmup]          # no collapse
    assert eta_sls[-1] <= 0.6 * eta_sls[warmup]        # ADAM+SLS shrinks steadily
    assert eta_al[-1] > 2 * eta_sls[-1]
    assert loss_al < loss_sls
