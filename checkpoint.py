"""
Checkpoint I/O shared by train.py, sample.py and bench.py, and the RNG state that checkpoints and the line
search's trial closure (train.py's replay_closure) save and restore.

Writes are atomic (temp file in the same directory, fsync, os.replace), so a kill -9 while saving leaves the
previous checkpoint intact. Reads use torch.load(weights_only=True): checkpoints hold only tensors and plain
python values (config, RNG states as uint8 tensors), so loading one never executes pickled code. A
dataset's meta.pkl (nanoGPT's format, written by the prepare scripts) is read the same way: plain values only.
"""
import glob
import os
import pickle
import sys
import tempfile

import torch


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
        sys.exit(f"error: no checkpoint at {path} (train one first, or check out_dir)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        sys.exit(f"error: checkpoint {path} is corrupt or unreadable ({msg[:200]})")


def strip_compile_prefix(state_dict):
    # torch.compile's wrapper prefixes parameter names with '_orig_mod.'
    unwanted_prefix = '_orig_mod.'
    return {k[len(unwanted_prefix):] if k.startswith(unwanted_prefix) else k: v for k, v in state_dict.items()}


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
        cuda = cuda[torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.current_device() < len(cuda) else None
    if cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda.cpu())


def gather_rng_states():
    """Every rank's get_rng_state(), in rank order (one all_gather_object; under DDP every rank must call it)."""
    state = get_rng_state()
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [state]
    states = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(states, state)
    return states


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module, name):  # called for every class or function a pickle names: allow none
        raise pickle.UnpicklingError(f"{module}.{name} is not a plain value")


def load_meta(path):
    """A dataset's meta.pkl (vocab_size, stoi, itos): dicts, lists, str, int and float only, or exit with a
    one-line error naming the file. A pickle that would import anything (and so could run code) is refused."""
    try:
        with open(path, 'rb') as f:
            meta = _PlainUnpickler(f).load()
    except Exception as e:
        sys.exit(f"error: {path} is not a plain-values meta.pkl ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})")
    if not isinstance(meta, dict) or not isinstance(meta.get('vocab_size'), int) or meta['vocab_size'] <= 0:
        sys.exit(f"error: {path} has no positive int 'vocab_size'")
    return meta
