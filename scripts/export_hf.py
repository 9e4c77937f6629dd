"""
Export a checkpoint written by train.py (plain or FSDP2) as a Hugging Face `transformers` GPT-2 directory:
model.safetensors, config.json and, for GPT-2 BPE, generation_config.json. GPT2LMHeadModel.from_pretrained(hf_dir)
then loads it with no missing or unexpected weights and computes model.py's logits (tested).
$ python scripts/export_hf.py --out_dir=out --hf_dir=hf-out

The mapping (as nanoGPT's GPT.from_pretrained, the other way round: model.py's from_pretrained reads it back):
- c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj: transformers' Conv1D stores (in, out), nn.Linear (out, in): transposed.
- lm_head is tied to wte: only transformer.wte.weight is written (tie_word_embeddings=True).
- bias=False: transformers' GPT-2 always has biases, so zero biases are written (Linear and LayerNorm): the same
  function.
- GELU: model.py uses the exact nn.GELU(), so activation_function='gelu' (OpenAI's GPT-2 has 'gelu_new', tanh).
- n_positions = block_size, layer_norm_epsilon = 1e-5, dropouts 0 (inference).
- vocab: a GPT-2 BPE checkpoint padded to 50304 is cropped to GPT-2's 50257 (crop_vocab=True; the padded rows
  are never a token, and GPT-2's tokenizer has 50257); a char-level checkpoint keeps its vocab_size, and its ids
  mean the characters of its dataset's meta.pkl: a Hugging Face tokenizer fits GPT-2 BPE only. No tokenizer
  files are written: for BPE, use GPT-2's (e.g. AutoTokenizer.from_pretrained('openai-community/gpt2')).
"""
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) # the repository: scripts/..
sys.path.insert(0, ROOT)
from trainer import checkpoint as ckpt_io # noqa: E402
from model import HF_CONV1D

# -----------------------------------------------------------------------------
out_dir = 'out' # the checkpoint is out_dir/ckpt.pt (and, for FSDP2, the DCP directory it names)
hf_dir = '' # the Hugging Face directory to write (created; its model.safetensors and configs are replaced)
crop_vocab = True # GPT-2 BPE: crop the vocab to 50257 (padding rows dropped); False keeps the model's vocab_size
# -----------------------------------------------------------------------------
config_keys = [k for k, v in globals().items() if not k.startswith('_') and isinstance(v, (int, float, bool, str))]
from configurator import configure, fail # fail: one line on stderr, exit code 1
GPT2_VOCAB, GPT2_EOT = 50257, 50256


def hf_state_dict(model, vocab_size):
    """model.py's weights under transformers' GPT2LMHeadModel names: Conv1D weights transposed, zero biases where
    the model has none (bias=False), the embedding cropped to vocab_size rows, lm_head left to the tie."""
    sd = {k: v.detach().to('cpu', torch.float32) for k, v in model.state_dict().items() if k != 'lm_head.weight'}
    out = {}
    for k, v in sd.items():
        out[k] = (v.t() if k.endswith(HF_CONV1D) else v).contiguous().clone()
    out['transformer.wte.weight'] = out['transformer.wte.weight'][:vocab_size].clone()
    C = model.config.n_embd
    zero_bias = {'ln_1.bias': C, 'ln_2.bias': C, 'attn.c_attn.bias': 3 * C, 'attn.c_proj.bias': C,
                 'mlp.c_fc.bias': 4 * C, 'mlp.c_proj.bias': C}
    for i in range(model.config.n_layer):
        for name, n in zero_bias.items():
            out.setdefault(f'transformer.h.{i}.{name}', torch.zeros(n))
    out.setdefault('transformer.ln_f.bias', torch.zeros(C))
    return out


def export(model, hf_dir, bpe, crop_vocab=True):
    """Write model (a model.py GPT) to hf_dir; bpe: its ids are GPT-2 BPE. Returns the exported vocab_size."""
    from safetensors.torch import save_file
    from transformers import GPT2Config, GenerationConfig
    cfg = model.config
    vocab_size = GPT2_VOCAB if bpe and crop_vocab and cfg.vocab_size > GPT2_VOCAB else cfg.vocab_size
    eot = GPT2_EOT if bpe and vocab_size > GPT2_EOT else None
    config = GPT2Config(vocab_size=vocab_size, n_positions=cfg.block_size, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
                        n_head=cfg.n_head, n_inner=None, activation_function='gelu', layer_norm_epsilon=1e-5,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=eot, eos_token_id=eot,
                        tie_word_embeddings=True, architectures=['GPT2LMHeadModel'])
    os.makedirs(hf_dir, exist_ok=True)
    save_file(hf_state_dict(model, vocab_size), os.path.join(hf_dir, 'model.safetensors'), metadata={'format': 'pt'})
    config.save_pretrained(hf_dir)
    if eot is not None:
        GenerationConfig(bos_token_id=eot, eos_token_id=eot).save_pretrained(hf_dir)
    return vocab_size


if __name__ == '__main__':
    configure(sys.argv[1:], globals(), config_keys)
    if not hf_dir:
        fail("give --hf_dir=DIR, the Hugging Face directory to write")
    model, checkpoint = ckpt_io.load_model(out_dir) # plain or FSDP2; one-line errors
    dataset = checkpoint.get('config', {}).get('dataset')
    meta = dataset and os.path.exists(os.path.join('data', dataset, 'meta.pkl')) # as sample.py decides the codec
    vocab_size = export(model, hf_dir, bpe=not meta, crop_vocab=crop_vocab)
    what = (f"char-level: ids are the characters of data/{dataset}/meta.pkl, no Hugging Face tokenizer fits" if meta
            else f"GPT-2 BPE: use GPT-2's tokenizer")
    print(f"wrote {hf_dir}: {model.config.n_layer} layers, n_embd {model.config.n_embd}, vocab_size {vocab_size}"
          + (f" (cropped from {model.config.vocab_size})" if vocab_size != model.config.vocab_size else "")
          + f"; {what}")
