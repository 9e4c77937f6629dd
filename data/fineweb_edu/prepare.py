"""
Prepare FineWeb-Edu (HuggingFaceFW/fineweb-edu; Lozhkov, Ben Allal, von Werra, Wolf, "FineWeb-Edu: the Finest
Collection of Educational Content", 2024) with the GPT-2 BPE tokenizer as llm.c's dev/data/fineweb.py does, so
that val losses compare with llm.c's: every document is <|endoftext|> + encode_ordinary, in the dataset's
order; val.bin is the documents that start within the first 100M tokens (llm.c's first shard, its val), whole;
train.bin is the rest. The Hub stores the dataset as
parquet, which datasets streams: nothing goes to the HF cache. See data/bpe_writer.py for the streaming, the
checks, the disk check and what an interrupted run leaves (nothing: it starts over).
$ python data/fineweb_edu/prepare.py                          # sample-10BT (~10B GPT-2 tokens), streamed
$ python data/fineweb_edu/prepare.py --subset sample-100BT    # or sample-350BT, default, CC-MAIN-2024-10, ...
$ python data/fineweb_edu/prepare.py --dataset LOCAL_COPY     # offline: a downloaded copy of the repo (its
  README names the subsets' files), e.g. from: hf download HuggingFaceFW/fineweb-edu --repo-type dataset
  --include 'sample/10BT/*' --include README.md --local-dir LOCAL_COPY
$ python data/fineweb_edu/prepare.py --data_files 'LOCAL_COPY/sample/10BT/*.parquet'   # offline: the files
"""
import os
import sys

# make the repo root importable, so this runs as `python data/fineweb_edu/prepare.py` from anywhere
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from data.bpe_writer import main  # noqa: E402

# the subsets' GPT-2 tokens as the dataset card gives them, sample-10BT's documents as reported for its 14
# parquet files (data/README.md); the others' documents come from the footers where they are read
KNOWN = {"sample-10BT": (9_672_101, 10 * 10**9), "sample-100BT": (None, 100 * 10**9),
         "sample-350BT": (None, 350 * 10**9), "default": (None, 1300 * 10**9)}
VAL_TOKENS = 10**8  # llm.c's shard size (fineweb.py --shard_size): its shard 0 is val, the rest train

if __name__ == "__main__":
    main(__doc__, __file__, dataset="HuggingFaceFW/fineweb-edu", subset="sample-10BT", known=KNOWN,
         eot_first=True, val_tokens=VAL_TOKENS)
