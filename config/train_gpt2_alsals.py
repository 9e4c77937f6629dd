# GPT-2 (124M) on OpenWebText with ALSALS. It finds its step size itself, and no lr is read: an LR range test
# from 3e-5 (eta doubling every 200 steps until the smoothed loss rises), 2000 steps at half that edge's eta,
# then the search (the Armijo line search on the Adam-with-momentum direction), which keeps that eta unless
# the test fails; over the last 20% of the run the applied step anneals to 1/10. The start and the search's
# constants are those of config/train_shakespeare_char_alsals.py (measured on CPU shapes only:
# results/README.md). The paper's form (Sec. IV-A: 2000 AdamW warmup steps to 6e-4, then the search with c =
# 0.6, b = 500, a constant step): --ls_range_test=False --ls_skip_stable=0 --ls_anneal_frac=0 --ls_c=0.6
# --ls_b=500
# $ torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2_alsals.py

wandb_log = False
wandb_project = 'owt'
wandb_run_name = 'gpt2-124M-alsals'

# the same ~0.5M-token batch as config/train_gpt2.py
batch_size = 12
block_size = 1024
gradient_accumulation_steps = 5 * 8

max_iters = 600000
# the end of the annealing (ls_anneal_frac); the line search replaces the schedule before it
lr_decay_iters = 600000

eval_interval = 1000
eval_iters = 200
log_interval = 10

weight_decay = 1e-1

optimizer = 'alsals'
# not read by the range-test start (ls_ramp_from is); the AdamW warmup's target with --ls_range_test=False
learning_rate = 6e-4
warmup_iters = 2000
ls_ema_warmup_steps = 200 # trial forwards in the last 200 steps before the search warm the criterion's EMAs
# the trial forward re-evaluates the first micro-batch of each rank (f(w) on the same one)
ls_trial_microsteps = 1
# after a search accepted at its first trial, the next 15 steps take the grown eta without a trial (cost <=
# 1.10 forwards a step; 0 = the paper's search on every step)
ls_skip_stable = 15
# the start: an LR range test from ls_ramp_from, then warmup_iters steps at half its edge's eta (False: the
# paper's AdamW warmup to learning_rate)
ls_range_test = True
ls_ramp_from = 3e-5 # the range test's first eta, whatever learning_rate is (0: learning_rate/100)
# the Armijo constant of Kenneweg et al. 2023 ("Faster Convergence for Transformer Fine-tuning with Line
# Search Methods"); the ALSALS paper's 0.6 cut eta 5x at a 4x batch on CPU
ls_c = 0.1
ls_b = 1e9 # no growth between steps: the search keeps the range test's eta unless the Armijo test fails
# anneal the applied step (the search keeps its eta) linearly to ls_anneal_to = 0.1 of it over the last 20% of
# lr_decay_iters (min_lr plays no part): warmup-stable-decay on top of the search; 0 = the paper's constant
# step
ls_anneal_frac = 0.2
