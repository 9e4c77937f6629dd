"""
Distributed (multi-process) training: under torchrun train.py runs DDP, set up as in nanoGPT
(init_process_group, the DDP wrapper), or FSDP2 with --fsdp=True (each transformer block and the root
fully_shard-ed). The process group's setup, FSDP2's sharding, the mean over ranks and the end of a run; the
checkpoints of either are trainer/checkpoint.py's.
"""
import os
import sys

import torch
from torch.distributed import destroy_process_group

from configurator import fail


def init(device, backend):
    """nanoGPT's DDP setup: under torchrun (RANK set) the process group (gloo on CPU: nccl needs CUDA) and
    this rank's device. Returns (ddp, rank, local_rank, world_size, device)."""
    if int(os.environ.get('RANK', -1)) == -1:
        return False, 0, 0, 1, device
    if 'cuda' not in device:
        backend = 'gloo'
    if not torch.distributed.is_initialized(): # bench.py sets up several runs in one process group
        torch.distributed.init_process_group(backend=backend)
    rank, local_rank = int(os.environ['RANK']), int(os.environ['LOCAL_RANK'])
    if 'cuda' in device:
        device = f'cuda:{local_rank}'
        torch.cuda.set_device(device)
    return True, rank, local_rank, int(os.environ['WORLD_SIZE']), device


def shard(model):
    """FSDP2: fully_shard each transformer block, then the root. The root reshards after its forward as well
        (reshard_after_forward=True; by default the root keeps its parameters gathered for the backward): the
        line search's no-grad trial forwards have no backward, and the optimizer moves the local shards in
        place between them, so every forward must gather the shards anew. First every rank takes rank 0's
        weights, as DDP's wrapper
    does: train.py seeds each rank differently before building the model, and fully_shard keeps each rank's
        own slice, which would start the run from a mix of inits instead of the one a single process draws."""
    for t in model.state_dict().values():
        torch.distributed.broadcast(t, src=0)
    from torch.distributed.fsdp import fully_shard   # with DTensor about 0.8 s to import: only when sharding
    for block in model.transformer.h:
        fully_shard(block)
    fully_shard(model, reshard_after_forward=True)


def is_fsdp(model) -> bool:
    """Whether model was fully_shard-ed; torch.distributed.fsdp is imported only by shard()."""
    fsdp = sys.modules.get('torch.distributed.fsdp')
    return fsdp is not None and isinstance(model, fsdp.FSDPModule)


def mean_over_ranks(value, device):
    """The mean of a python float over all ranks, the same on each (FSDP2: every rank evaluates)."""
    mean = torch.tensor(value, device=device)
    torch.distributed.all_reduce(mean)
    return mean.item() / torch.distributed.get_world_size()


def finish_ddp(raw_model, master_process, finish_wandb=False, sharded=False):
    """The end of a DDP run, on every rank: check that all ranks hold the same parameters, tear the process
    group down, and leave the process (os._exit(0); exit 1 with a one-line error if the ranks disagree).
    sharded (FSDP2): the ranks hold different shards, so there is nothing to compare."""
    # safety check: every rank must end with the same parameters (DDP averages the gradients; the line search
    # takes the same eta everywhere only because it all-reduces its losses). float64 sum, compared MIN vs MAX.
    ranks_agree = True
    if not sharded:
        checksum = torch.stack([p.detach().double().sum() for p in raw_model.parameters()]).sum().reshape(1)
        lo, hi = checksum.clone(), checksum.clone()
        torch.distributed.all_reduce(lo, op=torch.distributed.ReduceOp.MIN)
        torch.distributed.all_reduce(hi, op=torch.distributed.ReduceOp.MAX)
        ranks_agree = lo.item() == hi.item()
        if master_process:
            print(f"ddp param checksum: {hi.item():.17g} (ranks agree: {ranks_agree})")
    torch.distributed.barrier() # every rank is done with the group before any tears it down
    destroy_process_group()
    if not ranks_agree:
        fail(f"DDP ranks ended with different parameters (checksums {lo.item():.17g} .. {hi.item():.17g})")
    # gloo's worker threads can still abort the interpreter's own teardown afterwards ("terminate called
    # without an active exception", exit code 1, seen now and then on CPU after a complete run): the run is
    # done and its files are closed, so leave without that teardown
    if finish_wandb:
        import wandb
        wandb.finish()
    sys.stdout.flush(); sys.stderr.flush()
    os._exit(0)
