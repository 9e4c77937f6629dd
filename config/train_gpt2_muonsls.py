# GPT-2 (124M) on OpenWebText with MuonSLS: ALSALS's Armijo search on Muon's direction (the hidden matrices;
# Adam's direction on the embeddings, the tied head, the norms and biases), with the settings of
# config/train_shakespeare_char_muonsls.py: a warmup to Muon's lr ls_lr = 0.02 (not learning_rate), then the
# search with config/train_gpt2_alsals.py's constants, skipping and anneal (not measured at the ladder's
# large-batch rung; on CPU shapes it trails tuned Muon: results/README.md)
# $ torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2_muonsls.py
exec(open('config/train_gpt2_alsals.py').read())

wandb_run_name = 'gpt2-124M-muonsls'
optimizer = 'muonsls'
ls_range_test, ls_ramp_from = False, None # Muon's own start, a warmup
ls_lr, muon_adamw_ratio = 0.02, 1 / 3 # the level whatever learning_rate is; the AdamW part at 1/3 of the step
