"""Worker for tests/test_alsals.py::test_ddp_ranks_end_identical (torch.multiprocessing.spawn pickles the
function by module name, which a pytest module in importlib mode does not have)."""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import alsals  # noqa: E402


def groups(m, wd=0.1):
    return [{'params': [p for p in m.parameters() if p.dim() == 2], 'weight_decay': wd},
            {'params': [p for p in m.parameters() if p.dim() < 2], 'weight_decay': 0.0}]


def data(seed=0, n=64):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 10, generator=g)
    return X, torch.sin(X[:, :1] * 2) + 0.1 * torch.randn(n, 1, generator=g)


class PerturbedSlope(alsals.ALSALS):
    """ALSALS whose own f_a is off by a relative `perturb` (as on mixed hardware or with a
    non-deterministic kernel): decisions must still agree because they read only reduced numbers."""
    perturb = 0.0

    def _slope(self, parts):
        return super()._slope(parts) * (1 + self.perturb)


def worker(rank, world, port, out, perturb=0.0):
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 1))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    PerturbedSlope.perturb = perturb if rank == 1 else 0.0
    opt = PerturbedSlope(groups(model), lr=0.5, warmup_steps=5, ema_warmup_steps=3)
    X, Y = data(seed=rank)  # different data on each rank
    backtracks = 0
    for it in range(60):
        xb, yb = X[(it * 16) % 64:][:16], Y[(it * 16) % 64:][:16]
        if it < 5:
            for g in opt.param_groups:
                g['lr'] = 0.5 * (it + 1) / 5
        loss = F.mse_loss(ddp(xb), yb)
        opt.zero_grad()
        loss.backward()
        with torch.no_grad():
            opt.step(closure=lambda: F.mse_loss(ddp(xb), yb), loss=loss.detach())
        backtracks += opt.last_stats['backtracks']
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double()
    torch.save({'params': flat, 'eta': opt.eta, 'backtracks': backtracks}, os.path.join(out, f'rank{rank}.pt'))
    dist.destroy_process_group()
