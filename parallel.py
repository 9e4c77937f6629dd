"""
Distributed (multi-process) training helpers for train.py. Under torchrun train.py runs DDP, set up as in
nanoGPT (init_process_group, the DDP wrapper); what is more than nanoGPT's setup and teardown lives here.
"""
import os
import sys

import torch
from torch.distributed import destroy_process_group

from configurator import fail


def finish_ddp(raw_model, master_process, finish_wandb=False):
    """The end of a DDP run, on every rank: check that all ranks hold the same parameters, tear the process
    group down, and leave the process (os._exit(0); exit 1 with a one-line error if the ranks disagree)."""
    # safety check: every rank must end with the same parameters (DDP averages the gradients; the line search
    # takes the same eta everywhere only because it all-reduces its losses). float64 sum, compared MIN vs MAX.
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
    # gloo's worker threads can still abort the interpreter's own teardown afterwards ("terminate called without
    # an active exception", exit code 1, seen now and then on CPU after a complete run): the run is done and its
    # files are closed, so leave without that teardown
    if finish_wandb:
        import wandb
        wandb.finish()
    sys.stdout.flush(); sys.stderr.flush()
    os._exit(0)
