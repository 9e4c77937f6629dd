# config/train_shakespeare.py (GPT-2 BPE) with ALSALS after the 30-step AdamW warmup
exec(open('config/train_shakespeare.py').read())
out_dir = 'out-shakespeare-alsals'
optimizer = 'alsals'
ls_ema_warmup_steps = 15
