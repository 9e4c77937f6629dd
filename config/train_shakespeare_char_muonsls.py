# the small character-level Shakespeare GPT of config/train_shakespeare_char.py, trained with MuonSLS: ALSALS's
# Armijo search on Muon's direction (the 2-D weights inside the blocks; Adam's direction on the embeddings, the tied
# head, the norms and biases), with the ALSALS config's start (an LR range test), skipping and anneal.
# learning_rate is the only lr to set: the range test's first guess. The AdamW part steps at muon_adamw_ratio of
# the Muon part's (one eta for both)
# $ python train.py config/train_shakespeare_char_muonsls.py
exec(open('config/train_shakespeare_char_alsals.py').read())

out_dir = 'out-shakespeare-char-muonsls'
optimizer = 'muonsls'
learning_rate = 0.02 # the range test's first guess (from learning_rate/100): Muon's lr (torch.optim.Muon's example)
muon_adamw_ratio = 1 / 3 # the AdamW part at 1/3 of the Muon part's step (the study's tuned pair: Muon 0.03, AdamW 0.01)
