"""
What the web-corpus prepare scripts (openwebtext/, fineweb_edu/) share: read a corpus with 🤗 `datasets` as a
stream, tokenize it with GPT-2 BPE and write uint16 train.bin / val.bin, in one of two layouts:
- nanoGPT's (OpenWebText): every document then <|endoftext|>; val is one document in every
  round(1/test_size), drawn at random within each block of that many (seeded), held out from train.
- llm.c's (FineWeb-Edu): <|endoftext|> then every document; val is the contiguous head, the documents that
  start within the first val_tokens tokens (llm.c's first shard), whole; train is the rest, in order.

- Sources, all through one datasets builder streamed as 'train': a Hub dataset stored as parquet (read over
  HTTP batch by batch, nothing goes to the HF cache), a Hub repository's own parquet files at a pinned commit
  (for a repository whose tree still holds a loading script), a local copy of such a repository
  (`--dataset DIR`, e.g. from `hf download`), or local .parquet/.jsonl/.json/.txt files (`--data_files`).
  Memory holds one batch of documents, never the corpus.
- Before any document is read, the file list and the parquet footers are checked: the Hub's partial conversion
  (a 'partial-' folder), a missing shard or fewer documents than the dataset's known count is a one-line
  error; the footers' row count is the progress bar's total.
- Interrupted (Ctrl-C, kill, a full disk, a lost network), a run starts over: it writes train.bin.tmp and
  val.bin.tmp and renames them to train.bin / val.bin only once both are complete, so a train.bin is always
  whole and an earlier pair stays until a new one replaces it. A rerun truncates leftover .tmp files.
- Before writing, the free disk space is checked against an estimate of the output.
"""
import argparse
import errno
import glob
import itertools
import os
import re
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import numpy as np
from tqdm import tqdm

from data.gpt2_bpe import gpt2_encoding

BUILDERS = {".txt": "text", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
# GPT-2 BPE takes ~4.2 bytes of web text a token (OpenWebText: 38 GB of text, 9.0B tokens), ~3.55 of
# Shakespeare and the King James Bible (measured); the disk check assumes 3.5, erring toward more disk
BYTES_PER_TOKEN = 3.5
BATCH_DOCS = 1024  # documents tokenized (in threads) and written per step
# the dataset viewer puts what it converted of a dataset it cut at 5 GB under '<config>/partial-<split>/'
PARTIAL_PREFIX = "partial-"
SHARD_NAME = re.compile(r"-(\d+)-of-(\d+)\.\w+$")  # push_to_hub's shards: data/train-00007-of-00093.parquet
REMOTE_FOOTERS_MAX = 200  # footers read over HTTP at most: a Hub dataset of thousands of files goes without


class PrepareError(Exception):
    """Bad input or environment, reported as one line."""


def resolve_files(patterns):
    """Every local file the --data_files patterns (globs allowed) name, and the datasets builder for their
    type."""
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


def corpus_kwargs(dataset, subset=None, revision=None, data_files=None, hub_files=None):
    """The datasets builder's arguments for a source: local files (--data_files), a local copy of a Hub
    repository, the files `hub_files` (a glob) of a Hub repository at `revision` read as plain parquet, or a
    Hub dataset."""
    if data_files:
        files, builder = resolve_files(data_files)
        return dict(path=builder, data_files={"train": files})
    if is_local(dataset):  # a local copy of a Hub repository: its README's configs name the subsets' files
        if not os.path.isdir(os.path.expanduser(dataset)):
            raise PrepareError(f"missing data files: no directory {dataset}")
        return dict(path=os.path.abspath(os.path.expanduser(dataset)), name=subset)
    if hub_files:  # the parquet builder never looks for a loading script, which datasets>=4 refuses to run
        url = f"hf://datasets/{dataset}@{quote(revision, safe='')}/{hub_files}"
        return dict(path="parquet", data_files={"train": url})
    return dict(path=dataset, name=subset, revision=revision)


def open_corpus(kwargs, source, cache_dir=None):
    """(the datasets builder, the files its 'train' split reads, the documents its dataset card gives or
    None)."""
    from datasets import load_dataset_builder  # imported here: importing datasets takes a second
    builder = load_dataset_builder(**kwargs, cache_dir=cache_dir)
    if "train" not in (builder.config.data_files or {}):
        splits = sorted(builder.config.data_files or {})
        raise PrepareError(f"no 'train' split in {source} (splits: {splits})")
    files = [str(f) for f in builder.config.data_files["train"]]
    info = (builder.info.splits or {}).get("train")
    return builder, files, (info.num_examples or None) if info else None


def stream(builder):
    """The 'train' split as a streaming datasets.IterableDataset, of the 'text' column where the files have
    more."""
    ds = builder.as_streaming_dataset(split="train")
    if ds.column_names and "text" in ds.column_names:  # (text_batches reports a missing one)
        ds = ds.select_columns(["text"])  # FineWeb-Edu's other columns need no converting to Python
    return ds


def text_sizes(files):
    """(bytes of text, documents) in `files`, local or remote, without reading the data: parquet footers give
    the 'text' column's uncompressed size and the row count; other local files count whole, their documents
    None. (None, None) for more remote files than REMOTE_FOOTERS_MAX or remote files that are not parquet."""
    import fsspec
    import pyarrow.parquet as pq
    remote = [f for f in files if "://" in f]
    if remote and (len(remote) > REMOTE_FOOTERS_MAX or not all(f.endswith(".parquet") for f in remote)):
        return None, None

    def sizes(f):
        if not f.lower().endswith(".parquet"):
            return os.path.getsize(f), None
        with fsspec.open(f, "rb", block_size=2**16) as fh:  # small reads: only the footer at the end is read
            meta = pq.ParquetFile(fh).metadata
        groups = map(meta.row_group, range(meta.num_row_groups))
        return sum(rg.column(c).total_uncompressed_size for rg in groups for c in range(rg.num_columns)
                   if rg.column(c).path_in_schema == "text"), meta.num_rows

    with ThreadPoolExecutor(16 if remote else 1) as pool:  # remote footers: one round trip each, overlapped
        got = list(pool.map(sizes, files))
    rows = [r for _, r in got]
    return sum(b for b, _ in got), None if None in rows else sum(rows)


def check_complete(files, rows, expected, source, hint):
    """Refuse, before anything is read, a source that holds only part of its corpus: the Hub's partial parquet
    conversion (files under a 'partial-' folder), shards named i-of-n with one missing, or fewer rows in the
    parquet footers than the `expected` documents. `hint` says where the full corpus is."""
    parts = {f: f.replace(os.sep, "/").split("/") for f in files}
    partial = [f for f in files if any(p.startswith(PARTIAL_PREFIX) for p in parts[f])]
    if partial:
        raise PrepareError(f"{source} is the Hub's partial parquet conversion ({len(partial)} of "
                           f"{len(files)} files under '{PARTIAL_PREFIX}*', e.g. {partial[0]}): it holds only "
                           f"the first 5 GB of the dataset; {hint}")
    shards = {}
    for f in files:
        m = SHARD_NAME.search(f)
        if m:
            shards.setdefault((f[:m.start()], m[2]), set()).add(int(m[1]))
    for (stem, n), got in sorted(shards.items()):
        missing = sorted(set(range(int(n))) - got)
        if missing:
            raise PrepareError(f"{source} is incomplete: {len(missing)} of the {int(n)} shards "
                               f"{stem}-*-of-{n} are missing (the first: {missing[0]:0{len(n)}d}); {hint}")
    if expected and rows is not None and rows < expected:
        raise PrepareError(f"{source} is incomplete: its {len(files)} files hold {rows:,} documents, the "
                           f"corpus {expected:,}; {hint}")


def gb(n_bytes):
    return f"{n_bytes / 1e9:.2f} GB" if n_bytes >= 1e8 else f"{n_bytes / 1e6:.3f} MB"


def check_disk(out_dir, need_bytes, how):
    """Exit early, with one line, when out_dir cannot hold need_bytes more (leftover .tmp files count as
    free)."""
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


def write_bins(batches, out_dir, test_size=0.0005, seed=2357, num_threads=1, total_docs=None,
               eot_first=False, val_tokens=None):
    """Tokenize documents from `batches` (lists of strings) into out_dir/train.bin and val.bin (uint16).
    nanoGPT's layout (eot_first=False): each document then <|endoftext|>, one document in every
    round(1/test_size) to val. llm.c's (eot_first=True, with val_tokens): <|endoftext|> then each document,
    the documents that start within the first val_tokens tokens to val, whole, and the rest to train.
    Returns {split: (docs, tokens)}."""
    every = round(1 / test_size)
    enc = gpt2_encoding()
    os.makedirs(out_dir, exist_ok=True)
    final = {s: os.path.join(out_dir, f"{s}.bin") for s in ("train", "val")}
    tmp = {s: p + ".tmp" for s, p in final.items()}
    files = {s: open(p, "wb") for s, p in tmp.items()}  # "wb" truncates what an interrupted run left
    counts = {s: [0, 0] for s in final}
    rng = np.random.default_rng(seed)
    i, val_at, pos = 0, -1, 0  # documents and tokens so far
    try:
        with tqdm(total=total_docs, unit=" docs", desc=f"tokenizing into {out_dir}") as bar:
            for texts in batches:
                parts = {"train": [], "val": []}
                for ids in enc.encode_ordinary_batch(texts, num_threads=num_threads):
                    # 50256 < 2**16, as every GPT-2 id: uint16 holds them
                    ids = [enc.eot_token] + ids if eot_first else ids + [enc.eot_token]
                    if val_tokens is not None:  # llm.c's first shard: where the document starts decides
                        to_val = pos < val_tokens
                    else:
                        if i % every == 0:  # a new block: draw which of its documents is val
                            val_at = i + int(rng.integers(every))
                        to_val = i == val_at
                    parts["val" if to_val else "train"].append(ids)
                    i += 1
                    pos += len(ids)
                for split, docs in parts.items():
                    n = sum(map(len, docs))
                    ids = np.fromiter(itertools.chain.from_iterable(docs), np.uint16, n)
                    files[split].write(ids.tobytes())
                    counts[split][0] += len(docs)
                    counts[split][1] += n
                bar.update(len(texts))
                bar.set_postfix(tokens=f"{counts['train'][1] + counts['val'][1]:,}", refresh=False)
        for split, (docs, _) in counts.items():
            if docs == 0 and val_tokens is not None:
                raise PrepareError(f"{split} would be empty: {i} documents, {pos:,} tokens, val is the "
                                   f"documents that start in the first {val_tokens:,} (--val_tokens); give "
                                   f"more documents or another --val_tokens")
            if docs == 0:
                raise PrepareError(f"{split} would be empty: {i} documents, one in every {every} goes to "
                                   f"val (--test_size {test_size}); give more documents or a larger "
                                   f"--test_size")
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


def one_line(e, dataset, subset, hint):
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
                f"without network use --data_files PATH_OR_GLOB (local .parquet/.jsonl/.txt) or "
                f"--dataset LOCAL_COPY")
    if isinstance(e, ValueError) and msg.startswith("BuilderConfig"):
        return f"no subset {subset!r} in {dataset}: {msg}"
    if isinstance(e, RuntimeError) and "scripts are no longer supported" in msg:
        return f"{dataset} holds a loading script, which datasets>=4 no longer runs ({msg}); {hint}"
    if isinstance(e, DatasetNotFoundError):
        return f"{dataset}: {msg}"
    if isinstance(e, FileNotFoundError):
        return f"missing data files: {msg}"
    return f"could not read {dataset} ({type(e).__name__}: {msg})"


def main(doc, script, dataset, subset=None, revision=None, known=None, hub_files=None, full_hint=None,
         eot_first=False, val_tokens=None):
    """The command line of a web-corpus prepare script.
    known: {subset: (documents, tokens)} of the default Hub dataset: the documents its files must hold, the
      progress bar's total where the footers are not read, and the disk estimate.
    hub_files: a glob in the default dataset's repository, read as parquet at the default revision (for a
      repository whose tree still holds a loading script). full_hint: where the full corpus is, said when a
      copy is partial. eot_first, val_tokens: llm.c's layout and split (see write_bins); without val_tokens,
      nanoGPT's --test_size."""
    known = known or {}
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_files", nargs="+", default=None,
                        help="local .parquet/.jsonl/.json/.txt files or globs, read instead of --dataset")
    parser.add_argument("--dataset", default=dataset,
                        help="Hub dataset id, or a local copy of its repository")
    parser.add_argument("--subset", default=subset, help="the dataset's subset (config name)")
    parser.add_argument("--revision", default=revision, help="the Hub revision (branch, tag or commit)")
    parser.add_argument("--num_proc", type=int, default=os.cpu_count() or 1, help="tokenizer threads")
    if val_tokens is None:
        parser.add_argument("--test_size", type=float, default=0.0005,
                            help="fraction of documents held out as val")
        parser.add_argument("--seed", type=int, default=2357)
    else:
        parser.add_argument("--val_tokens", type=int, default=val_tokens,
                            help="val: the documents that start within the first N tokens "
                                 "(llm.c's first shard)")
    parser.add_argument("--out_dir", default=os.path.dirname(os.path.abspath(script)))
    parser.add_argument("--cache_dir", default=None,
                        help="Hugging Face datasets cache (default: HF_DATASETS_CACHE)")
    args = parser.parse_args()
    hub = not args.data_files and not is_local(args.dataset)
    default = hub and args.dataset == dataset
    source = (" ".join(args.data_files) if args.data_files else
              f"{args.dataset}@{args.revision}" if hub and args.revision else args.dataset)
    hint = full_hint or "read the full corpus: another --revision, or --data_files for a local full copy"
    try:
        if val_tokens is None and not 0 < args.test_size <= 0.5:
            raise PrepareError(f"--test_size must be in (0, 0.5], got {args.test_size}")
        if val_tokens is not None and args.val_tokens < 1:
            raise PrepareError(f"--val_tokens must be >= 1, got {args.val_tokens}")
        if args.num_proc < 1:
            raise PrepareError(f"--num_proc must be >= 1, got {args.num_proc}")
        split = dict(test_size=args.test_size, seed=args.seed) if val_tokens is None else \
            dict(val_tokens=args.val_tokens)
        t0 = time.time()
        kwargs = corpus_kwargs(args.dataset, args.subset, args.revision, args.data_files,
                               hub_files if default and args.revision == revision else None)
        builder, files, card_docs = open_corpus(kwargs, source, args.cache_dir)
        n_bytes, rows = text_sizes(files)
        known_docs, known_tokens = known.get(args.subset, (None, None)) if default else (None, None)
        expected = None if args.data_files else known_docs or card_docs
        check_complete(files, rows, expected, source, hint)
        total = rows if rows is not None else expected
        print(f"{source}: {len(files)} files, {f'{total:,}' if total else 'an unknown number of'} documents")
        if known_tokens:
            check_disk(args.out_dir, 2 * known_tokens,
                       f"{dataset} {args.subset or ''}: ~{known_tokens / 1e9:.1f}B tokens")
        elif n_bytes is not None:
            check_disk(args.out_dir, int(2 * n_bytes / BYTES_PER_TOKEN),
                       f"{gb(n_bytes)} of text in {len(files)} files, {BYTES_PER_TOKEN} bytes a token")
        else:
            print(f"disk: the size of {source} {args.subset or ''} is not known here, not checked")
        sizes = write_bins(text_batches(stream(builder), source), args.out_dir, num_threads=args.num_proc,
                           total_docs=total, eot_first=eot_first, **split)
        print(f"done in {time.time() - t0:.1f} s")
        read = sizes["train"][0] + sizes["val"][0]
        if expected and read < expected:
            print(f"warning: {read:,} documents read, {expected:,} expected: {source} may be partial; {hint}")
        return sizes
    except KeyboardInterrupt:
        sys.exit("error: interrupted; train.bin / val.bin are untouched, rerun to start over")
    except Exception as e:
        import pyarrow
        ours = ("datasets", "huggingface_hub", "httpx", "fsspec")
        if not isinstance(e, (PrepareError, OSError, ValueError, RuntimeError, pyarrow.ArrowException)) \
                and type(e).__module__.split(".")[0] not in ours:
            raise  # a bug, not bad input: keep the traceback
        sys.exit(f"error: {one_line(e, source, args.subset, hint)}")
