"""
Distributed (multi-process) training helpers for train.py. Under torchrun train.py runs DDP, set up as in
nanoGPT (init_process_group, the DDP wrapper), or FSDP2 with --fsdp=True: each transformer block and the root
fully_shard-ed, checkpoints written and read with torch.distributed.checkpoint (DCP). What is more than
nanoGPT's setup and teardown lives here.

FSDP2 checkpoints: every rank writes its shards of the model and the optimizer to out_dir/ckpt_dcp_<iter>/ (DCP),
then rank 0 writes out_dir/ckpt.pt (atomically) with everything else (config, model_args, iter_num, every rank's
RNG state, ...) and the name of that directory under 'dcp'; older ckpt_dcp_* directories are removed after.
A run killed while saving leaves ckpt.pt naming the previous, complete directory.
"""
import glob
import os
import shutil
import sys

import torch
from torch.distributed import destroy_process_group

import checkpoint as ckpt_io
from configurator import fail


def shard(model):
    """FSDP2: fully_shard each transformer block, then the root. The root reshards after its forward as well
    (reshard_after_forward=True; by default the root keeps its parameters gathered for the backward): the line
    search's no-grad trial forwards have no backward, and the optimizer moves the local shards in place between
    them, so every forward must gather the shards anew. First every rank takes rank 0's weights, as DDP's wrapper
    does: train.py seeds each rank differently before building the model, and fully_shard keeps each rank's own
    slice, which would start the run from a mix of inits instead of the one a single process draws."""
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


def save_checkpoint(model, optimizer, checkpoint, out_dir):
    """train.py's checkpoint: `checkpoint` is the dict of everything but the model and the optimizer. Under FSDP2
    (a fully_shard-ed `model`, not the compiled wrapper) every rank calls it and writes its shards with DCP, then
    rank 0 ckpt.pt naming them (module docstring); otherwise one process writes ckpt.pt with both state_dicts.
    Either way ckpt.pt is written atomically (checkpoint.py)."""
    if not is_fsdp(model):
        ckpt_io.save(dict(checkpoint, model=model.state_dict(), optimizer=optimizer.state_dict()),
                     os.path.join(out_dir, 'ckpt.pt'))
        return
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict
    name = f"ckpt_dcp_{checkpoint['iter_num']}"
    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save({'model': model_sd, 'optimizer': optim_sd}, checkpoint_id=os.path.join(out_dir, name))
    torch.distributed.barrier() # every shard is written before ckpt.pt names the directory
    if torch.distributed.get_rank() == 0:
        ckpt_io.save(dict(checkpoint, dcp=name), os.path.join(out_dir, 'ckpt.pt'))
        for old in glob.glob(os.path.join(out_dir, 'ckpt_dcp_*')):
            if os.path.basename(old) != name:
                shutil.rmtree(old, ignore_errors=True)
    torch.distributed.barrier()


def load_optimizer(model, optimizer, checkpoint, out_dir):
    """Resume the optimizer from train.py's `checkpoint` (ckpt.pt, loaded). An FSDP2 checkpoint (it names its DCP
    directory under 'dcp'): this rank's shards of the model and the optimizer, from out_dir/<that name>; otherwise
    the optimizer's state_dict (the model's weights were loaded before sharding, as in nanoGPT)."""
    if not checkpoint.get('dcp'):
        optimizer.load_state_dict(checkpoint['optimizer'])
        return
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
    model_sd, optim_sd = get_state_dict(model, optimizer)
    state = {'model': model_sd, 'optimizer': optim_sd}
    dcp.load(state, checkpoint_id=os.path.join(out_dir, checkpoint['dcp']))
    set_state_dict(model, optimizer, model_state_dict=state['model'], optim_state_dict=state['optimizer'])


def mean_over_ranks(value, device):
    """The mean of a python float over all ranks, the same on each (FSDP2: every rank evaluates)."""
    mean = torch.tensor(value, device=device)
    torch.distributed.all_reduce(mean)
    return mean.item() / torch.distributed.get_world_size()


def load_sharded_weights(model, path):
    """The whole model's weights from an FSDP2 checkpoint directory, in one process (sample.py)."""
    import torch.distributed.checkpoint as dcp
    state = {'model': model.state_dict()}
    dcp.load(state, checkpoint_id=path) # fills the tensors in place, gathering every rank's shards
    model.load_state_dict(state['model'])


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
    # gloo's worker threads can still abort the interpreter's own teardown afterwards ("terminate called without
    # an active exception", exit code 1, seen now and then on CPU after a complete run): the run is done and its
    # files are closed, so leave without that teardown
    if finish_wandb:
        import wandb
        wandb.finish()
    sys.stdout.flush(); sys.stderr.flush()
    os._exit(0)
