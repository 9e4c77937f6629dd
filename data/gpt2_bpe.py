"""
GPT-2 BPE tokenizer (tiktoken's r50k_base) built without network access.

tiktoken.get_encoding("gpt2") downloads its vocabulary on first use; offline machines can't.
The exact same ranks file (checked by sha256 below) ships inside the MIT-licensed PyPI package
openai-whisper, so we read it from there (or from $GPT2_BPE_FILE) and build the Encoding ourselves.
gpt2_data_gym_files() regenerates GPT-2's original encoder.json and vocab.bpe from the same ranks (the
vocab.json and merges.txt of a Hugging Face GPT-2 tokenizer, e.g. for scripts/export_hf.py).
"""
import functools
import hashlib
import importlib.util
import json
import os

import tiktoken
import tiktoken.load

# sha256 of r50k_base.tiktoken, the same hash tiktoken itself expects for GPT-2's ranks
GPT2_BPE_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
INSTALL_HINT = "pip install --no-deps openai-whisper==20250625"

try:
    # importing this module only defines functions, it does not download anything
    from tiktoken_ext.openai_public import r50k_pat_str as GPT2_PAT_STR
except ImportError:
    GPT2_PAT_STR = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""


def gpt2_bpe_file():
    """Path of the GPT-2 ranks file: $GPT2_BPE_FILE, else the copy inside openai-whisper."""
    path = os.environ.get("GPT2_BPE_FILE")
    if path:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"GPT2_BPE_FILE={path} does not exist (unset it to use the "
                                    f"copy from openai-whisper: {INSTALL_HINT})")
        return path
    # find_spec locates the package without importing it (importing whisper pulls in heavy deps)
    spec = importlib.util.find_spec("whisper")
    if spec is not None and spec.submodule_search_locations:
        path = os.path.join(list(spec.submodule_search_locations)[0], "assets", "gpt2.tiktoken")
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"GPT-2 BPE ranks not found: install them with `{INSTALL_HINT}` "
                            f"or point GPT2_BPE_FILE at a copy of r50k_base.tiktoken")


@functools.lru_cache(maxsize=None)
def gpt2_encoding():
    """tiktoken.Encoding for GPT-2: n_vocab 50257, eot_token 50256 (<|endoftext|>)."""
    ranks = tiktoken.load.load_tiktoken_bpe(gpt2_bpe_file(), expected_hash=GPT2_BPE_SHA256)
    return tiktoken.Encoding(name="gpt2", pat_str=GPT2_PAT_STR, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256})


# sha256 of GPT-2's original data-gym files, the hashes tiktoken_ext.openai_public.gpt2() expects for them
GPT2_ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
GPT2_VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"


def bytes_to_unicode():
    """GPT-2's byte-to-unicode map (openai/gpt-2's encoder.py, the data-gym encoding): the printable bytes
    other than space stand for themselves, the other 68 bytes for chr(256), chr(257), ... in byte order."""
    kept = [b for b in range(256) if chr(b).isprintable() and chr(b) != ' ']
    rest = [b for b in range(256) if b not in kept]
    return {**{b: chr(b) for b in kept}, **{b: chr(256 + n) for n, b in enumerate(rest)}}


def _merge_of(token, rank, ranks):
    """The two tokens whose merge is `token`: BPE on its bytes with the merges ranked below it (as tiktoken
    encodes) ends in exactly two parts."""
    parts = [bytes([b]) for b in token]
    while True:
        pairs = [(ranks.get(parts[i] + parts[i + 1], rank), i) for i in range(len(parts) - 1)]
        best, i = min(pairs)
        if best >= rank:
            break
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    if len(parts) != 2:
        raise ValueError(f"GPT-2 rank {rank} ({token!r}) is not the merge of two lower-ranked tokens")
    return parts


@functools.lru_cache(maxsize=None)
def gpt2_data_gym_files():
    """(encoder.json, vocab.bpe) as bytes: GPT-2's original vocabulary and merges (Hugging Face's vocab.json
    and merges.txt), regenerated from the local ranks byte for byte (about a second); ValueError if a sha256
    differs from tiktoken's."""
    ranks = tiktoken.load.load_tiktoken_bpe(gpt2_bpe_file(), expected_hash=GPT2_BPE_SHA256)
    by_rank = sorted(ranks.items(), key=lambda kv: kv[1])
    u = bytes_to_unicode()
    text = lambda b: ''.join(u[x] for x in b)
    merges = [' '.join(text(p) for p in _merge_of(t, r, ranks)) for t, r in by_rank if len(t) > 1]
    vocab = {text(t): r for t, r in by_rank} | {"<|endoftext|>": 50256}
    encoder_json = json.dumps(vocab).encode() # json's default separators and ASCII escapes, as OpenAI's
    vocab_bpe = ("#version: 0.2\n" + "\n".join(merges) + "\n").encode()
    for name, data, want in [('encoder.json', encoder_json, GPT2_ENCODER_JSON_SHA256),
                             ('vocab.bpe', vocab_bpe, GPT2_VOCAB_BPE_SHA256)]:
        if hashlib.sha256(data).hexdigest() != want:
            raise ValueError(f"{name} regenerated from {gpt2_bpe_file()} does not have tiktoken's sha256")
    return encoder_json, vocab_bpe
