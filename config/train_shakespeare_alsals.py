# config/train_shakespeare.py (GPT-2 BPE) with ALSALS as shipped (config/train_shakespeare_char_alsals.py's
# start and constants): an LR range test from 3e-5, a hold at half its edge's eta, the search as a tripwire,
# the anneal
# $ python train.py config/train_shakespeare_alsals.py
exec(open('config/train_shakespeare.py').read())
out_dir = 'out-shakespeare-alsals'
optimizer = 'alsals'
ls_range_test = True # the start: an LR range test, then a hold at half its edge (False: the paper's warmup)
ls_ramp_from = 3e-5 # the range test's first eta, whatever learning_rate is (0: learning_rate/100)
ls_c = 0.1 # the Armijo constant of config/train_shakespeare_char_alsals.py (Kenneweg et al., 2023)
ls_b = 1e9 # no growth between steps: the search keeps the range test's eta unless the Armijo test fails
ls_ema_warmup_steps = 15 # the hold's last 15 steps take a trial that warms the criterion's EMAs
# after a trial accepted at its first eta, the next 15 steps take it without a trial (0 = a trial every step)
ls_skip_stable = 15
# anneal the applied step (the search keeps its eta) linearly to ls_anneal_to = 0.1 of it over the last 20%
# of lr_decay_iters: warmup-stable-decay on top of the constant step
ls_anneal_frac = 0.2
