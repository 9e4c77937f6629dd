# GPT-2 (124M) on OpenWebText with MuonSLS: ALSALS's Armijo search on Muon's direction (the hidden matrices;
# Adam's direction on the embeddings, the tied head, the norms and biases), started as Muon is (a warmup to
# learning_rate), then the search with the ALSALS config's skipping and anneal. learning_rate is the only lr
# to set; the AdamW part steps at muon_adamw_ratio of the Muon part's (one eta for both)
# $ torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2_muonsls.py
exec(open('config/train_gpt2_alsals.py').read())

wandb_run_name = 'gpt2-124M-muonsls'
optimizer = 'muonsls'
# Muon's start and lr, the search's own c and b (their reasons: config/train_shakespeare_char_muonsls.py)
# the warmup's target; the AdamW part at 1/3 of the Muon part's step
learning_rate, muon_adamw_ratio = 0.02, 1 / 3
ls_range_test, ls_ramp_from, ls_c, ls_b = False, None, None, None
