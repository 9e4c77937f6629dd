# the small character-level Shakespeare GPT of config/train_shakespeare_char.py, trained with MuonSLS:
# ALSALS's Armijo search on Muon's direction (the 2-D weights inside the blocks; Adam's direction on the
# embeddings, the tied head, the norms and biases). Its level is Muon's documented lr, not learning_rate: a
# warmup to ls_lr = 0.02, then the search as in config/train_shakespeare_char_alsals.py (c = 0.1, no growth:
# it keeps that step unless a trial fails) with its skipping and anneal; the AdamW part steps at
# muon_adamw_ratio of the Muon part's
# $ python train.py config/train_shakespeare_char_muonsls.py
exec(open('config/train_shakespeare_char_alsals.py').read())

out_dir = 'out-shakespeare-char-muonsls'
optimizer = 'muonsls'
ls_range_test = False # Muon's own start, a warmup (the range test reads Muon's scale too high: results/)
# the warmup's target and the search's first eta, whatever learning_rate is: torch.optim.Muon's lr
ls_lr = 0.02
muon_adamw_ratio = 1 / 3 # the AdamW part at 1/3 of the Muon part's step
