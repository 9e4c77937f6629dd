# the small character-level Shakespeare GPT of config/train_shakespeare_char.py, trained with ALSALS:
# 50 AdamW warmup steps to learning_rate, then the line search; its applied step anneals over the last 20%
# $ python train.py config/train_shakespeare_char_alsals.py
exec(open('config/train_shakespeare_char.py').read())

out_dir = 'out-shakespeare-char-alsals'
optimizer = 'alsals'
ls_ema_warmup_steps = 25 # warm the criterion's EMAs during the last half of the warmup
ls_skip_stable = 3 # after a search accepted at its first trial, the next 3 steps take the grown eta without a trial (cost; loss-neutral in the README's study; 0 = the paper's search on every step)
ls_anneal_frac = 0.2 # anneal the applied step (the search keeps its eta) linearly to min_lr/learning_rate over the last 20% of lr_decay_iters: warmup-stable-decay on top of the search (README: Annealing); 0 = the paper's constant step
