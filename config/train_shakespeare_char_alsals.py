# the small character-level Shakespeare GPT of config/train_shakespeare_char.py, trained with ALSALS. It finds its
# step size itself: learning_rate is only the first guess of an LR range test (from learning_rate/100, eta doubling
# every warmup_iters/10 steps until the smoothed loss rises), warmup_iters steps at half that edge's eta, then the
# search; the applied step anneals over the last 20%. Measured safe first guesses: 1e-4 ... 1e-1 (within 2.4% of tuned
# AdamW at the study's headline size, both corpora; not at a 4x larger batch: results/README.md)
# $ python train.py config/train_shakespeare_char_alsals.py
exec(open('config/train_shakespeare_char.py').read())

out_dir = 'out-shakespeare-char-alsals'
optimizer = 'alsals'
ls_range_test = True # the start: an LR range test instead of an AdamW warmup to learning_rate (False: the paper's)
ls_ema_warmup_steps = 25 # the last 25 steps at the range test's eta warm the criterion's EMAs
ls_skip_stable = 15 # after a search accepted at its first trial, the next 15 steps take the grown eta without a trial (cost <= 1.10 forwards a step; 0 = the paper's search on every step)
ls_anneal_frac = 0.2 # anneal the applied step (the search keeps its eta) linearly to ls_anneal_to = 0.1 of it over the last 20% of lr_decay_iters (min_lr plays no part): warmup-stable-decay on top of the search; 0 = the paper's constant step
