# the small character-level Shakespeare GPT of config/train_shakespeare_char.py, trained with ALSALS. It finds
# its step size itself, and no lr is read: an LR range test from 3e-5 (eta doubling every warmup_iters/10
# steps until the smoothed loss rises), warmup_iters steps at half that edge's eta, then the search, which
# keeps that eta unless the Armijo test fails; the applied step anneals over the last 20%. Measured against
# tuned AdamW (better of cosine and WSD; mean of 3 seeds; results/README.md): char +0.4% (headline 3x128,
# batch 32x128), +3.1% (3x256), +3.1% (batch 128x128), +1.2% (6x128); Bible +1.0% (headline). No trial failed
# in those runs: eta is the range test's edge/2 (within 1% of tuned AdamW at the headline shape only; a fixed
# pace or the test's valley did not close the rest)
# $ python train.py config/train_shakespeare_char_alsals.py
exec(open('config/train_shakespeare_char.py').read())

out_dir = 'out-shakespeare-char-alsals'
optimizer = 'alsals'
# the start: an LR range test instead of an AdamW warmup to learning_rate (False: the paper's)
ls_range_test = True
# the range test starts here whatever learning_rate is: the first guess plays no part (0: from
# learning_rate/100)
ls_ramp_from = 3e-5
# the Armijo constant of Kenneweg, Galli, Kenneweg, Hammer, "Faster Convergence for Transformer Fine-tuning
# with Line Search Methods", 2023 (the ALSALS paper's 0.6 cut eta 5x at a 4x batch: +13% there)
ls_c = 0.1
# no growth between steps ([A] Eq. 2's b = 500 doubles eta every 500 steps; the search accepts whatever eta it
# is given, so growth only drifts it up: +2-3% at three shapes)
ls_b = 1e9
ls_ema_warmup_steps = 25 # the last 25 steps at the range test's eta warm the criterion's EMAs
# after a search accepted at its first trial, the next 15 steps take the grown eta without a trial (cost <=
# 1.10 forwards a step; 0 = the paper's search on every step)
ls_skip_stable = 15
# anneal the applied step (the search keeps its eta) linearly to ls_anneal_to = 0.1 of it over the last 20% of
# lr_decay_iters (min_lr plays no part): warmup-stable-decay on top of the search; 0 = the paper's constant
# step
ls_anneal_frac = 0.2
