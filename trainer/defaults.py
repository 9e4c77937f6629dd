"""
train.py's settings and their defaults, as nanoGPT's train.py writes them: one global a line, with what it
does. train.py, bench.py, the GPU scripts and the experiments read them (trainer.config.parse); config files
and --key=value override them (configurator.py). Values designed to train a GPT-2 (124M) on OpenWebText.
"""
import torch

# I/O
out_dir = 'out'
eval_interval = 2000
log_interval = 1
eval_iters = 200
eval_only = False # if True, script exits right after the first eval
always_save_checkpoint = True # if True, always save a checkpoint after each eval
init_from = 'scratch' # 'scratch', 'resume', or GPT-2 weights: 'gpt2*' (local HF cache) or a HF directory
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
optimizer = 'adamw' # 'muon' (torch.optim.Muon on the hidden matrices, AdamW on the rest) or a line search
learning_rate = 6e-4 # max learning rate (AdamW peak; the line-search optimizers' warmup target)
max_iters = 600000 # total number of training iterations
weight_decay = 1e-1
beta1 = 0.9
beta2 = 0.95
grad_clip = 1.0 # clip gradients at this value, or disable if == 0.0
# learning rate decay settings (AdamW, Muon; the line search replaces the schedule after warmup)
decay_lr = True # whether to decay the learning rate
lr_schedule = 'cosine' # after the warmup: 'cosine' to min_lr at lr_decay_iters, or 'wsd' (stable, then decay)
decay_frac = 0.2 # 'wsd': constant, then linear to min_lr over this last fraction of lr_decay_iters
warmup_iters = 2000 # how many steps to warm up for (and for the line search: steps of AdamW before it)
lr_decay_iters = 600000 # should be ~= max_iters per Chinchilla
min_lr = 6e-5 # minimum learning rate, should be ~= learning_rate/10 per Chinchilla (not the line search's)
muon_adamw_lr = None # muon, muonsls: the lr of the AdamW part (embeddings, head, norms); None = the ratio's
muon_adamw_ratio = 1.0 # muon, muonsls with muon_adamw_lr=None: the AdamW part's lr is learning_rate * this
# ---- line search ---- optimizer='alsals'|'adamsls'|'sgdsls'|'plasls'|'muonsls': warmup_iters AdamW steps,
# then the search. ls_* are the optimizer's own kwargs (alsals/) with an ls_ prefix; None = its default
ls_c = ls_smooth = ls_beta_s = ls_backtrack = ls_max_backtracks = ls_eta_min = ls_eta_max = None
ls_b = ls_ema_warmup_steps = ls_skip_stable = ls_fa = ls_ramp = ls_ramp_sigma = ls_ramp_hold = None
ls_ramp_from = ls_separate_eta = ls_search = None
ls_trial_microsteps = 1 # trial forward on the first k micro-batches (f(w) on the same k); 0 = all
ls_n_components = 10 # PLASLS: parameter components, each with its own step size
ls_anneal_frac = 0.0 # anneal the applied step to ls_anneal_to over this last part of lr_decay_iters; 0 = off
ls_anneal_to = 0.1 # the anneal's end, a fraction of the search's step (no lr sets its depth; min_lr neither)
ls_range_test = False # no AdamW warmup: a range test from ls_ramp_from, then warmup_iters steps at edge/2
ls_lr = None # the line search's warmup target (its first eta), whatever learning_rate is; None: learning_rate
max_nonfinite_steps = 10 # stop after this many consecutive steps with a non-finite loss or gradient
log_file = '' # JSON lines (one record per logged iter and per eval) appended here; '' = off
hellaswag_file = '' # HellaSwag's validation jsonl (data/hellaswag/prepare.py), scored at every eval; '' = off
hellaswag_items = 0 # score the first this many items of hellaswag_file; 0 = all
# DDP settings
backend = 'nccl' # 'nccl', 'gloo', etc. (gloo is used automatically on CPU)
fsdp = False # under torchrun: FSDP2 (fully_shard each block and the root) instead of DDP; checkpoints: DCP
# system
device = 'cuda' # examples: 'cpu', 'cuda', 'cuda:0', 'cuda:1' etc., or try 'mps' on macbooks
# 'float32', 'bfloat16', or 'float16', the latter will auto implement a GradScaler
dtype = 'bfloat16' if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else 'float16'
compile = True # use PyTorch 2.0 to compile the model to be faster
