"""
The training step train.py's loop calls, with everything it needs as arguments: the lr schedule, the loss
estimate, the line search's trial closure and the step itself (forward and backward over the micro-batches,
then the optimizer).
"""
import math

import torch

from trainer.checkpoint import get_rng_state, set_rng_state
from trainer.distributed import mean_over_ranks


def wsd_lr(it, learning_rate, start_at, lr_decay_iters, to, frac):
    """learning_rate, then linear down to `to` * learning_rate over the last frac of lr_decay_iters (not
    before start_at, the end of the warmup)"""
    start = max(start_at, (1.0 - frac) * lr_decay_iters)
    if frac == 0 or it < start:
        return learning_rate
    progress = min(1.0, (it - start) / max(1.0, lr_decay_iters - start))
    return learning_rate * (1.0 - progress * (1.0 - to))


def ls_lr_base(config):
    """---- line search ---- the lr its schedule scales after the warmup, and its warmup's target: ls_lr
    (learning_rate if unset); with the range test (no lr read) 1."""
    if config['ls_range_test']:
        return 1.0
    return config['learning_rate'] if config['ls_lr'] is None else config['ls_lr']


def get_lr(it, config, line_search):
    """The learning rate at iteration it: nanoGPT's warmup and cosine decay (or warmup-stable-decay). The line
    search replaces the schedule after its warmup: there the lr scales its applied step."""
    c = config
    # 1) linear warmup for warmup_iters steps (---- line search ---- unless its range test replaces it)
    if it < c['warmup_iters'] and not c['ls_range_test']:
        return (ls_lr_base(c) if line_search else c['learning_rate']) * (it + 1) / (c['warmup_iters'] + 1)
    # ---- line search ---- after its warmup, lr scales the applied step (eta * lr/lr_0): constant, then
    # linear to ls_anneal_to of it over the last ls_anneal_frac of lr_decay_iters (0 = the paper); a
    # fraction, not min_lr, so that a first guess does not set the anneal's depth. With the range test no lr
    # is read, so the schedule is the bare factor (1, then down): lr/lr_0 is that factor bit for bit
    if line_search:
        return wsd_lr(it, ls_lr_base(c), c['warmup_iters'], c['lr_decay_iters'], c['ls_anneal_to'],
                      c['ls_anneal_frac'])
    # 2) from lr_decay_iters on, return min learning rate (>=: lr_decay_iters == warmup_iters: no 0 / 0)
    if it >= c['lr_decay_iters']:
        return c['min_lr']
    # 3) wsd: learning_rate, then linear to min_lr over the last decay_frac of lr_decay_iters (the cooldown of
    # modded-nanogpt, nanochat's warmdown, torchtitan's decay_ratio)
    if c['lr_schedule'] == 'wsd':
        return wsd_lr(it, c['learning_rate'], c['warmup_iters'], c['lr_decay_iters'],
                      c['min_lr'] / c['learning_rate'], c['decay_frac'])
    # 3) cosine: in between, use cosine decay down to min learning rate
    decay_ratio = (it - c['warmup_iters']) / (c['lr_decay_iters'] - c['warmup_iters'])
    assert 0 <= decay_ratio <= 1
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio)) # coeff ranges 0..1
    return c['min_lr'] + coeff * (c['learning_rate'] - c['min_lr'])


@torch.no_grad()
def estimate_loss(model, get_batch, eval_iters, ctx, fsdp=False, device='cpu'):
    """The mean loss of eval_iters fixed batches of each split (the same batches every time)."""
    out = {}
    model.eval()
    for split in ['train', 'val']:
        losses = torch.zeros(eval_iters)
        for k in range(eval_iters):
            X, Y = get_batch(split, -1 - k)
            with ctx:
                logits, loss = model(X, Y)
            losses[k] = loss.item()
        out[split] = losses.mean().item()
        if fsdp: # every rank evaluates (each forward is a collective): the mean over ranks, the same on each
            out[split] = mean_over_ranks(out[split], device)
    model.train()
    return out


def replay_closure(model, batches, ctx):
    """---- line search ---- the trial closure: f(w + eta*d) on the micro-batches just trained on, with the
    same dropout masks. The mean loss on [(X, Y, RNG state before its training forward)], no autograd: at w it
    is f(w) bit for bit."""
    @torch.no_grad()
    def closure():
        saved, losses = get_rng_state(), []
        for X, Y, rng_state in batches:
            set_rng_state(rng_state)
            with ctx:
                losses.append(model(X, Y)[1].float())
        set_rng_state(saved) # the training loop's own RNG stream goes on undisturbed
        return torch.stack(losses).mean() # reduced as train_step reduces f(w)
    return closure


def train_step(X, Y, iter_num, *, model, optimizer, get_batch, accum, ctx, scaler, grad_clip, line_search,
               n_trial, world_size):
    """One training iteration from (X, Y), batch number iter_num * accum. Returns the next X, Y, the step's
    mean
    loss (a device tensor, over micro-batches and ranks) and whether the update was applied (not on a
        non-finite loss or gradient: then parameters and optimizer state are left as they were). world_size >
        1: DDP (or FSDP2)."""
    ddp = world_size > 1
    # forward backward update, with optional gradient accumulation to simulate larger batch size
    # and using the GradScaler if data type is float16
    losses = [] # detached micro-batch losses (f(w))
    trial_batches = [] # ---- line search ---- the trial's micro-batches: (X, Y, RNG state)
    for micro_step in range(accum):
        if ddp:
            # in DDP training we only need to sync gradients at the last micro step.
            # the official way to do this is with model.no_sync() context manager, but
            # I really dislike that this bloats the code and forces us to repeat code
            # looking at the source of that context manager, it just toggles this variable
            model.require_backward_grad_sync = (micro_step == accum - 1)
        # ---- line search ---- the trial replays this forward's dropout
        if line_search and micro_step < n_trial:
            trial_batches.append((X, Y, get_rng_state()))
        with ctx:
            logits, loss = model(X, Y)
            losses.append(loss.detach().float())
            loss = loss / accum # scale the loss to account for gradient accumulation
        # immediately async prefetch next batch while model is doing the forward pass on the GPU
        X, Y = get_batch('train', iter_num * accum + micro_step + 1)
        # backward pass, with gradient scaling if training in fp16
        scaler.scale(loss).backward()
    step_loss = torch.stack(losses).mean()
    if ddp: # the mean over ranks: the logged loss, and every rank decides to skip a step on the same value
        torch.distributed.all_reduce(step_loss)
        step_loss /= world_size
    if line_search:
        # ---- line search ---- f(w) from this forward, the trial on the same batches; it clips and checks
        # finiteness itself
        optimizer.step(closure=replay_closure(model, trial_batches, ctx),
                       loss=torch.stack(losses[:n_trial]).mean())
        applied = not optimizer.last_stats['skipped']
    else:
        # clip the gradient (its norm is needed when not clipping too: a non-finite gradient skips the step)
        scaler.unscale_(optimizer) # a no-op unless float16
        if grad_clip != 0.0:
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        else:
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            grad_norm = torch.nn.utils.get_total_norm(grads)
        applied = bool(torch.isfinite(step_loss + grad_norm)) # the step's one host sync
        # step the optimizer and scaler if training in fp16
        if applied:
            scaler.step(optimizer)
        scaler.update() # float16: also lowers the loss scale after an overflow
    # flush the gradients as soon as we can, no need for this memory anymore
    optimizer.zero_grad(set_to_none=True)
    return X, Y, step_loss, applied
