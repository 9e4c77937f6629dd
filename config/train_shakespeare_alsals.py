# config/train_shakespeare.py (GPT-2 BPE) with ALSALS: an LR range test, 30 steps at half its edge's eta, the
# search
exec(open('config/train_shakespeare.py').read())
out_dir = 'out-shakespeare-alsals'
optimizer = 'alsals'
ls_ema_warmup_steps = 15
# after a search accepted at its first trial, the next 15 steps take the grown eta without a trial (cost <=
# 1.10 forwards a step; 0 = the paper's search on every step)
ls_skip_stable = 15
# the start: an LR range test from learning_rate/100, then warmup_iters steps at half its edge's eta (False:
# the paper's AdamW warmup to learning_rate)
ls_range_test = True
# anneal the applied step (the search keeps its eta) linearly to ls_anneal_to = 0.1 of it over the last 20% of
# lr_decay_iters (min_lr plays no part): warmup-stable-decay on top of the search; 0 = the paper's constant
# step
ls_anneal_frac = 0.2
