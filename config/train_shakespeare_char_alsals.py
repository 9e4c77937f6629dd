# the small character-level Shakespeare GPT of config/train_shakespeare_char.py, trained with ALSALS as
# shipped, which is, measured: an LR range test from 3e-5 (eta doubling every warmup_iters/10 steps until the
# smoothed loss rises; no lr is read), a constant step at half that edge's eta for the rest of the run, an
# Armijo test that acts only as a tripwire (c = 0.1 and no growth: in the study no trial failed, so the search
# changed nothing; --ls_search=False is the same run without its trial forwards), and a warmup-stable-decay
# anneal over the last 20%. Its gaps to tuned AdamW per shape, and the mechanisms that did not beat it:
# results/README.md
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
# with Line Search Methods", 2023 (the ALSALS paper's 0.6 cuts eta below the edge's level at large batches)
ls_c = 0.1
# no growth between steps ([A] Eq. 2's b = 500 doubles eta every 500 steps; the search accepts whatever eta
# it is given, so growth only drifts it up)
ls_b = 1e9
ls_ema_warmup_steps = 25 # the last 25 steps at the range test's eta warm the criterion's EMAs
# after a trial accepted at its first eta, the next 15 steps take it without a trial (0 = the paper's trial
# on every step)
ls_skip_stable = 15
# anneal the applied step (the search keeps its eta) linearly to ls_anneal_to = 0.1 of it over the last 20%
# of lr_decay_iters (min_lr plays no part): warmup-stable-decay on top of the constant step; 0 = the paper's
# constant step
ls_anneal_frac = 0.2
