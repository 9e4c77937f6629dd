"""
Prepare OpenWebText (Skylion007/openwebtext, 8,013,769 documents) with the GPT-2 BPE tokenizer, as in
nanoGPT: every document is encode_ordinary + <|endoftext|>, one document in 2000 (seeded) is val, train.bin /
val.bin are flat uint16 arrays.
The whole corpus, not a part: the Hub's OpenWebText is a loading script, which datasets>=4 no longer runs, and
the Hub's automatic parquet conversion of it (refs/convert/parquet) holds only the first 5 GB (its files lie
under plain_text/partial-train/). The default reads the full parquet conversion of the repository's pull
request #18 (refs/pr/18: data/train-000NN-of-00093.parquet) at a pinned commit, as plain parquet, streamed:
nothing goes to the HF cache. A partial copy is refused before anything is tokenized. See data/bpe_writer.py
for the streaming, the checks, the val split, the disk check and what an interrupted run leaves (nothing: it
starts over).
$ python data/openwebtext/prepare.py                        # streams the full parquet from the Hub
$ python data/openwebtext/prepare.py --data_files 'LOCAL_COPY/data/*.parquet'  # offline, from a copy made by:
  hf download Skylion007/openwebtext --repo-type dataset --revision 963532436460638ab26b7633e23776e6c7e37d59
  --include 'data/*' --include README.md --local-dir LOCAL_COPY
$ python data/openwebtext/prepare.py --dataset LOCAL_COPY   # offline: that copy, read as a repository
$ python data/openwebtext/prepare.py --data_files 'my_corpus/*.jsonl'  # any local .parquet/.jsonl/.txt corpus
With .txt files every line is a document; .json(l)/.parquet files need a "text" column.
"""
import os
import sys

# make the repo root importable, so this runs as `python data/openwebtext/prepare.py` from anywhere
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from data.bpe_writer import main  # noqa: E402

# refs/pr/18's commit that adds the last of its 93 shards (data/train-00050..00092-of-00093.parquet)
REVISION = "963532436460638ab26b7633e23776e6c7e37d59"
# read as plain parquet: the tree at REVISION still holds openwebtext.py, which datasets>=4 refuses to load
FILES = "data/train-*.parquet"
FULL_HINT = (f"the full corpus is the default --revision {REVISION} (refs/pr/18, "
             f"data/train-*-of-00093.parquet), or --data_files 'DIR/data/*.parquet' for a local full copy")
# nanoGPT's figures for the full corpus: 8,013,769 documents, 9,035,582,198 train + 4,434,897 val tokens
KNOWN = {None: (8_013_769, 9_040_017_095)}

if __name__ == "__main__":
    main(__doc__, __file__, dataset="Skylion007/openwebtext", revision=REVISION, known=KNOWN, hub_files=FILES,
         full_hint=FULL_HINT)
