"""
Prepare OpenWebText (or any local text corpus) with the GPT-2 BPE tokenizer, as in nanoGPT: every document is
encode_ordinary + <|endoftext|>, one document in 2000 (seeded) is val, train.bin / val.bin are flat uint16 arrays.
The Hub's OpenWebText is a loading script, which datasets>=4 no longer runs; its parquet conversion (the branch
refs/convert/parquet) loads with plain datasets, streamed: nothing goes to the HF cache. See data/bpe_writer.py
for the streaming, the val split, the disk check and what an interrupted run leaves (nothing: it starts over).
$ python data/openwebtext/prepare.py                                      # streams the Hub's parquet conversion
$ python data/openwebtext/prepare.py --data_files 'my_corpus/*.parquet'   # offline: local .parquet/.jsonl/.txt
$ python data/openwebtext/prepare.py --dataset LOCAL_COPY                 # offline: a downloaded copy of the repo
With .txt files every line is a document; .json(l)/.parquet files need a "text" column.
"""
import os
import sys

# make the repo root importable, so this runs as `python data/openwebtext/prepare.py` from anywhere
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from data.bpe_writer import main  # noqa: E402

# nanoGPT's figures for the full corpus: 8,013,769 documents, 9,035,582,198 train + 4,434,897 val tokens
KNOWN = {None: (8_013_769, 9_040_017_095)}

if __name__ == "__main__":
    main(__doc__, __file__, dataset="Skylion007/openwebtext", revision="refs/convert/parquet", known=KNOWN)
