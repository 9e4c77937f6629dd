# the small character-level Shakespeare GPT of config/train_shakespeare_char.py, trained with MuonSLS:
# ALSALS's Armijo search on Muon's direction (the 2-D weights inside the blocks; Adam's direction on the
# embeddings, the tied head, the norms and biases), started as Muon is (a warmup to learning_rate), then the
# search with the ALSALS config's skipping and anneal. learning_rate is the only lr to set; the AdamW part
# steps at muon_adamw_ratio of the Muon part's (one eta for both)
# $ python train.py config/train_shakespeare_char_muonsls.py
exec(open('config/train_shakespeare_char_alsals.py').read())

out_dir = 'out-shakespeare-char-muonsls'
optimizer = 'muonsls'
# the warmup's target, then the search's first eta: Muon's lr (torch.optim.Muon's example), an RMS-to-RMS step
# that transfers across width
learning_rate = 0.02
# Muon's own start, a warmup to learning_rate: from the range test MuonSLS ran at 2-5x tuned Muon's lr (+4.4%
# char, +5.2% Bible); from 0.02 behind tuned Muon +1.7% (char and Bible at 3x128, char at 3x256), +3.4% (char,
# batch 128x128); one seed each
ls_range_test = False
# the search's own defaults (c = 0.6, b = 500), as measured on Muon's direction
ls_ramp_from = ls_c = ls_b = None
# the AdamW part at 1/3 of the Muon part's step (the study's tuned pair: Muon 0.03, AdamW 0.01)
muon_adamw_ratio = 1 / 3
