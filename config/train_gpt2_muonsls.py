# GPT-2 (124M) on OpenWebText with MuonSLS: ALSALS's Armijo search on Muon's direction (the hidden matrices; Adam's
# direction on the embeddings, the tied head, the norms and biases), with the ALSALS config's start (an LR range
# test), skipping and anneal. learning_rate is the only lr to set: the range test's first guess; the AdamW part steps
# at muon_adamw_ratio of the Muon part's (one eta for both)
# $ torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2_muonsls.py
exec(open('config/train_gpt2_alsals.py').read())

wandb_run_name = 'gpt2-124M-muonsls'
optimizer = 'muonsls'
learning_rate = 0.02 # the range test's first guess (from learning_rate/100): Muon's lr (torch.optim.Muon's example)
muon_adamw_ratio = 1 / 3 # the AdamW part at 1/3 of the Muon part's step (the study's tuned pair: Muon 0.03, AdamW 0.01)
