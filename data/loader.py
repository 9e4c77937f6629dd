"""
The training data, for train.py (and sample.py's meta.pkl): a dataset's checks, its seeded batches, and its
meta.pkl read without running code.

A dataset is a folder holding train.bin and val.bin (uint16 token ids, nanoGPT's format) and, for the
char-level ones, meta.pkl (vocab_size, stoi, itos). Batch number `index` of a split is drawn by a generator of
its own, seeded from (seed, rank, split, index): data order is reproducible, and resuming needs no sampler
state.
"""
import os
import pickle

import numpy as np
import torch

from configurator import fail


def check_data(data_dir, block_size):
    """Both splits exist and hold more than block_size tokens, or exit with a one-line error."""
    for split in ('train', 'val'):
        path = os.path.join(data_dir, f'{split}.bin')
        if not os.path.exists(path):
            fail(f"no data file {path}; prepare the dataset first (see README, e.g. python "
                 f"{os.path.join(data_dir, 'prepare.py')})")
        n_tokens = os.path.getsize(path) // 2
        if n_tokens <= block_size:
            fail(f"{path} holds {n_tokens} tokens, not more than block_size={block_size}")


def check_vocab(data_dir, vocab_size):
    """Every token id must index the embedding: checked once (one pass over the data), not per batch."""
    for split in ('train', 'val'):
        path = os.path.join(data_dir, f'{split}.bin')
        data = np.memmap(path, dtype=np.uint16, mode='r')
        top = max(int(data[i:i + 2**26].max()) for i in range(0, len(data), 2**26))
        if top >= vocab_size:
            fail(f"{path} holds token id {top}, but the model's vocab_size is {vocab_size}")


def mix_seed(*key):
    """A 63-bit seed from a tuple of ints, distinct keys giving unrelated seeds (numpy's SeedSequence;
    python's hash() would not do: hash((s, r, 1, -1)) == hash((s, r, 1, -2)) since hash(-1) == hash(-2))."""
    return int(np.random.SeedSequence([k % 2**64 for k in key]).generate_state(1, np.uint64)[0]) >> 1


def get_batch(data_dir, split, index, block_size, batch_size, device, seed, rank):
    """Batch number `index` of `split` (X, Y on `device`), drawn by its own generator seeded from
    (seed, rank, split, index). train.py's eval batches are the negative indices."""
    # We recreate np.memmap every batch to avoid a memory leak, as per
    # https://stackoverflow.com/questions/45132940/numpy-memmap-memory-usage-want-to-iterate-once/61472122
    data = np.memmap(os.path.join(data_dir, f'{split}.bin'), dtype=np.uint16, mode='r')
    g = torch.Generator().manual_seed(mix_seed(seed, rank, split == 'val', index))
    ix = torch.randint(len(data) - block_size, (batch_size,), generator=g)
    x = torch.stack([torch.from_numpy((data[i:i+block_size]).astype(np.int64)) for i in ix])
    y = torch.stack([torch.from_numpy((data[i+1:i+1+block_size]).astype(np.int64)) for i in ix])
    if 'cuda' in device:
        # pin arrays x,y, which allows us to move them to GPU asynchronously (non_blocking=True)
        x, y = x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    else:
        x, y = x.to(device), y.to(device)
    return x, y


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
        fail(f"{path} is not a plain-values meta.pkl ({type(e).__name__}: "
             f"{str(e).splitlines()[0][:200] if str(e) else ''})")
    if not isinstance(meta, dict) or not isinstance(meta.get('vocab_size'), int) or meta['vocab_size'] <= 0:
        fail(f"{path} has no positive int 'vocab_size'")
    return meta
