# the small character-level Shakespeare GPT of config/train_shakespeare_char.py, trained with Muon:
# torch.optim.Muon on the 2-D weights inside the blocks, AdamW on the embeddings (the lm_head is tied to wte:
# AdamW's), the norms and biases; the same warmup and cosine schedule scales both parts
# $ python train.py config/train_shakespeare_char_muon.py
exec(open('config/train_shakespeare_char.py').read())

out_dir = 'out-shakespeare-char-muon'
optimizer = 'muon'
learning_rate = 0.02 # Muon's lr (torch.optim.Muon's documented example; Keller Jordan's default)
min_lr = 0.002 # learning_rate / 10
muon_adamw_lr = 3e-3 # the AdamW part: this config's AdamW lr (config/train_shakespeare_char.py)
