"""
Checkpoint I/O shared by train.py, sample.py and the export: ckpt.pt, and under FSDP2 the shards it names; the
RNG state that checkpoints and the line search's trial closure (trainer/step.py) save and restore; and what a
resume does besides loading the model and optimizer (its checks, the settings that apply, with notices, every
rank's RNG stream).

FSDP2 checkpoints: every rank writes its shards of the model and the optimizer to out_dir/ckpt_dcp_<iter>/
(DCP), then rank 0 writes out_dir/ckpt.pt (atomically) with everything else (config, model_args, iter_num,
every rank's RNG state, ...) and the name of that directory under 'dcp'; older ckpt_dcp_* directories are
removed after. A run killed while saving leaves ckpt.pt naming the previous, complete directory.

Writes are atomic (temp file in the same directory, fsync, os.replace), so a kill -9 while saving leaves the
previous checkpoint intact. Reads use torch.load(weights_only=True): checkpoints hold only tensors and plain
python values (config, RNG states as uint8 tensors), so loading one never executes pickled code (a dataset's
meta.pkl is read the same way: data/loader.py's load_meta).
"""
import glob
import os
import shutil
import tempfile

import torch

from configurator import fail
from data.loader import mix_seed
from trainer.distributed import is_fsdp


def save(obj, path):
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    for stale in glob.glob(os.path.join(d, '.' + glob.escape(os.path.basename(path)) + '.*.tmp')):
        os.remove(stale) # left by a save that was killed (-9) before its rename; one writer per out_dir
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp', dir=d)
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # a failed save (e.g. a full disk) must not leave a half-written file behind, nor touch `path`
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    try:  # make the rename itself durable
        dfd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def load(path, map_location='cpu'):
    """The checkpoint at `path`, or exit with a one-line error naming the file."""
    if not os.path.exists(path):
        fail(f"no checkpoint at {path} (train one first, or check out_dir)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        fail(f"checkpoint {path} is corrupt or unreadable ({msg[:200]})")


def load_model(out_dir, device='cpu'):
    """(the GPT of out_dir/ckpt.pt, the checkpoint dict) for sample.py and export_hf.py: the weights from
    ckpt.pt, or, for an FSDP2 run's checkpoint, from the DCP directory it names, read in this one process
    (parallel.py). A missing, corrupt or foreign checkpoint is a one-line error."""
    from model import GPTConfig, GPT
    ckpt_path = os.path.join(out_dir, 'ckpt.pt')
    checkpoint = load(ckpt_path, device)
    try:
        model = GPT(GPTConfig(**checkpoint['model_args']))
        if checkpoint.get('dcp'): # written by an FSDP2 run: the weights are its shards in out_dir/<dcp>/
            load_sharded_weights(model, os.path.join(out_dir, checkpoint['dcp']))
        else:
            model.load_state_dict(strip_compile_prefix(checkpoint['model']))
    except (KeyError, TypeError, RuntimeError) as e:
        fail(f"checkpoint {ckpt_path} does not hold a GPT model ({type(e).__name__}: "
             f"{str(e).strip().splitlines()[0][:200]})")
    return model, checkpoint


def strip_compile_prefix(state_dict):
    # torch.compile's wrapper prefixes parameter names with '_orig_mod.'
    unwanted_prefix = '_orig_mod.'
    return {k[len(unwanted_prefix):] if k.startswith(unwanted_prefix) else k: v for k,
            v in state_dict.items()}


def get_rng_state():
    """The torch RNG state that dropout draws from: the CPU generator and, when CUDA is in use, the current
    device's (only that one: a checkpoint must not depend on how many GPUs are visible)."""
    state = {'cpu': torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state):
    torch.set_rng_state(state['cpu'].cpu())
    cuda = state.get('cuda')
    if isinstance(cuda, (list, tuple)): # older checkpoints: every visible device's state
        here = torch.cuda.current_device() if torch.cuda.is_available() else len(cuda)
        cuda = cuda[here] if here < len(cuda) else None
    if cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda.cpu())


def gather_rng_states():
    """Every rank's get_rng_state(), in rank order (one all_gather_object: under DDP every rank calls it)."""
    state = get_rng_state()
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [state]
    states = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(states, state)
    return states


def restore_rng_states(states, rank, world_size, seed, iter_num):
    """On resume: each rank continues its own dropout RNG stream (`states`: a checkpoint's 'rng', one per
    rank); on another world size, a documented deterministic reseed from (seed, rank, iter_num)."""
    states = states if isinstance(states, list) else [states] # older checkpoints: rank 0's only
    if len(states) == world_size:
        set_rng_state(states[rank])
    else:
        print(f"note: the checkpoint holds the RNG states of {len(states)} ranks, this run has {world_size}: "
              f"dropout reseeded from (seed, rank, iter_num)")
        torch.manual_seed(mix_seed(seed, rank, iter_num))


def check_resumable(checkpoint, ckpt_path, optimizer, fsdp):
    """A checkpoint that this run cannot continue: another optimizer (its state would not fit), or written
    with the other fsdp setting (FSDP2 writes its shards with DCP, parallel.py): a one-line error naming the
    fix."""
    if checkpoint['config'].get('optimizer', 'adamw') != optimizer:
        fail(f"{ckpt_path} was trained with optimizer={checkpoint['config'].get('optimizer')!r}, not "
             f"{optimizer!r}")
    if bool(checkpoint.get('dcp')) != fsdp:
        fail(f"{ckpt_path} was written by a run with fsdp={not fsdp}: resume it with --fsdp={not fsdp}")


def resume_settings(optimizer, ls_kwargs, saved_config, config):
    """On resume, after the optimizer's state_dict is loaded: the line search's settings that are set
    (`ls_kwargs`) override the checkpoint's (load_state_dict restored its param groups), and each setting that
    changes the algorithm and differs from the checkpoint's run gets a one-line notice (the new value
    applies): the schedule's, and every ls_* that is set (against the optimizer's saved one)."""
    saved_group = dict(optimizer.param_groups[0]) # as the checkpoint's run left it
    for param_group in optimizer.param_groups:
        param_group.update(ls_kwargs)
    keys = ['warmup_iters', 'grad_clip', 'learning_rate', 'lr_decay_iters', 'min_lr', 'decay_lr',
            'lr_schedule', 'decay_frac']
    for k in keys + [k for k, v in config.items() if k.startswith('ls_') and v is not None]:
        if k.startswith('ls_'):
            old = saved_group.get(k[3:], saved_config.get(k))
        else:
            old = saved_config.get(k)
        if old is not None and old != config[k]:
            print(f"note: resuming with {k}={config[k]!r} (the checkpoint's run used {old!r})")


def save_checkpoint(model, optimizer, checkpoint, out_dir):
    """train.py's checkpoint: `checkpoint` is the dict of everything but the model and the optimizer. Under
    FSDP2 (a fully_shard-ed `model`, not the compiled wrapper) every rank calls it and writes its shards with
    DCP, then rank 0 ckpt.pt naming them (module docstring); otherwise one process writes ckpt.pt with both
    state_dicts. Either way ckpt.pt is written atomically (save)."""
    if not is_fsdp(model):
        save(dict(checkpoint, model=model.state_dict(), optimizer=optimizer.state_dict()),
             os.path.join(out_dir, 'ckpt.pt'))
        return
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict
    name = f"ckpt_dcp_{checkpoint['iter_num']}"
    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save({'model': model_sd, 'optimizer': optim_sd}, checkpoint_id=os.path.join(out_dir, name))
    torch.distributed.barrier() # every shard is written before ckpt.pt names the directory
    if torch.distributed.get_rank() == 0:
        save(dict(checkpoint, dcp=name), os.path.join(out_dir, 'ckpt.pt'))
        for old in glob.glob(os.path.join(out_dir, 'ckpt_dcp_*')):
            if os.path.basename(old) != name:
                shutil.rmtree(old, ignore_errors=True)
    torch.distributed.barrier()


def load_optimizer(model, optimizer, checkpoint, out_dir):
    """Resume the optimizer from train.py's `checkpoint` (ckpt.pt, loaded). An FSDP2 checkpoint (it names its
    DCP directory under 'dcp'): this rank's shards of the model and the optimizer, from out_dir/<that name>;
    otherwise the optimizer's state_dict (the model's weights were loaded before sharding, as in nanoGPT)."""
    if not checkpoint.get('dcp'):
        optimizer.load_state_dict(checkpoint['optimizer'])
        return
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
    model_sd, optim_sd = get_state_dict(model, optimizer)
    state = {'model': model_sd, 'optimizer': optim_sd}
    dcp.load(state, checkpoint_id=os.path.join(out_dir, checkpoint['dcp']))
    set_state_dict(model, optimizer, model_state_dict=state['model'], optim_state_dict=state['optimizer'])


def load_sharded_weights(model, path):
    """The whole model's weights from an FSDP2 checkpoint directory, in one process (sample.py)."""
    import torch.distributed.checkpoint as dcp
    state = {'model': model.state_dict()}
    dcp.load(state, checkpoint_id=path) # fills the tensors in place, gathering every rank's shards
    model.load_state_dict(state['model'])
