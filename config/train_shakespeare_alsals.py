# config/train_shakespeare.py (GPT-2 BPE) with ALSALS after the 30-step AdamW warmup
exec(open('config/train_shakespeare.py').read())
out_dir = 'out-shakespeare-alsals'
optimizer = 'alsals'
ls_ema_warmup_steps = 15
ls_skip_stable = 3 # after a search accepted at its first trial, the next 3 steps take the grown eta without a trial (cost; loss-neutral in the README's study; 0 = the paper's search on every step)
ls_anneal_frac = 0.2 # anneal the applied step (the search keeps its eta) linearly to min_lr/learning_rate over the last 20% of lr_decay_iters: warmup-stable-decay on top of the search (README: Annealing); 0 = the paper's constant step
