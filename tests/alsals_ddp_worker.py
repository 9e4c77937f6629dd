"""Workers for tests/test_alsals.py's DDP tests (torch.multiprocessing.spawn pickles the
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


def teardown():
    """Both ranks wait here before either shuts gloo down. A rank that exited while the other was still
    shutting down aborted that one now and then in CI (SIGABRT, 'terminate called without an active
    exception'), after both had saved their results. Callers first drop their DDP wrapper: its reducer
    holds the process group, which is then destroyed here rather than during interpreter exit."""
    import torch.distributed as dist
    dist.barrier()
    dist.destroy_process_group()


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
    torch.save({'params': flat, 'eta': opt.eta, 'backtracks': backtracks}, os.path.join(out,
                                                                                        f'rank{rank}.pt'))
    del ddp
    teardown()


def range_test_worker(rank, world, port, out, _=None):
    """ALSALS started by its range test on 2 ranks with different data and 2 micro-batches of gradient
    accumulation per step (no_sync on the first, as train.py does): f(w) is this rank's mean over both."""
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 1))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = alsals.ALSALS(groups(model), lr=0.5, ramp=2.0, ramp_hold=4, ema_warmup_steps=2)
    X, Y = data(seed=rank)  # different data on each rank, each rank's full batch: a smooth loss to read
    # and a different scale: the ranks' own edges differ
    Y = Y * (1 + 2 * rank)
    micro = [(X[:32], Y[:32]), (X[32:], Y[32:])]
    local_f, seen_f, ends = [], [], []
    for it in range(40):
        opt.zero_grad()
        losses = []
        for j, (xb, yb) in enumerate(micro):
            with ddp.no_sync() if j == 0 else torch.enable_grad():
                loss = F.mse_loss(ddp(xb), yb)
                (loss / 2).backward()
            losses.append(loss.detach())
        closure = lambda: sum(F.mse_loss(ddp(xb), yb) for xb, yb in micro) / 2  # noqa: E731
        opt.step(closure=closure, loss=torch.stack(losses).mean())
        local_f.append(torch.stack(losses).mean().item())
        seen_f.append(opt.last_stats['f_w'])
        ends.append(bool(opt.last_stats.get('ramp_end')))
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double()
    torch.save({'params': flat, 'eta': opt.eta, 'local_f': local_f, 'seen_f': seen_f, 'ends': ends},
               os.path.join(out, f'rank{rank}.pt'))
    del ddp
    teardown()
