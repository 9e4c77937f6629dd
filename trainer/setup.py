"""
train.py's setup, from a config dict (trainer.config.parse): the process group, the data, the model (from
scratch, a checkpoint or GPT-2 weights), the optimizer (with its line search's kwargs from the ls_* settings),
compile and DDP. train.py runs its loop on what setup() returns; bench.py, the GPU scripts, the experiments
and the tests drive the same step themselves, so that they measure exactly what train.py trains.

setup(config) returns a Run (from_args(args): the same from a train.py command line) whose attributes are:

  config          the dict as given (before DDP divides gradient_accumulation_steps)
  ddp             whether this is a torchrun process (DDP, or FSDP2 with config['fsdp'])
  rank            this process's rank (0 without torchrun)
  world_size      the number of processes
  master_process  rank 0: it logs, checks and writes ckpt.pt
  device          the device the model is on ('cuda:<local rank>' under DDP)
  ctx             the autocast context of the forward passes (nullcontext for float32)
  gradient_accumulation_steps   micro-batches per step, per process
  tokens_per_iter tokens per step, all processes together
  get_batch       get_batch(split, index) -> (X, Y): batch number `index` of 'train' or 'val' (its own seed)
  meta_vocab_size a char-level dataset's vocab_size (its meta.pkl), else None
  model_args      the GPT's shape, as the checkpoint keeps it
  model           the model being trained: compiled (compile=True) and DDP-wrapped (under torchrun)
  raw_model       the GPT itself (model.py), unwrapped
  optimizer       the optimizer (AdamW, alsals.MuonAdamW, or a line search of the alsals package)
  line_search     whether the optimizer is a line search (not 'adamw' or 'muon')
  ls_kwargs       the line search's kwargs from the ls_* settings (trainer.config.optimizer_kwargs)
  n_trial         how many micro-batches the line search's trial forward runs on
  scaler          the GradScaler (enabled for float16 only)
  hellaswag_data  HellaSwag's items, tokenized, for GPT-2 BPE runs with hellaswag_file; else []
  iter_num        the iteration the run starts at (0, or the checkpoint's with init_from='resume')
  best_val_loss   the checkpoint's (1e9 from scratch)
  nonfinite_steps consecutive skipped steps so far (the checkpoint's)
  wandb_run_id    the checkpoint's wandb run id (None from scratch)
  step_args       train_step's keyword arguments: trainer.step.train_step(X, Y, it, **step_args), or
                  with another optimizer: **dict(step_args, optimizer=...)
  train_step      train_step(X, Y, iter_num) -> (next X, next Y, the step's mean loss tensor, applied)
  estimate_loss   estimate_loss() -> {'train': loss, 'val': loss} on the fixed eval batches
  get_lr          get_lr(it): the learning rate at iteration it (trainer.step.get_lr)

Paths (data/<dataset>, out_dir) are relative to the current directory, as on train.py's command line.
"""
import os
from contextlib import nullcontext, redirect_stdout
from functools import partial
from io import StringIO
from types import SimpleNamespace

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from configurator import fail
from data import loader # the dataset's checks, seeded batches and meta.pkl
from model import GPTConfig, GPT
from trainer import checkpoint as ckpt_io, config as cfg, distributed, step


def setup(config):
    """train.py's setup for `config` (every setting: trainer.config.parse); a bad setting exits, one line."""
    cfg.check(config) # a setting that would fail inside torch or train with nonsense: a one-line error
    c = SimpleNamespace(**config)
    run = SimpleNamespace(config=config)

    # various inits, derived attributes, I/O setup
    run.ddp, run.rank, local_rank, run.world_size, run.device = distributed.init(c.device, c.backend)
    run.master_process = run.rank == 0 # this process will do logging, checkpointing etc.
    seed_offset = run.rank # each process gets a different seed
    # world_size number of processes will be training simultaneously, so we can scale
    # down the desired gradient accumulation iterations per process proportionally (divisible: trainer.config)
    accum = run.gradient_accumulation_steps = c.gradient_accumulation_steps // run.world_size
    run.tokens_per_iter = accum * run.world_size * c.batch_size * c.block_size
    print(f"tokens per iteration will be: {run.tokens_per_iter:,}")
    if run.master_process:
        os.makedirs(c.out_dir, exist_ok=True)
    torch.manual_seed(c.seed + seed_offset) # dropout RNG; batches use their own generator (get_batch)
    torch.backends.cuda.matmul.allow_tf32 = True # allow tf32 on matmul
    torch.backends.cudnn.allow_tf32 = True # allow tf32 on cudnn
    device_type = 'cuda' if 'cuda' in run.device else 'cpu' # for later use in torch.autocast
    # note: float16 data type will automatically use a GradScaler
    ptdtype = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}[c.dtype]
    run.ctx = nullcontext() if c.dtype == 'float32' else torch.amp.autocast(device_type=device_type,
                                                                            dtype=ptdtype)

    # data loader: batch `index` of a split from its own generator, seeded by (seed, rank, split, index)
    data_dir = os.path.join('data', c.dataset) # a name under data/, or an absolute path
    loader.check_data(data_dir, c.block_size) # both splits there, each longer than block_size
    run.get_batch = partial(loader.get_batch, data_dir, block_size=c.block_size, batch_size=c.batch_size,
                            device=run.device, seed=c.seed, rank=seed_offset)

    # attempt to derive vocab_size from the dataset
    meta_path = os.path.join(data_dir, 'meta.pkl')
    run.meta_vocab_size = None
    if os.path.exists(meta_path):
        run.meta_vocab_size = loader.load_meta(meta_path)['vocab_size'] # plain values only: runs no code
        print(f"found vocab_size = {run.meta_vocab_size} (inside {meta_path})")

    model, run.model_args, checkpoint = init_model(c, run.meta_vocab_size, run.device)
    run.iter_num = checkpoint['iter_num'] if checkpoint else 0
    run.best_val_loss = checkpoint['best_val_loss'] if checkpoint else 1e9
    run.nonfinite_steps = checkpoint.get('nonfinite_steps', 0) if checkpoint else 0
    run.wandb_run_id = checkpoint.get('wandb_run_id') if checkpoint else None
    # every token id indexes the embedding (one pass)
    loader.check_vocab(data_dir, run.model_args['vocab_size'])
    run.hellaswag_data = hellaswag_items(c, run.meta_vocab_size)
    model.to(run.device)
    if c.fsdp:
        # FSDP2: each block and the root; the optimizer is built on the sharded parameters
        distributed.shard(model)

    # initialize a GradScaler. If enabled=False scaler is a no-op
    run.scaler = torch.amp.GradScaler(device_type, enabled=(c.dtype == 'float16'))

    # optimizer; ---- line search ---- its kwargs: the ls_* that are set, its start, clipping
    # (trainer/config.py)
    run.line_search = c.optimizer not in cfg.PLAIN_OPTIMIZERS
    run.ls_kwargs = cfg.optimizer_kwargs(config)
    with cfg.optimizer_errors(run.ls_kwargs, config):
        run.optimizer = model.configure_optimizers(c.weight_decay, c.learning_rate, (c.beta1, c.beta2),
                                                   device_type, c.optimizer, c.ls_n_components,
                                                   **cfg.muon_adamw(config), **run.ls_kwargs)
    if checkpoint:
        ckpt_io.load_optimizer(model, run.optimizer, checkpoint, c.out_dir) # FSDP2: this rank's shards
        ckpt_io.resume_settings(run.optimizer, run.ls_kwargs, checkpoint['config'], config) # a set ls_* wins
        # every rank's dropout RNG stream
        ckpt_io.restore_rng_states(checkpoint['rng'], seed_offset, run.world_size, c.seed, run.iter_num)
    checkpoint = None # free up memory

    # compile the model
    run.raw_model = model
    if c.compile:
        print("compiling the model... (takes a ~minute)")
        model = torch.compile(model) # requires PyTorch 2.0
    # wrap model into DDP container
    if run.ddp and not c.fsdp:
        model = DDP(model, device_ids=[local_rank] if device_type == 'cuda' else None)
    run.model = model

    # ---- line search ---- the trial forward re-evaluates the first n_trial micro-batches (0 = all)
    run.n_trial = min(c.ls_trial_microsteps or accum, accum)
    run.step_args = dict(model=model, optimizer=run.optimizer, get_batch=run.get_batch, accum=accum,
                         ctx=run.ctx, scaler=run.scaler, grad_clip=c.grad_clip, line_search=run.line_search,
                         n_trial=run.n_trial, world_size=run.world_size)
    run.train_step = lambda X, Y, iter_num: step.train_step(X, Y, iter_num, **run.step_args)
    run.estimate_loss = partial(step.estimate_loss, model, run.get_batch, c.eval_iters, run.ctx, c.fsdp,
                                run.device)
    run.get_lr = partial(step.get_lr, config=config, line_search=run.line_search)
    return run


def init_model(c, meta_vocab_size, device):
    """(the GPT, its model_args, the checkpoint or None): from scratch, from out_dir/ckpt.pt
    (init_from='resume'), or from GPT-2 weights (the local Hugging Face cache or a directory: never
    downloaded)."""
    # start with model_args from command line
    model_args = dict(n_layer=c.n_layer, n_head=c.n_head, n_embd=c.n_embd, block_size=c.block_size,
                      bias=c.bias, vocab_size=None, dropout=c.dropout)
    checkpoint = None
    if c.init_from == 'scratch':
        # init a new model from scratch
        print("Initializing a new model from scratch")
        # determine the vocab size we'll use for from-scratch training
        if meta_vocab_size is None:
            print("defaulting to vocab_size of GPT-2 to 50304 (50257 rounded up for efficiency)")
        model_args['vocab_size'] = meta_vocab_size if meta_vocab_size is not None else 50304
        model = GPT(GPTConfig(**model_args))
    elif c.init_from == 'resume':
        print(f"Resuming training from {c.out_dir}")
        # resume training from a checkpoint.
        ckpt_path = os.path.join(c.out_dir, 'ckpt.pt')
        checkpoint = ckpt_io.load(ckpt_path, device) # exits with a one-line error if missing or corrupt
        # force these config attributes to be equal otherwise we can't even resume training
        # the rest of the attributes (e.g. dropout) can stay as desired from command line
        for k in ['n_layer', 'n_head', 'n_embd', 'block_size', 'bias', 'vocab_size']:
            model_args[k] = checkpoint['model_args'][k]
        # the same optimizer and fsdp setting
        ckpt_io.check_resumable(checkpoint, ckpt_path, c.optimizer, c.fsdp)
        model = GPT(GPTConfig(**model_args))
        if not c.fsdp: # FSDP2: the weights come with the optimizer's state, after sharding
            model.load_state_dict(ckpt_io.strip_compile_prefix(checkpoint['model']))
    else: # 'gpt2*' from the local Hugging Face cache, or a directory
        print(f"Initializing from Hugging Face GPT-2 weights: {c.init_from}")
        try:
            model = GPT.from_pretrained(c.init_from, dict(dropout=c.dropout)) # only dropout can be overridden
        except (OSError, ValueError) as e:
            fail(str(e).strip().splitlines()[0])
        # read off the created config params, so we can store them into checkpoint correctly
        for k in ['n_layer', 'n_head', 'n_embd', 'block_size', 'bias', 'vocab_size']:
            model_args[k] = getattr(model.config, k)
        if c.block_size > model.config.block_size:
            fail(f"block_size={c.block_size} exceeds the n_positions of {c.init_from} "
                 f"({model.config.block_size})")
        if c.block_size < model.config.block_size: # crop down the model block size, using model surgery
            model.crop_block_size(c.block_size)
            model_args['block_size'] = c.block_size # so that the checkpoint will have the right value
    return model, model_args, checkpoint


def hellaswag_items(c, meta_vocab_size):
    """HellaSwag (trainer/hellaswag.py) for GPT-2 BPE runs: the items tokenized once, scored at every eval."""
    if not c.hellaswag_file:
        return []
    if meta_vocab_size is not None:
        print(f"note: HellaSwag needs GPT-2 BPE, and {c.dataset!r} is char-level (meta.pkl): hellaswag_file "
              "skipped")
        return []
    if not os.path.isfile(c.hellaswag_file):
        print(f"note: hellaswag_file {c.hellaswag_file!r} not found (python data/hellaswag/prepare.py writes "
              f"it): HellaSwag skipped")
        return []
    from data.gpt2_bpe import gpt2_encoding
    from trainer import hellaswag
    try:
        items = [hellaswag.render(item, gpt2_encoding(), c.block_size)
                 for item in hellaswag.load_items(c.hellaswag_file, c.hellaswag_items)]
    except (OSError, ValueError) as e:
        fail(f"hellaswag_file: {e}")
    print(f"HellaSwag: {len(items)} items from {c.hellaswag_file}")
    return items


def from_args(args, quiet=False, cwd=None):
    """setup() for a train.py command line (config files, then --key=value): what `python train.py <args>`
        would train, for the scripts that drive the step themselves. quiet: what the setup prints is
        discarded. cwd: the directory train.py's relative paths are read from (restored after)."""
    here = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with redirect_stdout(StringIO()) if quiet else nullcontext():
            return setup(cfg.parse(args))
    finally:
        os.chdir(here)
