"""
What the small-corpus prepare scripts share: the train/val split (val = the contiguous tail, so the model
never trains on it) written as uint16 train.bin / val.bin, and their command line.
"""
import argparse
import os
import sys


def write_train_val(ids, out_dir, val_frac):
    """Write ids[:n] to train.bin and the contiguous tail ids[n:] to val.bin; return the two lengths."""
    n = int(len(ids) * (1 - val_frac))
    train_ids, val_ids = ids[:n], ids[n:]
    print(f"train has {len(train_ids):,} tokens")
    print(f"val has {len(val_ids):,} tokens")
    os.makedirs(out_dir, exist_ok=True)
    train_ids.tofile(os.path.join(out_dir, "train.bin"))
    val_ids.tofile(os.path.join(out_dir, "val.bin"))
    return len(train_ids), len(val_ids)


def main(prepare, doc, script):
    """The command line of a prepare script: --max_chars, --out_dir (default: the script's folder),
    --val_frac; a missing source package is a one-line error."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max_chars", type=int, default=None,
                        help="use only the first N characters (default: all)")
    parser.add_argument("--out_dir", default=os.path.dirname(os.path.abspath(script)))
    parser.add_argument("--val_frac", type=float, default=0.1)
    args = parser.parse_args()
    try:
        prepare(args.out_dir, args.max_chars, args.val_frac)
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")
