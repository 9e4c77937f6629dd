# the small character-level Shakespeare GPT of config/train_shakespeare_char.py, trained with ALSALS:
# 50 AdamW warmup steps to learning_rate, then the line search (no decay schedule)
# $ python train.py config/train_shakespeare_char_alsals.py
exec(open('config/train_shakespeare_char.py').read())

out_dir = 'out-shakespeare-char-alsals'
optimizer = 'alsals'
ls_ema_warmup_steps = 25 # warm the criterion's EMAs during the last half of the warmup
