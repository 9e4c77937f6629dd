"""
HellaSwag validation accuracy of a GPT-2 BPE model, for train.py's evals (R. Zellers, A. Holtzman, Y. Bisk,
A. Farhadi, Y. Choi, "HellaSwag: Can a Machine Really Finish Your Sentence?", 2019).

Scored as llm.c's and modded-nanogpt's evals/hellaswag.py: each item's context is followed by each of its 4
endings (" " + ending, GPT-2 BPE); the model's cross-entropy over the ending's tokens only is averaged per ending,
and the ending with the lowest mean loss is the prediction (`acc`, "acc_norm" in their words); `acc_sum` takes the
lowest summed loss instead. A context too long for block_size is cut from the left.
The items: the official validation jsonl (one JSON object per line with ctx, endings, label, ...), read from a
local file: `python data/hellaswag/prepare.py` downloads it once.
"""
import json

import torch
from torch.nn import functional as F


def load_items(path, n_items=0):
    """The first n_items (0 = all) items of a HellaSwag jsonl file as dicts with ctx, endings (4), label.
    A malformed line is a ValueError naming it."""
    items = []
    with open(path, encoding='utf-8') as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                ok = (isinstance(item['ctx'], str) and len(item['endings']) == 4 and
                      all(isinstance(e, str) for e in item['endings']) and int(item['label']) in range(4))
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{i} is not a HellaSwag item ({type(e).__name__}: {e})") from None
            if not ok:
                raise ValueError(f"{path}:{i} is not a HellaSwag item (needs ctx, 4 endings, label 0-3)")
            items.append(dict(ctx=item['ctx'], endings=item['endings'], label=int(item['label'])))
            if n_items and len(items) == n_items:
                break
    if not items:
        raise ValueError(f"{path} holds no HellaSwag items")
    return items


def render(item, enc, block_size):
    """(tokens (4, T) long, mask (4, T): 1 on the ending's tokens, label) for one item; rows zero-padded to the
    longest, each cut from the left to block_size + 1 tokens (the model sees block_size, predicts the next)."""
    ctx = enc.encode_ordinary(item['ctx'])
    rows, masks = [], []
    for ending in item['endings']:
        end = enc.encode_ordinary(' ' + ending) # GPT-2's tokens start with their space
        toks, mask = (ctx + end)[-(block_size + 1):], ([0] * len(ctx) + [1] * len(end))[-(block_size + 1):]
        rows.append(toks)
        masks.append(mask)
    T = max(map(len, rows))
    tokens = torch.zeros(4, T, dtype=torch.long)
    mask = torch.zeros(4, T, dtype=torch.long)
    for i, (toks, m) in enumerate(zip(rows, masks)):
        tokens[i, :len(toks)] = torch.tensor(toks)
        mask[i, :len(m)] = torch.tensor(m)
    return tokens, mask, item['label']


def completion_losses(logits, targets, mask):
    """Per row: (the summed, the mean) cross-entropy of the targets where mask is 1; logits (4, T, V) predict
    targets (4, T) position by position."""
    losses = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction='none').view(targets.shape)
    total = (losses * mask).sum(1)
    return total, total / mask.sum(1)


def item_losses(model, tokens, mask, ctx):
    """completion_losses of one render()ed item under `model` (called as model(idx, targets) -> logits, loss),
    in the autocast context ctx."""
    x, y = tokens[:, :-1], tokens[:, 1:].contiguous() # the model predicts token t+1 from tokens ..t
    with ctx:
        logits, _ = model(x, y) # targets given: logits at every position
    return completion_losses(logits, y, mask[:, 1:].float())


@torch.no_grad()
def evaluate(model, rendered, device, ctx, rank=0, world_size=1, lockstep=False):
    """Accuracy of `model` (a model.py GPT, or a wrapper with its forward) on `rendered` (render()'s tuples):
    this rank scores items rank::world_size, the counts are summed over ranks when torch.distributed is
    initialised. lockstep (FSDP2, where each forward is a collective): every rank runs as many forwards, a rank
    short of an item repeats one uncounted. Returns dict(acc (lowest mean loss), acc_sum (lowest summed loss),
    n). Runs in eval mode and restores the mode it found."""
    was_training = model.training
    model.eval()
    counts = torch.zeros(3, dtype=torch.long, device=device) # correct by mean loss, correct by sum, items
    mine = rendered[rank::world_size]
    for i in range(-(-len(rendered) // world_size) if lockstep else len(mine)):
        tokens, mask, label = mine[i] if i < len(mine) else rendered[0]
        total, mean = item_losses(model, tokens.to(device), mask.to(device), ctx)
        if i >= len(mine):
            continue
        counts[0] += int(mean.argmin()) == label
        counts[1] += int(total.argmin()) == label
        counts[2] += 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(counts)
    model.train(was_training)
    correct_mean, correct_sum, n = counts.tolist()
    return dict(acc=correct_mean / max(n, 1), acc_sum=correct_sum / max(n, 1), n=n)
