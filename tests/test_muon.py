"""muon.py: MuonAdamW is torch.optim.Muon + torch.optim.AdamW as one optimizer (bit for bit), round-trips its
state, and model.configure_optimizers puts the hidden matrices under Muon. The search on Muon's direction
(MuonSLS) is tested with the other line searches in tests/test_alsals.py (twin, criterion, state_dict, DCP).
"""
import copy
import os
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import alsals.muon as muon  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Embedding(20, 16), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16), nn.Linear(16,
                                                                                                          20))


def split(m):
    hidden = [m[1].weight, m[3].weight]
    return hidden, [p for p in m.parameters() if all(p is not q for q in hidden)]


def batches(n=25):
    g = torch.Generator().manual_seed(0)
    return [(torch.randint(0, 20, (64,), generator=g), torch.randint(0, 20, (64,),
                                                                     generator=g)) for _ in range(n)]


def train(m, optimizers, data):
    for x, y in data:
        loss = F.cross_entropy(m(x), y)
        for o in optimizers:
            o.zero_grad()
        loss.backward()
        for o in optimizers:
            o.step()
    return loss.item()


def test_muon_adamw_is_torch_muon_plus_adamw():
    """Each part runs torch's own implementation with the same hyperparameters: the parameters end
    bit-identical to torch.optim.Muon on the hidden matrices and torch.optim.AdamW on the rest, stepped side
    by side."""
    m1, m2 = net(), net()
    h1, r1 = split(m1)
    h2, r2 = split(m2)
    o1 = muon.MuonAdamW([{'params': h1, 'use_muon': True}, {'params': r1, 'lr': 3e-3, 'weight_decay': 0.01}],
                        lr=0.02, weight_decay=0.1, betas=(0.9, 0.95))
    o2 = [torch.optim.Muon(h2, lr=0.02, weight_decay=0.1), torch.optim.AdamW(r2, lr=3e-3, weight_decay=0.01,
                                                                             betas=(0.9, 0.95))]
    data = batches()
    train(m1, [o1], data)
    train(m2, o2, data)
    assert all(torch.equal(a, b) for a, b in zip(m1.parameters(), m2.parameters()))


def test_state_dict_round_trip_continues_identically():
    m1 = net()
    h, r = split(m1)
    o1 = muon.MuonAdamW([{'params': h, 'use_muon': True}, {'params': r, 'lr': 3e-3}], lr=0.02)
    data = batches(30)
    train(m1, [o1], data[:15])
    m2 = copy.deepcopy(m1)
    h2, r2 = split(m2)
    o2 = muon.MuonAdamW([{'params': h2, 'use_muon': True}, {'params': r2, 'lr': 3e-3}], lr=0.02)
    o2.load_state_dict(copy.deepcopy(o1.state_dict()))
    train(m1, [o1], data[15:])
    train(m2, [o2], data[15:])
    assert all(torch.equal(a, b) for a, b in zip(m1.parameters(), m2.parameters()))


def test_muon_groups_take_only_matrices():
    m = net()
    with pytest.raises(ValueError, match='2-D'):
        muon.MuonAdamW([{'params': list(m.parameters()), 'use_muon': True}])
    with pytest.raises(ValueError, match='2-D'):
        muon.MuonSLS([{'params': list(m.parameters()), 'use_muon': True}])


@pytest.mark.parametrize('name', ['muon', 'muonsls'])
def test_configure_optimizers_puts_the_hidden_matrices_under_muon(name):
    """Muon takes the 2-D weights inside the blocks; AdamW, at adamw_lr, the embeddings (wte is tied to
    lm_head: one matrix, AdamW's), the norms and the biases; every parameter is in exactly one group."""
    model = GPT(GPTConfig(block_size=16, vocab_size=32, n_layer=2, n_head=2, n_embd=16, dropout=0.0,
                          bias=True))
    opt = model.configure_optimizers(0.1, 0.02, (0.9, 0.95), 'cpu', name, adamw_lr=3e-3)
    names = {id(p): n for n, p in model.named_parameters()}
    muon_names = sorted(names[id(p)] for g in opt.param_groups if g['use_muon'] for p in g['params'])
    assert muon_names == sorted(n for n, p in model.named_parameters()
                                if n.startswith('transformer.h.') and p.dim() == 2)
    # tied: one tensor
    assert 'transformer.wte.weight' not in muon_names and 'lm_head.weight' not in names.values()
    assert sorted(id(p) for g in opt.param_groups for p in g['params']) == sorted(names)
    assert all(g['lr'] == pytest.approx(3e-3) for g in opt.param_groups if not g['use_muon'])
    assert all(g['lr'] == g['lr_scale'] * 0.02 for g in opt.param_groups)


# ---- FSDP2: each Muon matrix gathered for Newton-Schulz, each rank keeping its shard of the result ---------
@pytest.fixture(scope='module', params=['muon', 'muonsls'])
def fsdp_saved(request, tmp_path_factory):
    """MuonAdamW / MuonSLS on 2 gloo ranks under FSDP2 for 30 steps, with a torch.distributed.checkpoint
    written after 15 (a save moves nothing): one run serves both tests below. Returns name, folder, records
    and params."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from fsdp_worker import spawn
    out = tmp_path_factory.mktemp(request.param)
    return request.param, out, spawn(out, 'save', request.param)


def test_fsdp2_sharded_muon_matches_one_process(tmp_path, fsdp_saved):
    """A GPT of model.py, fully_shard on each block and the root (Shard(0) rows, some matrices split
    unevenly), 2 gloo ranks each with half of the global batch: MuonAdamW / MuonSLS end within 1e-5 of one
    process on the whole batch after 30 steps, f(w) (and MuonSLS's eta, forwards and backtracks) agreeing
    every step. Newton-Schulz on a shard alone, or r from a shard's shape, moves the matrices differently.
    MuonAdamW's step gathers each Muon matrix once (counted by torch's CommDebugMode)."""
    from fsdp_worker import worker
    name, _, (r0, r1) = fsdp_saved
    r0, r1 = copy.deepcopy(r0), copy.deepcopy(r1)   # the resume test reads the same records
    worker(0, 1, 0, str(tmp_path), 'run', name)
    single = torch.load(tmp_path / 'run_rank0.pt', weights_only=True)
    assert r0['record'] == r1['record'] and len(r0['record']) == len(single['record']) == 30
    # the cost: one all-gather per Muon matrix per step (8: 4 per block), none in one process
    if name == 'muon':
        assert [r.pop('gathers') for r in r0['record']] == [8] * 30
        assert [r.pop('gathers') for r in single['record']] == [0] * 30
    if name == 'muonsls':
        assert (sum(not r['warmup'] for r in r0['record']) == 25
                and sum(r['backtracks'] for r in r0['record']) > 0)
    for a, s in zip(r0['record'], single['record']):
        assert a['f_w'] == pytest.approx(s['f_w'], abs=1e-5)
        if name == 'muonsls':
            assert a['eta'] == pytest.approx(s['eta'], rel=1e-5)
            assert (a['forwards'], a['backtracks']) == (s['forwards'], s['backtracks'])
    assert single['record'][-1]['f_w'] < single['record'][0]['f_w'] - 0.3       # it learns
    for k in single['params']:
        torch.testing.assert_close(r0['params'][k], single['params'][k], rtol=0, atol=1e-5)


def test_fsdp2_sharded_muon_resumes_exactly_through_distributed_checkpoint(fsdp_saved):
    """A torch.distributed.checkpoint of model and optimizer (the momentum buffers as sharded DTensors) after
    15 steps, loaded into fresh processes, continues bit-identically to the run that was not stopped."""
    from fsdp_worker import spawn
    name, out, saved = fsdp_saved
    resumed = spawn(out, 'resume', name)
    for a, b in zip(saved, resumed):
        assert a['record'][15:] == b['record']
        assert all(torch.equal(a['params'][k], b['params'][k]) for k in a['params'])
