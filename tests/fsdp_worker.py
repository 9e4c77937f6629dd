"""Worker for the FSDP2 tests of tests/test_alsals.py and tests/test_muon.py (torch.multiprocessing.spawn
pickles the function by module name): a small GPT of model.py, fully_shard on each block and on the root,
stepped by a line-search optimizer or MuonAdamW on 2 gloo ranks; or the same model in one process on the same
global batch (world=1, no process group)."""
import os
import socket
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from trainer import distributed as parallel  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402

CONFIG = dict(block_size=16, vocab_size=32, n_layer=2, n_head=2, n_embd=16, dropout=0.0, bias=True)
# Muon's: 15 = 3 heads of 5, so the hidden matrices have 45, 15 and 60 rows: FSDP2's Shard(0) splits the odd
# ones unevenly (8 + 7 rows), as it does any matrix whose rows do not divide by the world size
MUON_CONFIG = dict(CONFIG, n_head=3, n_embd=15)
GLOBAL_BATCH = 8


def batch(it, rank, world):
    """This rank's share of global batch `it` (the same global batch whatever the world size)."""
    g = torch.Generator().manual_seed(1000 + it)   # a learnable sequence: mostly "next token = token + 1"
    V, T = CONFIG['vocab_size'], CONFIG['block_size'] + 1
    start = torch.randint(0, V, (GLOBAL_BATCH, 1), generator=g)
    noise = torch.randint(0, V, (GLOBAL_BATCH, T), generator=g) * (torch.rand(GLOBAL_BATCH, T,
                                                                              generator=g) < 0.2)
    data = (start + torch.arange(T) + noise) % V
    mine = data.chunk(world)[rank]
    return mine[:, :-1].contiguous(), mine[:, 1:].contiguous()


def build(world, optimizer='alsals', **opt_kw):
    torch.manual_seed(0)
    muon = optimizer in ('muon', 'muonsls')     # Muon's matrices (2-D, inside the blocks), AdamW's the rest
    model = GPT(GPTConfig(**(MUON_CONFIG if muon else CONFIG))).double()   # float64: Adam's normalisation
    if world > 1:                                                          # amplifies rounding differences
        # train.py's: each block and the root (which reshards after its forward too)
        parallel.shard(model)
    kw = {} if optimizer == 'muon' else dict(warmup_steps=5, ema_warmup_steps=3, max_grad_norm=1.0)
    if optimizer == 'muonsls':
        # eta's first guess grows fast: the search backtracks (Muon's default never does here)
        kw['b'] = 4.0
    kw.update(opt_kw, **(dict(adamw_lr=3e-3) if muon else {}))
    opt = model.configure_optimizers(0.1, 3e-2, (0.9, 0.95), 'cpu', optimizer, **kw)
    return model, opt


def train(model, opt, rank, world, start, stop, record):
    for it in range(start, stop):
        X, Y = batch(it, rank, world)
        if it < 5:
            for g in opt.param_groups:
                g['lr'] = 3e-2 * g.get('lr_scale', 1.0) * (it + 1) / 5
        _, loss = model(X, Y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if not hasattr(opt, 'last_stats'):                    # MuonAdamW: no search; f(w), all ranks' mean
            f_w = loss.detach().clone()
            if world > 1:
                torch.distributed.all_reduce(f_w)
            from torch.distributed.tensor.debug import CommDebugMode
            with CommDebugMode() as comm:                     # counts DTensor's collectives (not FSDP2's own)
                opt.step()
            gathers = comm.get_comm_counts().get(torch.ops.c10d_functional.all_gather_into_tensor, 0)
            record.append(dict(f_w=f_w.item() / world, gathers=gathers))
            continue
        opt.step(closure=lambda: model(X, Y)[1], loss=loss.detach())
        st = opt.last_stats
        record.append(dict(eta=opt.eta, f_w=st['f_w'], forwards=st['forwards'], backtracks=st['backtracks'],
                           warmup=st['warmup']))


def spawn(tmp_path, mode, optimizer='alsals'):
    """worker() on 2 gloo ranks (processes); returns each rank's record and parameters. A hang (the ranks
    disagreeing on the number of collectives) fails after 180 s."""
    import pytest
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    ctx = torch.multiprocessing.start_processes(worker, args=(2, port, str(tmp_path), mode, optimizer),
                                                nprocs=2, join=False, start_method='spawn')
    deadline = time.time() + 180
    while not ctx.join(timeout=1):
        if time.time() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("FSDP2 ranks hung: they disagreed on the number of collectives")
    return [torch.load(os.path.join(tmp_path, f'{mode}_rank{r}.pt'), weights_only=True) for r in (0, 1)]


def worker(rank, world, port, out, mode='run', optimizer='alsals'):
    """mode 'run': 30 steps; 'save': the same 30 steps, with a torch.distributed.checkpoint of model and
    optimizer after 15; 'resume': load that checkpoint, then steps 15-30. Writes out/<mode>_rank<r>.pt."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
    if world > 1:
        os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
        dist.init_process_group('gloo', rank=rank, world_size=world)
    model, opt = build(world, optimizer)
    record = []
    ckpt = os.path.join(out, 'dcp')
    if mode == 'resume':
        msd, osd = get_state_dict(model, opt)
        state = {'model': msd, 'optim': osd}
        dcp.load(state, checkpoint_id=ckpt)
        set_state_dict(model, opt, model_state_dict=state['model'], optim_state_dict=state['optim'])
        train(model, opt, rank, world, 15, 30, record)
    else:
        train(model, opt, rank, world, 0, 15 if mode == 'save' else 30, record)
        if mode == 'save':
            msd, osd = get_state_dict(model, opt)
            dcp.save({'model': msd, 'optim': osd}, checkpoint_id=ckpt)
            train(model, opt, rank, world, 15, 30, record)
    full = {k: (v.full_tensor() if hasattr(v, 'full_tensor') else v).detach().clone()
            for k, v in model.state_dict().items()}
    torch.save(dict(record=record, params=full), os.path.join(out, f'{mode}_rank{rank}.pt'))
    # both ranks wait before either shuts gloo down, as tests/alsals_ddp_worker.py's teardown()
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
