"""
This training script can be run both on a single gpu in debug mode,
and also in a larger training run with distributed data parallel (ddp).

To run on a single GPU, example:
$ python train.py --batch_size=32 --compile=False

To run with DDP on 4 gpus on 1 node, example:
$ torchrun --standalone --nproc_per_node=4 train.py

To run with DDP on 4 gpus across 2 nodes, example:
- Run on the first (master) node with example IP 123.456.123.456:
$ torchrun --nproc_per_node=8 --nnodes=2 --node_rank=0 --master_addr=123.456.123.456 --master_port=1234 train.py
- Run on the worker node:
$ torchrun --nproc_per_node=8 --nnodes=2 --node_rank=1 --master_addr=123.456.123.456 --master_port=1234 train.py
(If your cluster does not have Infiniband interconnect prepend NCCL_IB_DISABLE=1)

The optimizer is AdamW, Muon (alsals/muon.py) or a line search (alsals/alsals.py): its code sits at `# ---- line search ----`.
"""

import os
import sys
import time
import math
from contextlib import nullcontext

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.distributed import init_process_group

from model import GPTConfig, GPT
import checkpoint as ckpt_io # checkpoint I/O; nanoGPT's own name `checkpoint` stays free for the dict
from data import loader # the dataset's checks, seeded batches and meta.pkl
import parallel # FSDP2 sharding and checkpoints, DDP's end-of-run check and exit

# -----------------------------------------------------------------------------
# default config values designed to train a gpt2 (124M) on OpenWebText
# I/O
out_dir = 'out'
eval_interval = 2000
log_interval = 1
eval_iters = 200
eval_only = False # if True, script exits right after the first eval
always_save_checkpoint = True # if True, always save a checkpoint after each eval
init_from = 'scratch' # 'scratch', 'resume', or GPT-2 weights: 'gpt2*' (local Hugging Face cache) or a HF directory
# wandb logging
wandb_log = False # disabled by default
wandb_project = 'owt'
wandb_run_name = 'gpt2' # 'run' + str(time.time())
# data
dataset = 'openwebtext' # a folder under data/, or a path to a folder holding train.bin/val.bin
gradient_accumulation_steps = 5 * 8 # used to simulate larger batch sizes
batch_size = 12 # if gradient_accumulation_steps > 1, this is the micro-batch size
block_size = 1024
seed = 1337
# model
n_layer = 12
n_head = 12
n_embd = 768
dropout = 0.0 # for pretraining 0 is good, for finetuning try 0.1+
bias = False # do we use bias inside LayerNorm and Linear layers?
optimizer = 'adamw' # 'muon' (torch.optim.Muon on the hidden matrices, AdamW on the rest), or a line search (ls_*)
learning_rate = 6e-4 # max learning rate (AdamW peak; the line-search optimizers' warmup target)
max_iters = 600000 # total number of training iterations
weight_decay = 1e-1
beta1 = 0.9
beta2 = 0.95
grad_clip = 1.0 # clip gradients at this value, or disable if == 0.0
# learning rate decay settings (AdamW, Muon; the line search replaces the schedule after warmup)
decay_lr = True # whether to decay the learning rate
lr_schedule = 'cosine' # after the warmup: 'cosine' to min_lr at lr_decay_iters, or 'wsd' (warmup-stable-decay)
decay_frac = 0.2 # 'wsd': constant, then linear to min_lr over this last fraction of lr_decay_iters
warmup_iters = 2000 # how many steps to warm up for (and for the line search: steps of AdamW before it)
lr_decay_iters = 600000 # should be ~= max_iters per Chinchilla
min_lr = 6e-5 # minimum learning rate, should be ~= learning_rate/10 per Chinchilla (not used by the line search)
muon_adamw_lr = None # muon, muonsls: the lr of the AdamW part (embeddings, head, norms); None = the ratio's
muon_adamw_ratio = 1.0 # muon, muonsls with muon_adamw_lr=None: the AdamW part's lr is learning_rate * this
# ---- line search ---- optimizer='alsals'|'adamsls'|'sgdsls'|'plasls'|'muonsls': warmup_iters AdamW steps, then
# the search. ls_* are the optimizer's own kwargs (alsals.py, muon.py) with an ls_ prefix; None = its default
ls_c = ls_smooth = ls_beta_s = ls_backtrack = ls_max_backtracks = ls_eta_min = ls_eta_max = ls_separate_eta = None
ls_b = ls_ema_warmup_steps = ls_skip_stable = ls_fa = ls_ramp = ls_ramp_sigma = ls_ramp_hold = ls_ramp_from = None
ls_trial_microsteps = 1 # trial forward on the first k micro-batches (f(w) on the same k); 0 = all
ls_n_components = 10 # PLASLS: parameter components, each with its own step size
ls_anneal_frac = 0.0 # anneal the applied step to ls_anneal_to over this last part of lr_decay_iters; 0 = paper
ls_anneal_to = 0.1 # the anneal ends at this fraction of the search's step: no lr sets its depth (min_lr plays no part)
ls_range_test = False # instead of AdamW's warmup: a range test from ls_ramp_from (unset: learning_rate/100), warmup_iters steps at edge/2
max_nonfinite_steps = 10 # stop after this many consecutive steps with a non-finite loss or gradient
log_file = '' # JSON lines (one record per logged iter and per eval) appended here; '' = off
hellaswag_file = '' # HellaSwag's validation jsonl (data/hellaswag/prepare.py), scored at every eval; '' = off
hellaswag_items = 0 # score the first this many items of hellaswag_file; 0 = all
# DDP settings
backend = 'nccl' # 'nccl', 'gloo', etc. (gloo is used automatically on CPU)
fsdp = False # under torchrun: FSDP2 (fully_shard each block and the root) instead of DDP; checkpoints with DCP
# system
device = 'cuda' # examples: 'cpu', 'cuda', 'cuda:0', 'cuda:1' etc., or try 'mps' on macbooks
# 'float32', 'bfloat16', or 'float16', the latter will auto implement a GradScaler
dtype = 'bfloat16' if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else 'float16'
compile = True # use PyTorch 2.0 to compile the model to be faster
# -----------------------------------------------------------------------------
config_keys = [k for k,v in globals().items()
               if not k.startswith('_') and isinstance(v, (int, float, bool, str, type(None)))]
from configurator import (configure, check_train_config, optimizer_kwargs, optimizer_errors, fail, PLAIN_OPTIMIZERS,
                          muon_adamw_lr_of)
configure(sys.argv[1:], globals(), config_keys) # overrides from command line or config file
config = {k: globals()[k] for k in config_keys} # will be useful for logging
check_train_config(config) # a setting that would fail inside torch or train with nonsense: a one-line error
# -----------------------------------------------------------------------------

# various inits, derived attributes, I/O setup
ddp = int(os.environ.get('RANK', -1)) != -1 # is this a ddp run?
if ddp:
    if 'cuda' not in device:
        backend = 'gloo' # nccl needs CUDA
    if not torch.distributed.is_initialized(): # bench.py sets up several runs in one process group
        init_process_group(backend=backend)
    ddp_rank = int(os.environ['RANK'])
    ddp_local_rank = int(os.environ['LOCAL_RANK'])
    ddp_world_size = int(os.environ['WORLD_SIZE'])
    if 'cuda' in device:
        device = f'cuda:{ddp_local_rank}'
        torch.cuda.set_device(device)
    master_process = ddp_rank == 0 # this process will do logging, checkpointing etc.
    seed_offset = ddp_rank # each process gets a different seed
    # world_size number of processes will be training simultaneously, so we can scale
    # down the desired gradient accumulation iterations per process proportionally (divisible: check_train_config)
    gradient_accumulation_steps //= ddp_world_size
else:
    # if not ddp, we are running on a single gpu, and one process
    master_process = True
    seed_offset = 0
    ddp_world_size = 1
tokens_per_iter = gradient_accumulation_steps * ddp_world_size * batch_size * block_size
print(f"tokens per iteration will be: {tokens_per_iter:,}")

if master_process:
    os.makedirs(out_dir, exist_ok=True)
log_json = ckpt_io.json_log(log_file if master_process else '', fresh=init_from != 'resume') # log_file's lines
torch.manual_seed(seed + seed_offset) # dropout RNG; batches use their own generator (get_batch)
torch.backends.cuda.matmul.allow_tf32 = True # allow tf32 on matmul
torch.backends.cudnn.allow_tf32 = True # allow tf32 on cudnn
device_type = 'cuda' if 'cuda' in device else 'cpu' # for later use in torch.autocast
# note: float16 data type will automatically use a GradScaler
ptdtype = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}[dtype]
ctx = nullcontext() if dtype == 'float32' else torch.amp.autocast(device_type=device_type, dtype=ptdtype)

# data loader: batch `index` of a split from its own generator, seeded by (seed, rank, split, index) (data/loader.py)
data_dir = os.path.join('data', dataset)
loader.check_data(data_dir, block_size) # both splits there, each longer than block_size
def get_batch(split, index):
    return loader.get_batch(data_dir, split, index, block_size, batch_size, device, seed, seed_offset)

# init these up here, can override if init_from='resume' (i.e. from a checkpoint)
iter_num = 0
best_val_loss = 1e9
nonfinite_steps = 0 # consecutive steps whose update was skipped (non-finite loss or gradient)

# attempt to derive vocab_size from the dataset
meta_path = os.path.join(data_dir, 'meta.pkl')
meta_vocab_size = None
if os.path.exists(meta_path):
    meta = loader.load_meta(meta_path) # plain values only: a meta.pkl from elsewhere cannot run code
    meta_vocab_size = meta['vocab_size']
    print(f"found vocab_size = {meta_vocab_size} (inside {meta_path})")

# model init
model_args = dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size,
                  bias=bias, vocab_size=None, dropout=dropout) # start with model_args from command line
if init_from == 'scratch':
    # init a new model from scratch
    print("Initializing a new model from scratch")
    # determine the vocab size we'll use for from-scratch training
    if meta_vocab_size is None:
        print("defaulting to vocab_size of GPT-2 to 50304 (50257 rounded up for efficiency)")
    model_args['vocab_size'] = meta_vocab_size if meta_vocab_size is not None else 50304
    gptconf = GPTConfig(**model_args)
    model = GPT(gptconf)
elif init_from == 'resume':
    print(f"Resuming training from {out_dir}")
    # resume training from a checkpoint.
    ckpt_path = os.path.join(out_dir, 'ckpt.pt')
    checkpoint = ckpt_io.load(ckpt_path, device) # exits with a one-line error if missing or corrupt
    checkpoint_model_args = checkpoint['model_args']
    # force these config attributes to be equal otherwise we can't even resume training
    # the rest of the attributes (e.g. dropout) can stay as desired from command line
    for k in ['n_layer', 'n_head', 'n_embd', 'block_size', 'bias', 'vocab_size']:
        model_args[k] = checkpoint_model_args[k]
    ckpt_io.check_resumable(checkpoint, ckpt_path, optimizer, fsdp) # the same optimizer, the same fsdp setting
    # create the model
    gptconf = GPTConfig(**model_args)
    model = GPT(gptconf)
    if not fsdp: # FSDP2: the weights come with the optimizer's state, after sharding
        model.load_state_dict(ckpt_io.strip_compile_prefix(checkpoint['model']))
    iter_num = checkpoint['iter_num']
    best_val_loss = checkpoint['best_val_loss']
    nonfinite_steps = checkpoint.get('nonfinite_steps', 0)
else: # 'gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl' from the local Hugging Face cache, or a directory: never downloaded
    print(f"Initializing from Hugging Face GPT-2 weights: {init_from}")
    try:
        model = GPT.from_pretrained(init_from, dict(dropout=dropout)) # only the dropout rate can be overridden
    except (OSError, ValueError) as e:
        fail(str(e).strip().splitlines()[0])
    # read off the created config params, so we can store them into checkpoint correctly
    for k in ['n_layer', 'n_head', 'n_embd', 'block_size', 'bias', 'vocab_size']:
        model_args[k] = getattr(model.config, k)
    if block_size > model.config.block_size:
        fail(f"block_size={block_size} exceeds the n_positions of {init_from} ({model.config.block_size})")
    if block_size < model.config.block_size: # crop down the model block size, using model surgery
        model.crop_block_size(block_size)
        model_args['block_size'] = block_size # so that the checkpoint will have the right value
loader.check_vocab(data_dir, model_args['vocab_size']) # every token id indexes the embedding (one pass)

# HellaSwag (hellaswag.py) for GPT-2 BPE runs: the items tokenized once here, scored at every eval on every rank
hellaswag_data = [] # render()'s (tokens, mask, label) per item
if hellaswag_file and meta_vocab_size is not None:
    print(f"note: HellaSwag needs GPT-2 BPE, and {dataset!r} is char-level (meta.pkl): hellaswag_file skipped")
elif hellaswag_file and not os.path.isfile(hellaswag_file):
    print(f"note: hellaswag_file {hellaswag_file!r} not found (python data/hellaswag/prepare.py writes it): "
          f"HellaSwag skipped")
elif hellaswag_file:
    import hellaswag
    from data.gpt2_bpe import gpt2_encoding
    try:
        hellaswag_data = [hellaswag.render(item, gpt2_encoding(), block_size)
                          for item in hellaswag.load_items(hellaswag_file, hellaswag_items)]
    except (OSError, ValueError) as e:
        fail(f"hellaswag_file: {e}")
    print(f"HellaSwag: {len(hellaswag_data)} items from {hellaswag_file}")
model.to(device)
if fsdp:
    parallel.shard(model) # FSDP2: each block and the root; the optimizer is built on the sharded parameters

# initialize a GradScaler. If enabled=False scaler is a no-op
scaler = torch.amp.GradScaler(device_type, enabled=(dtype == 'float16'))

# optimizer (the config string `optimizer` names it; from here on `optimizer` is the object, as in nanoGPT)
# ---- line search ---- its kwargs: the ls_* that are set, its start, clipping (configurator.py); errors: one line
line_search = optimizer not in PLAIN_OPTIMIZERS
ls_kwargs = optimizer_kwargs(config)
with optimizer_errors(ls_kwargs, config):
    optimizer = model.configure_optimizers(weight_decay, learning_rate, (beta1, beta2), device_type, optimizer,
                                           ls_n_components, adamw_lr=muon_adamw_lr_of(config), **ls_kwargs)
if init_from == 'resume':
    parallel.load_optimizer(model, optimizer, checkpoint, out_dir) # FSDP2: this rank's shards, model and optimizer
    ckpt_io.resume_settings(optimizer, ls_kwargs, checkpoint['config'], config) # a set ls_* wins, with a notice
    ckpt_io.restore_rng_states(checkpoint['rng'], seed_offset, ddp_world_size, seed, iter_num) # dropout, per rank
checkpoint = None # free up memory

# compile the model
if compile:
    print("compiling the model... (takes a ~minute)")
    unoptimized_model = model
    model = torch.compile(model) # requires PyTorch 2.0

# wrap model into DDP container
if ddp and not fsdp:
    model = DDP(model, device_ids=[ddp_local_rank] if device_type == 'cuda' else None)

# helps estimate an arbitrarily accurate loss over either split using many batches
@torch.no_grad()
def estimate_loss():
    out = {}
    model.eval()
    for split in ['train', 'val']:
        losses = torch.zeros(eval_iters)
        for k in range(eval_iters):
            X, Y = get_batch(split, -1 - k) # the same eval batches every time
            with ctx:
                logits, loss = model(X, Y)
            losses[k] = loss.item()
        out[split] = losses.mean().item()
        if fsdp: # every rank evaluates (each forward is a collective): the mean over ranks, the same on each
            out[split] = parallel.mean_over_ranks(out[split], device)
    model.train()
    return out

# learning rate decay scheduler (cosine or warmup-stable-decay, with warmup)
def wsd_lr(it, to, frac):
    """learning_rate, then linear down to `to` * learning_rate over the last frac of lr_decay_iters (after warmup)"""
    start = max(warmup_iters, (1.0 - frac) * lr_decay_iters)
    if frac == 0 or it < start:
        return learning_rate
    progress = min(1.0, (it - start) / max(1.0, lr_decay_iters - start))
    return learning_rate * (1.0 - progress * (1.0 - to))

def get_lr(it):
    # 1) linear warmup for warmup_iters steps (---- line search ---- unless its range test replaces it)
    if it < warmup_iters and not ls_range_test:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    # ---- line search ---- after its warmup, lr scales the applied step (eta * lr/learning_rate): constant, then
    # linear down to ls_anneal_to of it over the last ls_anneal_frac of lr_decay_iters (0 = the paper). A fraction,
    # not min_lr: a first guess (learning_rate) must not set the anneal's depth
    if line_search:
        return wsd_lr(it, ls_anneal_to, ls_anneal_frac)
    # 2) from lr_decay_iters on, return min learning rate (>=: lr_decay_iters == warmup_iters would divide by 0)
    if it >= lr_decay_iters:
        return min_lr
    # 3) wsd: learning_rate, then linear to min_lr over the last decay_frac of lr_decay_iters (the cooldown of
    # modded-nanogpt, nanochat's warmdown, torchtitan's decay_ratio)
    if lr_schedule == 'wsd':
        return wsd_lr(it, min_lr / learning_rate, decay_frac)
    # 3) cosine: in between, use cosine decay down to min learning rate
    decay_ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
    assert 0 <= decay_ratio <= 1
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio)) # coeff ranges 0..1
    return min_lr + coeff * (learning_rate - min_lr)

# ---- line search ---- the trial closure: f(w + eta*d) on the micro-batches just trained on, same dropout masks
n_trial = min(ls_trial_microsteps or gradient_accumulation_steps, gradient_accumulation_steps) # 0 = all
def replay_closure(model, batches, ctx):
    """Mean loss on [(X, Y, RNG state before its training forward)], no autograd: at w it is f(w) bit for bit."""
    @torch.no_grad()
    def closure():
        saved, losses = ckpt_io.get_rng_state(), []
        for X, Y, rng_state in batches:
            ckpt_io.set_rng_state(rng_state)
            with ctx:
                losses.append(model(X, Y)[1].float())
        ckpt_io.set_rng_state(saved) # the training loop's own RNG stream goes on undisturbed
        return torch.stack(losses).mean() # reduced as train_step reduces f(w)
    return closure

def train_step(X, Y, iter_num):
    """One training iteration from (X, Y), batch number iter_num * gradient_accumulation_steps. Returns the next
    X, Y, the step's mean loss (a device tensor, over micro-batches and ranks) and whether the update was applied
    (not on a non-finite loss or gradient: then parameters and optimizer state are left as they were)."""
    # forward backward update, with optional gradient accumulation to simulate larger batch size
    # and using the GradScaler if data type is float16
    losses = [] # detached micro-batch losses (f(w))
    trial_batches = [] # ---- line search ---- the trial's micro-batches: (X, Y, RNG state)
    for micro_step in range(gradient_accumulation_steps):
        if ddp:
            # in DDP training we only need to sync gradients at the last micro step.
            # the official way to do this is with model.no_sync() context manager, but
            # I really dislike that this bloats the code and forces us to repeat code
            # looking at the source of that context manager, it just toggles this variable
            model.require_backward_grad_sync = (micro_step == gradient_accumulation_steps - 1)
        if line_search and micro_step < n_trial: # ---- line search ---- the trial replays this forward's dropout
            trial_batches.append((X, Y, ckpt_io.get_rng_state()))
        with ctx:
            logits, loss = model(X, Y)
            losses.append(loss.detach().float())
            loss = loss / gradient_accumulation_steps # scale the loss to account for gradient accumulation
        # immediately async prefetch next batch while model is doing the forward pass on the GPU
        X, Y = get_batch('train', iter_num * gradient_accumulation_steps + micro_step + 1)
        # backward pass, with gradient scaling if training in fp16
        scaler.scale(loss).backward()
    step_loss = torch.stack(losses).mean()
    if ddp: # the mean over ranks: the logged loss, and every rank decides to skip a step on the same value
        torch.distributed.all_reduce(step_loss)
        step_loss /= ddp_world_size
    if line_search:
        # ---- line search ---- f(w) from this forward, the trial on the same batches; it clips, checks finiteness
        optimizer.step(closure=replay_closure(model, trial_batches, ctx), loss=torch.stack(losses[:n_trial]).mean())
        applied = not optimizer.last_stats['skipped']
    else:
        # clip the gradient (its norm is needed when not clipping too: a non-finite gradient skips the step)
        scaler.unscale_(optimizer) # a no-op unless float16
        if grad_clip != 0.0:
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        else:
            grad_norm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])
        applied = bool(torch.isfinite(step_loss + grad_norm)) # the step's one host sync
        # step the optimizer and scaler if training in fp16
        if applied:
            scaler.step(optimizer)
        scaler.update() # float16: also lowers the loss scale after an overflow
    # flush the gradients as soon as we can, no need for this memory anymore
    optimizer.zero_grad(set_to_none=True)
    return X, Y, step_loss, applied

# logging
if wandb_log and master_process:
    import wandb
    wandb.init(project=wandb_project, name=wandb_run_name, config=config) # honours WANDB_MODE=offline

# training loop
X, Y = get_batch('train', iter_num * gradient_accumulation_steps) # fetch the very first batch
t0 = time.time()
local_iter_num = 0 # number of iterations in the lifetime of this process
raw_model = model.module if ddp and not fsdp else model # unwrap DDP container if needed
raw_model = getattr(raw_model, '_orig_mod', raw_model) # and torch.compile's wrapper
running_mfu = -1.0
dt_sum, dt_n = 0.0, 0 # iteration times after this process's first: the ETA's mean
hms = lambda s: f"{int(s) // 3600}:{int(s) % 3600 // 60:02d}:{int(s) % 60:02d}" # h:mm:ss
while __name__ == '__main__': # train_setup.py runs this file under another name: the setup above, no loop

    # determine and set the learning rate for this iteration
    lr = get_lr(iter_num) if decay_lr else learning_rate
    for param_group in optimizer.param_groups: # muon: its AdamW groups run at muon_adamw_lr (lr_scale)
        param_group['lr'] = lr * param_group.get('lr_scale', 1.0) # the line search: eta * lr/lr_0 after warmup

    # evaluate the loss on train/val sets and write checkpoints (with every rank's RNG state: all ranks gather it)
    rng_states = ckpt_io.gather_rng_states() if iter_num % eval_interval == 0 else None
    # HellaSwag: every rank scores items rank::world_size (the counts all-reduced), on the uncompiled model
    hs = (hellaswag.evaluate(raw_model, hellaswag_data, device, ctx, seed_offset, ddp_world_size, lockstep=fsdp)
          if hellaswag_data and iter_num % eval_interval == 0 else None) # seed_offset: this rank
    if iter_num % eval_interval == 0 and (master_process or fsdp): # FSDP2: every rank evaluates and saves
        losses = estimate_loss()
        if master_process:
            print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}"
                  + (f", hellaswag {hs['acc']:.4f} ({hs['n']} items; by summed loss {hs['acc_sum']:.4f})" if hs else ""))
        log_json(iter=iter_num, train_loss=losses['train'], val_loss=losses['val'],
                 **(dict(hellaswag=hs['acc'], hellaswag_sum=hs['acc_sum']) if hs else {}))
        if wandb_log and master_process:
            wandb.log({
                "iter": iter_num,
                "train/loss": losses['train'],
                "val/loss": losses['val'],
                "lr": lr,
                "mfu": running_mfu*100, # convert to percentage
                **({"hellaswag": hs['acc']} if hs else {}),
            })
        if not math.isfinite(losses['val']):
            if master_process:
                print(f"val loss is not finite: not saving a checkpoint")
        elif (losses['val'] < best_val_loss or always_save_checkpoint) and not eval_only:
            best_val_loss = min(best_val_loss, losses['val'])
            if iter_num > 0:
                checkpoint = {'model_args': model_args, 'iter_num': iter_num, 'best_val_loss': best_val_loss,
                              'config': config, 'rng': rng_states, 'nonfinite_steps': nonfinite_steps} # rng: per rank
                if master_process:
                    print(f"saving checkpoint to {out_dir}")
                # ckpt.pt, atomically; FSDP2: every rank writes its shards (DCP), then rank 0 ckpt.pt naming them
                parallel.save_checkpoint(raw_model, optimizer, checkpoint, out_dir)
                checkpoint = None
    if eval_only: # also when resuming (iter_num > 0): evaluate, never train
        break

    X, Y, loss, applied = train_step(X, Y, iter_num)
    nonfinite_steps = 0 if applied else nonfinite_steps + 1 # a non-finite loss or gradient (any rank): no update
    if not applied:
        print(f"iter {iter_num}: update skipped: non-finite loss or gradient "
              f"({nonfinite_steps}/{max_nonfinite_steps} in a row)")
        if nonfinite_steps >= max_nonfinite_steps: # too many in a row stop the run
            fail(f"{nonfinite_steps} consecutive non-finite steps at iter {iter_num}; stopping (last good "
                 f"checkpoint in {out_dir} kept)")

    # timing and logging
    t1 = time.time()
    dt = t1 - t0
    t0 = t1
    if local_iter_num >= 1: # the ETA's mean time per iteration leaves out the first (compilation, warm-up)
        dt_sum, dt_n = dt_sum + dt, dt_n + 1
    if iter_num % log_interval == 0 and master_process:
        # get loss as float. note: this is a CPU-GPU sync point
        lossf = loss.item()
        # ---- line search ---- its step size after warmup, its trial forwards (each on n_trial micro-batches)
        st = optimizer.last_stats if line_search else dict(eta=lr, forwards=0, backtracks=0,
                                                           warmup=iter_num < warmup_iters)
        lr = lr if st['warmup'] else st['eta']
        if local_iter_num >= 5: # let the training loop settle a bit
            mfu = raw_model.estimate_mfu(batch_size * gradient_accumulation_steps, dt,
                                         extra_forwards=st['forwards'] * n_trial * batch_size)
            running_mfu = mfu if running_mfu == -1.0 else 0.9*running_mfu + 0.1*mfu
        extra = (f", fwd {st['forwards']}, bt {st['backtracks']}" + (" (warmup)" if st['warmup'] else "")
                 if line_search else "")
        # tok/s: this iteration's training tokens (all ranks) over its wall time, which includes the line search's
        # trial forwards (their tokens are not counted) and, every eval_interval, the eval; eta: to max_iters at
        # the mean time per iteration so far
        tok_per_s = tokens_per_iter / dt
        eta_s = (max_iters - iter_num) * (dt_sum / dt_n if dt_n else dt)
        print(f"iter {iter_num}: loss {lossf:.4f}, time {dt*1000:.2f}ms, mfu {running_mfu*100:.2f}%, "
              f"lr {lr:.3e}{extra}, tok/s {tok_per_s:,.0f}, eta {hms(eta_s)}")
        log_json(iter=iter_num, loss=lossf, lr=lr, dt_ms=dt*1000, forwards=st['forwards'], backtracks=st['backtracks'],
                 skipped=not applied, warmup=st['warmup'], tok_per_s=tok_per_s, eta_s=eta_s,
                 **({'lr_factor': get_lr(iter_num) / learning_rate} if line_search else {})) # applied: lr*lr_factor
        if wandb_log:
            wandb.log({"iter": iter_num, "train/loss_step": lossf, "lr": lr, "forwards": st['forwards'],
                       "backtracks": st['backtracks'], "tok_per_s": tok_per_s, "eta_s": eta_s})
    iter_num += 1
    local_iter_num += 1

    # termination conditions
    if iter_num > max_iters:
        break

if ddp and __name__ == '__main__':
    # every rank must end with the same parameters (checked), then the group is torn down and the process leaves
    parallel.finish_ddp(raw_model, master_process, finish_wandb=wandb_log and master_process, sharded=fsdp)
