"""
Download HellaSwag's validation set (10,042 items, the official jsonl of rowanz/hellaswag, MIT) for train.py's
hellaswag_file. Needs network once; without it, a one-line error (copy the file here by hand instead).
$ python data/hellaswag/prepare.py            # writes data/hellaswag/hellaswag_val.jsonl
$ python train.py config/... --hellaswag_file=data/hellaswag/hellaswag_val.jsonl
"""
import argparse
import os
import sys
import tempfile
import urllib.request

# make the repo root importable, so this runs as `python data/hellaswag/prepare.py` from anywhere
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from trainer.hellaswag import load_items  # noqa: E402

URL = "https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_val.jsonl"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hellaswag_val.jsonl")


def prepare(url=URL, out=OUT, timeout=60):
    """Download url to out (atomically: a temp file renamed once it parses as HellaSwag); the item count."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            data = r.read()
    except (OSError, ValueError) as e:  # URLError, timeouts, a malformed URL
        raise ConnectionError(f"cannot download {url} ({getattr(e, 'reason', None) or e}); without network, "
                              f"copy hellaswag_val.jsonl to {out}") from None
    d = os.path.dirname(os.path.abspath(out))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".hellaswag.", suffix=".tmp", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            n = len(load_items(tmp))
        except ValueError as e:  # named by the line that is not HellaSwag
            raise ValueError(str(e).replace(tmp, url)) from None
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return n


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=URL,
                   help="where to read the jsonl from (any URL urllib opens, file:// too)")
    p.add_argument("--out", default=OUT, help="the file to write")
    a = p.parse_args()
    try:
        n = prepare(a.url, a.out)
    except (ConnectionError, ValueError, OSError) as e:
        sys.exit(f"error: {e}")
    print(f"wrote {n:,} HellaSwag items to {a.out}")
