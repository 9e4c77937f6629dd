# config/train_shakespeare.py (GPT-2 BPE) with ALSALS after the 30-step AdamW warmup
exec(open('config/train_shakespeare.py').read())
out_dir = 'out-shakespeare-alsals'
optimizer = 'alsals'
ls_ema_warmup_steps = 15
ls_skip_stable = 3 # after a search accepted at its first trial, the next 3 steps take the grown eta without a trial (cost; loss-neutral in the README's study; 0 = the paper's search on every step)
