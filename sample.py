"""
Sample from a trained model (after karpathy/nanoGPT's sample.py).
$ python sample.py --out_dir=out-shakespeare-char --num_samples=2 --max_new_tokens=300
$ python sample.py --out_dir=out-shakespeare --start="FILE:prompt.txt"
$ python sample.py --init_from=gpt2-xl --start="What is the answer to life?"
$ python sample.py --init_from=hf-out # a Hugging Face GPT-2 directory, e.g. written by scripts/export_hf.py

init_from='resume' loads out_dir/ckpt.pt (and, for a checkpoint of an FSDP2 run, the model's shards in the
directory it names); its codec is the dataset's char vocabulary (data/<dataset>/meta.pkl) when the
checkpoint's dataset has one, else the GPT-2 BPE (data/gpt2_bpe.py, offline). init_from='gpt2',
'gpt2-medium', 'gpt2-large', 'gpt2-xl' (from the local Hugging Face cache only, never downloaded) or a
directory loads with model.GPT.from_pretrained, and its codec is the GPT-2 BPE.
"""
import os
import sys
from contextlib import nullcontext

import torch

# checkpoint I/O; nanoGPT's name `checkpoint` stays free for the dict
from trainer import checkpoint as ckpt_io
from data.loader import load_meta # a dataset's meta.pkl, plain values only

# -----------------------------------------------------------------------------
init_from = 'resume' # 'resume' (out_dir/ckpt.pt), 'gpt2'..'gpt2-xl' (local HF cache only) or an HF GPT-2 dir
out_dir = 'out' # the checkpoint is out_dir/ckpt.pt (init_from='resume' only)
start = "\n" # or "<|endoftext|>" or etc. Can also specify a file, use as: "FILE:prompt.txt"
num_samples = 3 # number of samples to draw
max_new_tokens = 200 # number of tokens generated in each sample
temperature = 0.8 # 1.0 = no change, < 1.0 = less random, > 1.0 = more random, in predictions
top_k = 200 # retain only the top_k most likely tokens, clamp others to have 0 probability (0 = no top-k)
seed = 1337
device = 'cuda' if torch.cuda.is_available() else 'cpu' # examples: 'cpu', 'cuda', 'cuda:0', 'cuda:1', etc.
# 'float32' or 'bfloat16' or 'float16'
dtype = (('bfloat16' if torch.cuda.is_bf16_supported() else 'float16') if torch.cuda.is_available()
         else 'float32')
compile = False # use PyTorch 2.0 to compile the model to be faster
# -----------------------------------------------------------------------------
config_keys = [k for k,v in globals().items() if not k.startswith('_') and isinstance(v, (int, float, bool,
                                                                                          str))]
from configurator import configure, fail # fail: one line on stderr, exit code 1
configure(sys.argv[1:], globals(), config_keys) # overrides from command line or config file
# -----------------------------------------------------------------------------
if num_samples <= 0 or max_new_tokens <= 0:
    fail(f"num_samples and max_new_tokens must be > 0, got {num_samples} and {max_new_tokens}")
if not temperature > 0:
    fail(f"temperature must be > 0, got {temperature}")
if dtype not in ('float32', 'bfloat16', 'float16'):
    fail(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")
if 'cuda' in device and not torch.cuda.is_available():
    fail(f"device={device!r} but CUDA is not available; use --device=cpu --dtype=float32")

torch.manual_seed(seed)
torch.cuda.manual_seed(seed)
torch.backends.cuda.matmul.allow_tf32 = True # allow tf32 on matmul
torch.backends.cudnn.allow_tf32 = True # allow tf32 on cudnn
device_type = 'cuda' if 'cuda' in device else 'cpu' # for later use in torch.autocast
ptdtype = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}[dtype]
ctx = nullcontext() if dtype == 'float32' else torch.amp.autocast(device_type=device_type, dtype=ptdtype)

# model
if init_from == 'resume':
    ckpt_path = os.path.join(out_dir, 'ckpt.pt') # names the model in error messages
    model, checkpoint = ckpt_io.load_model(out_dir, device) # plain or FSDP2; one-line errors
else:
    from model import GPT
    ckpt_path, checkpoint = init_from, {} # no dataset: the GPT-2 BPE
    try:
        model = GPT.from_pretrained(init_from, dict(dropout=0.0)) # a directory, or a name in the local cache
    except (OSError, ValueError, AssertionError) as e: # missing, not a GPT-2 directory, or foreign weights
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        fail(msg if isinstance(e, FileNotFoundError) else f"cannot load init_from={init_from!r}: {msg[:300]}")
gptconf = model.config
model.eval()
model.to(device)

# the codec: the dataset's char vocabulary if it has one (meta.pkl), else GPT-2 BPE
dataset = checkpoint.get('config', {}).get('dataset')
meta_path = os.path.join('data', dataset, 'meta.pkl') if dataset else None # dataset may be an absolute path
vocab_size = gptconf.vocab_size
if meta_path and os.path.exists(meta_path):
    print(f"Loading meta from {meta_path}...")
    meta = load_meta(meta_path) # plain values only: a meta.pkl from elsewhere cannot run code
    stoi, itos = meta['stoi'], meta['itos']
    if meta['vocab_size'] != vocab_size:
        fail(f"{meta_path} has vocab_size {meta['vocab_size']} but the model in {ckpt_path} has "
             f"{vocab_size}: the dataset was re-prepared differently since training")
    def encode(s):
        for ch in s:
            if ch not in stoi:
                fail(f"the prompt contains {ch!r}, which is not in the character vocabulary of {meta_path}")
        return [stoi[c] for c in s]
    decode = lambda l: ''.join([itos[i] for i in l])
    eot = None
else:
    print("No meta.pkl found, assuming GPT-2 encodings...")
    from data.gpt2_bpe import gpt2_encoding
    try:
        enc = gpt2_encoding()
    except Exception as e:
        fail(f"cannot load the GPT-2 tokenizer: {e}")
    encode = lambda s: enc.encode(s, allowed_special={"<|endoftext|>"})
    decode = lambda l: enc.decode(l)
    eot = enc.eot_token
    if vocab_size > enc.n_vocab:
        # the vocabulary was padded for efficiency (50257 -> 50304): drop the rows no token maps to, so the
        # padded ids (never seen in training, but not impossible to sample) are never generated.
        # The head is tied to the token embedding, so one crop serves both.
        w = torch.nn.Parameter(model.lm_head.weight[:enc.n_vocab].detach().clone())
        model.lm_head.weight = w
        model.transformer.wte.weight = w
        model.config.vocab_size = enc.n_vocab
    elif vocab_size < enc.n_vocab:
        fail(f"the model in {ckpt_path} has vocab_size {vocab_size} < {enc.n_vocab} and "
             + (f"its dataset {dataset!r} has no meta.pkl" if init_from == 'resume' else "is not GPT-2 BPE")
             + ": cannot decode its tokens")
if compile:
    model = torch.compile(model) # requires PyTorch 2.0 (optional)

# encode the beginning of the prompt
if start.startswith('FILE:'):
    try:
        with open(start[5:], 'r', encoding='utf-8') as f:
            start = f.read()
    except (OSError, UnicodeDecodeError) as e:
        fail(f"cannot read prompt file {start[5:]!r}: {getattr(e, 'strerror', None) or e}")
start_ids = encode(start)
if not start_ids:
    if eot is None:
        fail("the prompt is empty (give --start=... with at least one character)")
    start_ids = [eot] # GPT-2: an empty prompt starts a new document
x = (torch.tensor(start_ids, dtype=torch.long, device=device)[None, ...])

# run generation
with torch.no_grad():
    with ctx:
        for k in range(num_samples):
            y = model.generate(x, max_new_tokens, temperature=temperature, top_k=top_k if top_k > 0 else None)
            print(decode(y[0].tolist()))
            print('---------------')
