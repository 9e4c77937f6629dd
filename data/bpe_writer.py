"""
What the web-corpus prepare scripts (openwebtext/, fineweb_edu/) share: read a corpus with 🤗 `datasets` as a
stream, tokenize it with GPT-2 BPE (every document, then <|endoftext|>) and write uint16 train.bin / val.bin.

- Sources, all through one `load_dataset(..., split='train', streaming=True)` call: a Hub dataset stored as
  parquet (read over HTTP batch by batch, nothing goes to the HF cache), a local copy of such a repository
  (`--dataset DIR`, e.g. from `hf download`), or local .parquet/.jsonl/.json/.txt files (`--data_files`).
  Memory holds one batch of documents, never the corpus.
- Val: one document in every round(1/test_size), drawn at random within each block of that many (seeded), so the
  same corpus and seed give the same val set, held out from train.
- Interrupted (Ctrl-C, kill, a full disk, a lost network), a run starts over: it writes train.bin.tmp and
  val.bin.tmp and renames them to train.bin / val.bin only once both are complete, so a train.bin is always whole
  and an earlier pair stays until a new one replaces it. A rerun truncates leftover .tmp files.
- Before writing, the free disk space is checked against an estimate of the output.
"""
import argparse
import errno
import glob
import itertools
import os
import shutil
import sys
import time

import numpy as np
from tqdm import tqdm

from data.gpt2_bpe import gpt2_encoding

BUILDERS = {".txt": "text", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
# GPT-2 BPE takes ~4.2 bytes of web text a token (OpenWebText: 38 GB of text, 9.0B tokens), ~3.55 of Shakespeare and
# the King James Bible (measured); the disk check assumes 3.5, erring toward more disk
BYTES_PER_TOKEN = 3.5
BATCH_DOCS = 1024  # documents tokenized (in threads) and written per step


class PrepareError(Exception):
    """Bad input or environment, reported as one line."""


def resolve_files(patterns):
    """Every local file the --data_files patterns (globs allowed) name, and the datasets builder for their type."""
    files = []
    for pattern in patterns:
        found = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
        if not found:
            raise PrepareError(f"missing data files: nothing matches --data_files {pattern}")
        files += found
    exts = {os.path.splitext(f)[1].lower() for f in files}
    if len(exts) > 1 or not exts <= BUILDERS.keys():
        raise PrepareError(f"--data_files: got extensions {sorted(exts)}, expected one of {sorted(BUILDERS)}")
    return files, BUILDERS[exts.pop()]


def is_local(dataset):
    return os.path.isdir(dataset) or dataset.startswith((".", "/", "~"))


def open_corpus(dataset, subset=None, revision=None, data_files=None, cache_dir=None):
    """(the 'train' split as a streaming datasets.IterableDataset, the local files it reads or None for the Hub)."""
    from datasets import load_dataset, load_dataset_builder  # imported here: importing datasets takes a second
    if data_files:
        files, builder = resolve_files(data_files)
        kwargs = dict(path=builder, data_files={"train": files})
    elif is_local(dataset):  # a local copy of a Hub repository: its README's configs name the subsets' files
        if not os.path.isdir(os.path.expanduser(dataset)):
            raise PrepareError(f"missing data files: no directory {dataset}")
        kwargs = dict(path=os.path.abspath(os.path.expanduser(dataset)), name=subset)
        files = list(load_dataset_builder(**kwargs, cache_dir=cache_dir).config.data_files["train"])
    else:
        kwargs = dict(path=dataset, name=subset, revision=revision)
        files = None
    ds = load_dataset(**kwargs, split="train", streaming=True, cache_dir=cache_dir)
    if ds.column_names and "text" in ds.column_names:  # (text_batches reports a missing one)
        ds = ds.select_columns(["text"])  # FineWeb-Edu's other columns need no converting to Python
    return ds, files


def local_text_bytes(files):
    """(bytes of text, documents or None) in local files: parquet footers give the 'text' column's uncompressed
    size and the row count without reading the data; other files count whole."""
    import pyarrow.parquet as pq
    n_bytes, n_docs = 0, 0
    for f in files:
        if f.lower().endswith(".parquet"):
            meta = pq.ParquetFile(f).metadata
            n_docs = None if n_docs is None else n_docs + meta.num_rows
            for g in range(meta.num_row_groups):
                rg = meta.row_group(g)
                n_bytes += sum(rg.column(c).total_uncompressed_size for c in range(rg.num_columns)
                               if rg.column(c).path_in_schema == "text")
        else:
            n_bytes += os.path.getsize(f)
            n_docs = None
    return n_bytes, n_docs


def gb(n_bytes):
    return f"{n_bytes / 1e9:.2f} GB" if n_bytes >= 1e8 else f"{n_bytes / 1e6:.3f} MB"


def check_disk(out_dir, need_bytes, how):
    """Exit early, with one line, when out_dir cannot hold need_bytes more (leftover .tmp files count as free)."""
    os.makedirs(out_dir, exist_ok=True)
    free = shutil.disk_usage(out_dir).free
    free += sum(os.path.getsize(p) for p in glob.glob(os.path.join(out_dir, "*.bin.tmp")))
    if need_bytes > free:
        raise PrepareError(f"not enough disk space in {out_dir}: train.bin + val.bin need ~{gb(need_bytes)} "
                           f"({how}), {gb(free)} free")
    print(f"disk: ~{gb(need_bytes)} needed ({how}), {gb(free)} free in {out_dir}")


def text_batches(ds, source):
    """Lists of document strings from a streaming dataset; a missing 'text' column is a one-line error."""
    for batch in ds.iter(batch_size=BATCH_DOCS):
        if "text" not in batch:
            raise PrepareError(f"no 'text' column in {source} (columns: {sorted(batch)})")
        if None in batch["text"]:
            raise PrepareError(f"a document without text (null) in {source}")
        yield batch["text"]


def write_bins(batches, out_dir, test_size=0.0005, seed=2357, num_threads=1, total_docs=None):
    """Tokenize documents (each followed by <|endoftext|>) from `batches` (lists of strings) into out_dir/train.bin
    and val.bin (uint16), one document in every round(1/test_size) going to val. Returns {split: (docs, tokens)}."""
    every = round(1 / test_size)
    enc = gpt2_encoding()
    os.makedirs(out_dir, exist_ok=True)
    final = {s: os.path.join(out_dir, f"{s}.bin") for s in ("train", "val")}
    tmp = {s: p + ".tmp" for s, p in final.items()}
    files = {s: open(p, "wb") for s, p in tmp.items()}  # "wb" truncates what an interrupted run left
    counts = {s: [0, 0] for s in final}
    rng = np.random.default_rng(seed)
    i, val_at = 0, -1
    try:
        with tqdm(total=total_docs, unit=" docs", desc=f"tokenizing into {out_dir}") as bar:
            for texts in batches:
                parts = {"train": [], "val": []}
                for ids in enc.encode_ordinary_batch(texts, num_threads=num_threads):
                    if i % every == 0:  # a new block: draw which of its documents is val
                        val_at = i + int(rng.integers(every))
                    ids.append(enc.eot_token)  # 50256 < 2**16, as every GPT-2 id: uint16 holds them
                    parts["val" if i == val_at else "train"].append(ids)
                    i += 1
                for split, docs in parts.items():
                    n = sum(map(len, docs))
                    files[split].write(np.fromiter(itertools.chain.from_iterable(docs), np.uint16, n).tobytes())
                    counts[split][0] += len(docs)
                    counts[split][1] += n
                bar.update(len(texts))
                bar.set_postfix(tokens=f"{counts['train'][1] + counts['val'][1]:,}", refresh=False)
        for split, (docs, _) in counts.items():
            if docs == 0:
                raise PrepareError(f"{split} would be empty: {i} documents, one in every {every} goes to val "
                                   f"(--test_size {test_size}); give more documents or a larger --test_size")
        for f in files.values():
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename makes it train.bin
            f.close()
        for split in ("val", "train"):
            os.replace(tmp[split], final[split])
    except BaseException:  # interrupted or failed: leave nothing half-written, whatever the cause
        for split, f in files.items():
            f.close()
            if os.path.exists(tmp[split]):
                os.remove(tmp[split])
        raise
    for split, (docs, tokens) in counts.items():
        print(f"{split}: {docs:,} documents, {tokens:,} tokens -> {final[split]}")
    return {s: tuple(c) for s, c in counts.items()}


def one_line(e, dataset, subset):
    """The one-line message for an error from datasets / huggingface_hub / pyarrow."""
    import httpx
    from datasets.exceptions import DatasetNotFoundError
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if isinstance(e, PrepareError):
        return msg
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return f"disk full ({msg}): train.bin / val.bin are untouched; free some space and rerun"
    if isinstance(e, (ConnectionError, httpx.TransportError)):
        return (f"no network: could not reach {dataset} on the Hugging Face Hub ({type(e).__name__}: {msg}); "
                f"without network use --data_files PATH_OR_GLOB (local .parquet/.jsonl/.txt) or --dataset LOCAL_COPY")
    if isinstance(e, ValueError) and msg.startswith("BuilderConfig"):
        return f"no subset {subset!r} in {dataset}: {msg}"
    if isinstance(e, RuntimeError) and "scripts are no longer supported" in msg:
        return (f"{dataset} is a loading script, which datasets>=4 no longer runs: use its parquet conversion "
                f"(--revision refs/convert/parquet) or --data_files ({msg})")
    if isinstance(e, DatasetNotFoundError):
        return f"{dataset}: {msg}"
    if isinstance(e, FileNotFoundError):
        return f"missing data files: {msg}"
    return f"could not read {dataset} ({type(e).__name__}: {msg})"


def main(doc, script, dataset, subset=None, revision=None, known=None):
    """The command line of a web-corpus prepare script. `known`: {subset: (documents, tokens)} of the default
    Hub dataset, for the disk estimate and the progress bar when it is streamed."""
    known = known or {}
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_files", nargs="+", default=None,
                        help="local .parquet/.jsonl/.json/.txt files or globs, read instead of --dataset")
    parser.add_argument("--dataset", default=dataset, help="Hub dataset id, or a local copy of its repository")
    parser.add_argument("--subset", default=subset, help="the dataset's subset (config name)")
    parser.add_argument("--revision", default=revision, help="the Hub revision (branch, tag or commit)")
    parser.add_argument("--num_proc", type=int, default=os.cpu_count() or 1, help="tokenizer threads")
    parser.add_argument("--test_size", type=float, default=0.0005, help="fraction of documents held out as val")
    parser.add_argument("--seed", type=int, default=2357)
    parser.add_argument("--out_dir", default=os.path.dirname(os.path.abspath(script)))
    parser.add_argument("--cache_dir", default=None, help="Hugging Face datasets cache (default: HF_DATASETS_CACHE)")
    args = parser.parse_args()
    source = " ".join(args.data_files) if args.data_files else args.dataset
    try:
        if not 0 < args.test_size <= 0.5:
            raise PrepareError(f"--test_size must be in (0, 0.5], got {args.test_size}")
        if args.num_proc < 1:
            raise PrepareError(f"--num_proc must be >= 1, got {args.num_proc}")
        t0 = time.time()
        ds, files = open_corpus(args.dataset, args.subset, args.revision, args.data_files, args.cache_dir)
        docs = None
        if files is not None:
            n_bytes, docs = local_text_bytes(files)
            check_disk(args.out_dir, int(2 * n_bytes / BYTES_PER_TOKEN),
                       f"{gb(n_bytes)} of text in {len(files)} files, {BYTES_PER_TOKEN} bytes a token")
        elif args.dataset == dataset and args.subset in known:
            docs, tokens = known[args.subset]
            check_disk(args.out_dir, 2 * tokens, f"{dataset} {args.subset or ''}: ~{tokens / 1e9:.1f}B tokens")
        else:
            print(f"disk: the size of {args.dataset} {args.subset or ''} is not known here, not checked")
        sizes = write_bins(text_batches(ds, source), args.out_dir, args.test_size, args.seed, args.num_proc, docs)
        print(f"done in {time.time() - t0:.1f} s")
        got = sizes["train"][1] + sizes["val"][1]
        if files is None and args.dataset == dataset and args.subset in known and got < 0.9 * known[args.subset][1]:
            print(f"warning: {got:,} tokens, expected ~{known[args.subset][1] / 1e9:.1f}B: the Hub's copy of "
                  f"{dataset} may be partial; the full corpus can be read with --data_files")
        return sizes
    except KeyboardInterrupt:
        sys.exit("error: interrupted; train.bin / val.bin are untouched, rerun to start over")
    except Exception as e:
        import pyarrow
        if not isinstance(e, (PrepareError, OSError, ValueError, RuntimeError, pyarrow.ArrowException)) \
                and type(e).__module__.split(".")[0] not in ("datasets", "huggingface_hub", "httpx", "fsspec"):
            raise  # a bug, not bad input: keep the traceback
        sys.exit(f"error: {one_line(e, source, args.subset)}")
