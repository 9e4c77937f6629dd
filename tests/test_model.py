"""model.py in process: shapes, init loss, weight tying, generation, surgery, PLASLS components,
optimizers."""
import math

import pytest
import torch

import alsals
from model import GPT, GPTConfig

V = 65


def tiny(**kw):
    torch.manual_seed(0)
    cfg = dict(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=V, dropout=0.0, bias=True)
    cfg.update(kw)
    return GPT(GPTConfig(**cfg))


def test_forward_backward_shapes():
    model = tiny()
    idx = torch.randint(0, V, (3, 16))
    logits, loss = model(idx, idx)
    assert logits.shape == (3, 16, V) and loss.shape == ()
    loss.backward()
    for n, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, n
        assert torch.isfinite(p.grad).all(), n
    logits, loss = model(idx[:, :5])  # inference: only the last position
    assert logits.shape == (3, 1, V) and loss is None
    with pytest.raises(AssertionError):
        model(torch.zeros(1, 17, dtype=torch.long))  # longer than block_size


def test_init_loss_is_log_vocab():
    model = tiny()
    torch.manual_seed(1)
    idx = torch.randint(0, V, (8, 16))
    tgt = torch.randint(0, V, (8, 16))
    _, loss = model(idx, tgt)
    assert abs(loss.item() - math.log(V)) < 0.1


def test_weight_tying():
    model = tiny()
    assert model.lm_head.weight is model.transformer.wte.weight
    # counted once
    n_unique = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    assert sum(p.numel() for p in model.parameters()) == n_unique
    assert model.get_num_params() == n_unique - model.transformer.wpe.weight.numel()
    assert model.get_num_params(non_embedding=False) == n_unique
    # a gradient through the head reaches the embedding
    _, loss = model(torch.randint(0, V, (2, 8)), torch.randint(0, V, (2, 8)))
    loss.backward()
    assert model.transformer.wte.weight.grad is model.lm_head.weight.grad


def test_generate_length_and_cropping():
    model = tiny()
    model.eval()
    idx = torch.randint(0, V, (2, 5))
    out = model.generate(idx, 7, temperature=0.8, top_k=10)
    assert out.shape == (2, 12) and out.dtype == torch.long
    assert torch.equal(out[:, :5], idx)
    assert int(out.min()) >= 0 and int(out.max()) < V
    long_prompt = torch.randint(0, V, (1, 16 + 3))  # longer than block_size: the context is cropped
    assert model.generate(long_prompt, 4, top_k=None).shape == (1, 23)
    # greedy-ish determinism under a fixed seed
    torch.manual_seed(5)
    a = model.generate(idx, 6)
    torch.manual_seed(5)
    assert torch.equal(a, model.generate(idx, 6))


def test_crop_block_size():
    model = tiny()
    wpe = model.transformer.wpe.weight.detach().clone()
    model.crop_block_size(8)
    assert model.config.block_size == 8
    assert model.transformer.wpe.weight.shape == (8, 32)
    assert torch.equal(model.transformer.wpe.weight.detach(), wpe[:8])
    logits, loss = model(torch.randint(0, V, (2, 8)), torch.randint(0, V, (2, 8)))
    assert logits.shape == (2, 8, V) and torch.isfinite(loss)
    with pytest.raises(AssertionError):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(AssertionError):
        model.crop_block_size(9)  # can only shrink


@pytest.mark.parametrize('n_layer', [1, 4])
@pytest.mark.parametrize('L', [1, 2, 3, 4, 5, 6, 10])
def test_param_components_partition(n_layer, L):
    model = tiny(n_layer=n_layer)
    comps = model.param_components(L)
    flat = [p for c in comps for p in c]
    params = list(model.parameters())  # model order, the tied head counted once
    assert [id(p) for p in flat] == [id(p) for p in params]  # every parameter exactly once, in model order
    assert all(len(c) > 0 for c in comps)
    assert len(comps) == min(L, n_layer + 2)  # embeddings, block groups, final norm


def test_plasls_components_follow_n_components():
    model = tiny(n_layer=4)
    groups = [{'params': [p for p in model.parameters() if p.dim() >= 2], 'weight_decay': 0.1},
              {'params': [p for p in model.parameters() if p.dim() < 2], 'weight_decay': 0.0}]
    opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.95), 'cpu', 'plasls', n_components=4)
    assert isinstance(opt, alsals.PLASLS)
    comps = {}
    for g in opt.param_groups:                      # the components are param groups (group['component'])
        comps.setdefault(g['component'], []).extend(id(p) for p in g['params'])
    assert len(comps) == 4
    assert sorted(i for s in comps.values() for i in s) == sorted(id(p) for g in groups for p in g['params'])


def test_configure_optimizers_adamw():
    model = tiny()
    opt = model.configure_optimizers(0.1, 6e-4, (0.9, 0.95), 'cpu')
    assert type(opt) is torch.optim.AdamW
    assert len(opt.param_groups) == 2
    decay, nodecay = opt.param_groups
    assert decay['weight_decay'] == 0.1 and nodecay['weight_decay'] == 0.0
    assert all(p.dim() >= 2 for p in decay['params']) and all(p.dim() < 2 for p in nodecay['params'])
    assert len(nodecay['params']) > 0  # biases and layernorm gains exist with bias=True
    ids = [id(p) for g in opt.param_groups for p in g['params']]
    assert sorted(ids) == sorted(id(p) for p in model.parameters()) and len(set(ids)) == len(ids)
    assert all(g['lr'] == 6e-4 and g['betas'] == (0.9, 0.95) for g in opt.param_groups)


@pytest.mark.parametrize('name,cls', [('alsals', alsals.ALSALS), ('plasls', alsals.PLASLS),
                                      ('adamsls', alsals.AdamSLS), ('sgdsls', alsals.SGDSLS)])
def test_configure_optimizers_line_search(name, cls):
    model = tiny()
    opt = model.configure_optimizers(0.1, 6e-4, (0.9, 0.95), 'cpu', name, warmup_steps=3, n_components=3)
    assert type(opt) is cls
    assert all(g['weight_decay'] == (0.1 if all(p.dim() >= 2 for p in g['params']) else 0.0)
               for g in opt.param_groups)
    assert all(len({p.dim() >= 2 for p in g['params']}) == 1 for g in opt.param_groups)   # the decay split
    # PLASLS: a group per component and decay kind: embeddings (decayed), blocks (both), ln_f (not decayed)
    assert len(opt.param_groups) == (2 if name != 'plasls' else 4)
    # torch style: hyperparameters in param_groups
    assert all(g['warmup_steps'] == 3 for g in opt.param_groups)


def test_configure_optimizers_unknown():
    with pytest.raises(ValueError, match='unknown optimizer'):
        tiny().configure_optimizers(0.1, 6e-4, (0.9, 0.95), 'cpu', 'nope')


def test_estimate_mfu_positive():
    model = tiny()
    mfu = model.estimate_mfu(fwdbwd_per_iter=8, dt=0.01)
    assert mfu > 0 and math.isfinite(mfu)
    assert model.estimate_mfu(8, 0.01, extra_forwards=8) > mfu  # line-search trial forwards count


def test_estimate_mfu_uses_the_device_peak(monkeypatch, capsys):
    """MFU against the bfloat16 peak of the device the model runs on: an H100 or H200 (989 TFLOPS) reports
    312/989 of what an A100 (312 TFLOPS) reports for the same throughput; unknown devices and CPUs use the
    A100's peak, said once."""
    import model as model_module
    monkeypatch.setattr(model_module, '_noted', set())
    model = tiny()
    cpu = model.estimate_mfu(8, 0.01)
    assert model.estimate_mfu(8, 0.01) == cpu
    out = capsys.readouterr().out
    assert out.count("no bfloat16 peak known for 'cpu'") == 1  # the note, once
    mfu = {}
    for name in ('NVIDIA A100-SXM4-80GB', 'NVIDIA H100 80GB HBM3', 'NVIDIA H200', 'NVIDIA H100 PCIe',
                 'Tesla T4'):
        monkeypatch.setattr(model_module, 'device_name', lambda device, name=name: name)
        mfu[name] = model.estimate_mfu(8, 0.01)
    assert mfu['NVIDIA A100-SXM4-80GB'] == cpu == mfu['Tesla T4']
    assert mfu['NVIDIA H100 80GB HBM3'] == mfu['NVIDIA H200'] == pytest.approx(cpu * 312 / 989, rel=1e-12)
    assert mfu['NVIDIA H100 PCIe'] == pytest.approx(cpu * 312 / 756, rel=1e-12)
    # the flop count itself: 6N + 12LHQT per token, T tokens a sequence, 8 sequences in 10 ms
    N, L, H, Q, T = model.get_num_params(), 2, 2, 16, 16
    assert cpu == pytest.approx((6 * N + 12 * L * H * Q * T) * T * 8 / 0.01 / 312e12, rel=1e-12)

