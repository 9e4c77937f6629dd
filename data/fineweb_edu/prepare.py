"""
Prepare FineWeb-Edu (HuggingFaceFW/fineweb-edu; Lozhkov, Ben Allal, von Werra, Wolf, "FineWeb-Edu: the Finest
Collection of Educational Content", 2024) with the GPT-2 BPE tokenizer: every document is encode_ordinary +
<|endoftext|>, one document in 2000 (seeded) is val, train.bin / val.bin are flat uint16 arrays. The Hub stores it
as parquet, which datasets streams: nothing goes to the HF cache. See data/bpe_writer.py for the streaming, the
val split, the disk check and what an interrupted run leaves (nothing: it starts over).
$ python data/fineweb_edu/prepare.py                          # subset sample-10BT (~10B GPT-2 tokens), streamed
$ python data/fineweb_edu/prepare.py --subset sample-100BT    # or sample-350BT, default, CC-MAIN-2024-10, ...
$ python data/fineweb_edu/prepare.py --dataset LOCAL_COPY     # offline: a downloaded copy of the repo (its README
  names the subsets' files), e.g. from: hf download HuggingFaceFW/fineweb-edu --repo-type dataset
  --include 'sample/10BT/*' --include README.md --local-dir LOCAL_COPY
$ python data/fineweb_edu/prepare.py --data_files 'LOCAL_COPY/sample/10BT/*.parquet'   # offline: the files
"""
import os
import sys

# make the repo root importable, so this runs as `python data/fineweb_edu/prepare.py` from anywhere
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from data.bpe_writer import main  # noqa: E402

# the subsets' GPT-2 token counts as the dataset card gives them (documents unknown here); the rest: not checked
KNOWN = {"sample-10BT": (None, 10 * 10**9), "sample-100BT": (None, 100 * 10**9),
         "sample-350BT": (None, 350 * 10**9), "default": (None, 1300 * 10**9)}

if __name__ == "__main__":
    main(__doc__, __file__, dataset="HuggingFaceFW/fineweb-edu", subset="sample-10BT", known=KNOWN)
