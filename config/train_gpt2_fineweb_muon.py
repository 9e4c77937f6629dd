# GPT-2 (124M) on FineWeb-Edu sample-10BT with Muon on the hidden matrices and AdamW on the embeddings, the
# tied head, the norms and biases: config/train_gpt2_fineweb_adamw.py's batch, length, data, schedule and
# evals, Muon at its lr 0.02. Prepare first: python data/fineweb_edu/prepare.py &&
# python data/hellaswag/prepare.py
# $ torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2_fineweb_muon.py
exec(open('config/train_gpt2_fineweb_adamw.py').read())

wandb_run_name = 'gpt2-124M-fineweb-muon'
out_dir = 'out-fineweb-muon'
optimizer = 'muon'
learning_rate = 0.02 # Muon's lr (torch.optim.Muon's documented example; Keller Jordan's default)
muon_adamw_lr = 6e-4 # the AdamW part: the recipe's AdamW lr
