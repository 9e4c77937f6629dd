# GPT-2 (124M) on OpenWebText with Muon on the hidden matrices (torch.optim.Muon) and AdamW on the embeddings,
# the tied head, the norms and biases, at nanoGPT's AdamW lr; the same warmup and cosine schedule scales both
# parts
# $ torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2_muon.py
exec(open('config/train_gpt2.py').read())

wandb_run_name = 'gpt2-124M-muon'
optimizer = 'muon'
learning_rate = 0.02 # Muon's lr (torch.optim.Muon's documented example; Keller Jordan's default)
min_lr = 0.002 # learning_rate / 10
muon_adamw_lr = 6e-4 # the AdamW part: nanoGPT's AdamW lr (config/train_gpt2.py)
