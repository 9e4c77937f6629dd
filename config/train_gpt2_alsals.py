# GPT-2 (124M) on OpenWebText with ALSALS as shipped: config/train_gpt2.py's batch, length and evals, and in
# place of AdamW's lr and schedule what ALSALS is here: an LR range test from 3e-5 (eta doubling every 200
# steps until the smoothed loss rises), a constant step at half that edge's eta, an Armijo test on the
# Adam-with-momentum direction as a tripwire (c = 0.1, no growth: it can only cut eta, when the loss jumps),
# and a warmup-stable-decay anneal over the last 20% of the run. Its settings are
# config/train_shakespeare_char_alsals.py's, measured on CPU shapes only. The ladder does not support them at
# GPT-2's batch: at its 8x-batch rung, the direction GPT-2 goes, the range test's level sat well below AdamW's
# best lr and the run ended far behind AdamW (one seed; results/README.md), so config/train_gpt2.py is the
# baseline to prefer. The paper's form (Sec. IV-A: 2000 AdamW steps to 6e-4, then the search with c = 0.6,
# b = 500, a constant step):
# --ls_range_test=False --ls_skip_stable=0 --ls_anneal_frac=0 --ls_c=0.6 --ls_b=500
# $ torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2_alsals.py
exec(open('config/train_gpt2.py').read())

wandb_run_name = 'gpt2-124M-alsals'
optimizer = 'alsals'
# not read by the range-test start (ls_ramp_from is); the AdamW warmup's target with --ls_range_test=False
learning_rate = 6e-4
warmup_iters = 2000 # the range test's length (eta doubles every warmup_iters/10 steps), then as long a hold
ls_ema_warmup_steps = 200 # trial forwards in the last 200 steps before the search warm the criterion's EMAs
ls_trial_microsteps = 1 # the trial re-evaluates the first micro-batch of each rank (f(w) on the same one)
# after a trial accepted at its first eta, the next 15 steps take it without a trial (0 = a trial every step)
ls_skip_stable = 15
ls_range_test = True # the start: an LR range test, then a hold at half its edge (False: the paper's warmup)
ls_ramp_from = 3e-5 # the range test's first eta, whatever learning_rate is (0: learning_rate/100)
# the Armijo constant of Kenneweg, Galli, Kenneweg, Hammer, "Faster Convergence for Transformer Fine-tuning
# with Line Search Methods", 2023 (the ALSALS paper's 0.6 cuts eta below the edge's level at large batches)
ls_c = 0.1
ls_b = 1e9 # no growth between steps: the search keeps the range test's eta unless the Armijo test fails
# anneal the applied step (the search keeps its eta) linearly to ls_anneal_to = 0.1 of it over the last 20%
# of lr_decay_iters (min_lr plays no part): warmup-stable-decay on top of the constant step
ls_anneal_frac = 0.2
