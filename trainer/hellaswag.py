"""
HellaSwag validation accuracy of a GPT-2 BPE model, for train.py's evals (R. Zellers, A. Holtzman, Y. Bisk,
A. Farhadi, Y. Choi, "HellaSwag: Can a Machine Really Finish Your Sentence?", 2019).

Scored as llm.c's dev/data/hellaswag.py and modded-nanogpt's evals/hellaswag.py: each item's context is
followed by each of its 4 endings (" " + ending, GPT-2 BPE); the model's cross-entropy over the ending's
tokens only is averaged per ending, and the ending with the lowest mean loss is the prediction (`acc`,
"acc_norm" in their words); `acc_sum` takes the lowest summed loss instead. A context too long for block_size
is cut from the left. Several items share a forward (up to batch_tokens model inputs), their rows
right-padded and the padding masked out of the losses: each item scores as it would alone.
The items: the official validation jsonl (one JSON object per line with ctx, endings, label, ...), read from a
local file: `python data/hellaswag/prepare.py` downloads it once.

Reference numbers, all 10,042 items (llm.c's dev/data/hellaswag.py docstring, github.com/karpathy/llm.c):
GPT-2 124M scores 29.55 % by this rule (`acc`; 28.59 % by `acc_sum`), GPT-2 XL 48.93 % (38.42 %); EleutherAI's
lm-evaluation-harness reports acc_norm 31.14 % (acc 28.92 %) for 124M and 50.89 % (40.04 %) for XL. Two causes
(github.com/EleutherAI/lm-evaluation-harness): its acc_norm divides each ending's summed log-likelihood by the
ending's length in characters (len() of the str; its acc_bytes by UTF-8 bytes), not by its tokens
(lm_eval/api/task.py, process_results of multiple_choice: lls / completion_len), and its prompt is another:
"activity_label: ctx_a Ctx_b" with WikiHow's bracketed artifacts removed from context and endings
(lm_eval/tasks/hellaswag/utils.py), so that even its acc, a summed log-likelihood too, is not `acc_sum`.
"""
import json
import time

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
    """(tokens (4, T) long, mask (4, T): 1 on the ending's tokens, label) for one item; rows zero-padded to
    the longest, each cut from the left to block_size + 1 tokens (the model sees block_size, predicts the
    next)."""
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
    """Per row: (the summed, the mean) cross-entropy of the targets where mask is 1; logits (R, T, V) predict
    targets (R, T) position by position."""
    losses = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction='none')
    losses = losses.view(targets.shape)
    total = (losses * mask).sum(1)
    return total, total / mask.sum(1)


def item_losses(model, tokens, mask, ctx):
    """completion_losses of render()ed rows (one item's 4, or a collate()d batch's 4 per item) under `model`
    (called as model(idx, targets) -> logits, loss), in the autocast context ctx."""
    x, y = tokens[:, :-1], tokens[:, 1:].contiguous() # the model predicts token t+1 from tokens ..t
    with ctx:
        logits, _ = model(x, y) # targets given: logits at every position
    return completion_losses(logits, y, mask[:, 1:].float())


def collate(items):
    """(tokens (4B, T), mask (4B, T), labels (B,)) of B render()ed items: their rows stacked in order, each
    zero-padded on the right to the batch's longest row, with mask 0 on the padding (so it adds no loss)."""
    T = max(tokens.shape[1] for tokens, _, _ in items)
    pad = lambda a: F.pad(a, (0, T - a.shape[1])) # right: the causal model's logits before it stay the same
    return (torch.cat([pad(tokens) for tokens, _, _ in items]), torch.cat([pad(m) for _, m, _ in items]),
            torch.tensor([label for _, _, label in items]))


def batches(rendered, batch_tokens):
    """(start, stop) of consecutive runs of `rendered`, each as many items as keep 4 rows x the run's longest
    model input (row length - 1) within batch_tokens, and at least one item."""
    runs, start, T = [], 0, 0
    for i, (tokens, _, _) in enumerate(rendered):
        T_i = tokens.shape[1] - 1
        if i > start and 4 * (i + 1 - start) * max(T, T_i) > batch_tokens:
            runs.append((start, i))
            start, T = i, 0
        T = max(T, T_i)
    return runs + [(start, len(rendered))] if rendered else runs


BATCH_TOKENS = 4 * 4 * 1024 # 4 items x 4 rows of GPT-2's 1024: logits of about a training micro-batch
PROGRESS_ITEMS = 500 # an eval of more items prints a line on rank 0 at each tenth; train.py's tests none
PROGRESS_PARTS = 10 # tenths: a line after each but the last, which train.py's eval line reports


@torch.no_grad()
def evaluate(model, rendered, device, ctx, rank=0, world_size=1, lockstep=False, batch_tokens=BATCH_TOKENS):
    """Accuracy of `model` (a model.py GPT, or a wrapper with its forward) on `rendered` (render()'s
    tuples): this rank scores items rank::world_size, several per forward (batches(): up to batch_tokens
    model inputs; collate(): the padding masked out, so each item scores as alone); the counts are summed
    over ranks when torch.distributed is initialised. lockstep (FSDP2, where each forward is a collective):
    every rank runs as many forwards as the rank with the most batches, a rank short of one runs item 0
    uncounted. Past PROGRESS_ITEMS items rank 0 prints its progress now and then. Returns dict(acc (lowest
    mean loss), acc_sum (lowest summed loss), n). Runs in eval mode and restores the mode it found."""
    was_training = model.training
    model.eval()
    counts = torch.zeros(3, dtype=torch.long, device=device) # correct by mean loss, correct by sum, items
    mine = rendered[rank::world_size]
    runs = batches(mine, batch_tokens)
    # every rank holds every rank's items: each works out the most batches of any rank without a collective
    n_forwards = (max(len(batches(rendered[r::world_size], batch_tokens)) for r in range(world_size))
                  if lockstep else len(runs))
    report = rank == 0 and len(rendered) > PROGRESS_ITEMS
    t0, reported = time.time(), 0 # the parts reported so far
    for i in range(n_forwards):
        start, stop = runs[i] if i < len(runs) else (None, None)
        tokens, mask, labels = collate(mine[start:stop] if start is not None else rendered[:1])
        total, mean = item_losses(model, tokens.to(device), mask.to(device), ctx)
        if start is None:
            continue
        labels = labels.to(device)
        counts[0] += (mean.view(-1, 4).argmin(1) == labels).sum()
        counts[1] += (total.view(-1, 4).argmin(1) == labels).sum()
        counts[2] += stop - start
        part = stop * PROGRESS_PARTS // len(mine) # the parts of rank 0's items done
        if report and reported < part < PROGRESS_PARTS:
            reported = part
            done_mean, _, done = counts.tolist()
            share = f" (rank 0's share of {len(rendered)})" if world_size > 1 else ""
            print(f"hellaswag: {done}/{len(mine)} items{share}, acc {done_mean / done:.4f} so far, "
                  f"{time.time() - t0:.0f}s", flush=True) # flush: torchrun's piped stdout would hold it back
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(counts)
    model.train(was_training)
    correct_mean, correct_sum, n = counts.tolist()
    return dict(acc=correct_mean / max(n, 1), acc_sum=correct_sum / max(n, 1), n=n)
