"""
Full definition of a GPT Language Model, all of it in this single file (after karpathy/nanoGPT).
References:
1) the official GPT-2 TensorFlow implementation released by OpenAI:
https://github.com/openai/gpt-2/blob/master/src/model.py
2) huggingface/transformers PyTorch implementation:
https://github.com/huggingface/transformers/blob/main/src/transformers/models/gpt2/modeling_gpt2.py

GPT.from_pretrained loads GPT-2 weights from a local Hugging Face directory (never downloading them);
export_hf.py writes one.
"""

import math
import inspect
import os
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F

class LayerNorm(nn.Module):
    """ LayerNorm but with an optional bias. PyTorch doesn't support simply bias=False """

    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, input):
        return F.layer_norm(input, self.weight.shape, self.weight, self.bias, 1e-5)

class CausalSelfAttention(nn.Module):

    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        # key, query, value projections for all heads, but in a batch
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        # output projection
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        # regularization
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout

    def forward(self, x):
        B, T, C = x.size() # batch size, sequence length, embedding dimensionality (n_embd)

        # calculate query, key, values for all heads in batch and move head forward to be the batch dim
        q, k, v  = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) # (B, nh, T, hs)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) # (B, nh, T, hs)

        # causal self-attention; efficient attention using Flash Attention CUDA kernels (PyTorch >= 2.0)
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=None,
                                                             dropout_p=self.dropout if self.training else 0,
                                                             is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C) # re-assemble all head outputs side by side

        # output projection
        y = self.resid_dropout(self.c_proj(y))
        return y

class MLP(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.c_fc    = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu    = nn.GELU()
        self.c_proj  = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        x = self.c_fc(x)
        x = self.gelu(x)
        x = self.c_proj(x)
        x = self.dropout(x)
        return x

class Block(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x

@dataclass
class GPTConfig:
    block_size: int = 1024
    vocab_size: int = 50304 # GPT-2 vocab_size of 50257, padded up to nearest multiple of 64 for efficiency
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True # True: bias in Linears and LayerNorms, like GPT-2. False: a bit better and faster

# Hugging Face's GPT-2: the names from_pretrained looks up in the local Hugging Face cache, and the weights
# that transformers' Conv1D stores as (in, out), transposed to nn.Linear's (out, in)
HF_GPT2_NAMES = ('gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl')
HF_CONV1D = ('attn.c_attn.weight', 'attn.c_proj.weight', 'mlp.c_fc.weight', 'mlp.c_proj.weight')

def hf_gpt2_dir(name):
    """The local directory of the Hugging Face GPT-2 `name`: a directory as given, or one of HF_GPT2_NAMES in
    the local Hugging Face cache (HF_HUB_CACHE; nothing is downloaded). FileNotFoundError with a one-line
    message."""
    if os.path.isdir(name):
        return name
    if name not in HF_GPT2_NAMES:
        raise FileNotFoundError(f"init_from={name!r} is neither a directory nor one of "
                                f"{', '.join(HF_GPT2_NAMES)}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.constants import HF_HUB_CACHE
    for repo_id in (f'openai-community/{name}', name): # the Hub's current name, and the old one
        try:
            return snapshot_download(repo_id, local_files_only=True)
        except (OSError, ValueError):
            pass
    raise FileNotFoundError(f"{name!r} is not in the local Hugging Face cache {HF_HUB_CACHE} and is never "
                            f"downloaded here: run `hf download openai-community/{name}` where there is "
                            "network and copy that cache here, or give init_from=DIR (a directory with "
                            "config.json and model.safetensors)")

class GPT(nn.Module):

    def __init__(self, config):
        super().__init__()
        assert config.vocab_size is not None
        assert config.block_size is not None
        self.config = config

        self.transformer = nn.ModuleDict(dict(
            wte = nn.Embedding(config.vocab_size, config.n_embd),
            wpe = nn.Embedding(config.block_size, config.n_embd),
            drop = nn.Dropout(config.dropout),
            h = nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f = LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # with weight tying when using torch.compile() some warnings get generated:
        # "UserWarning: functional_call was passed multiple values for tied weights.
        # This behavior is deprecated and will be an error in future versions"
        # not 100% sure what this is, so far seems to be harmless. TODO investigate
        self.transformer.wte.weight = self.lm_head.weight # https://paperswithcode.com/method/weight-tying

        # init all weights
        self.apply(self._init_weights)
        # apply special scaled init to the residual projections, per GPT-2 paper
        for pn, p in self.named_parameters():
            if pn.endswith('c_proj.weight'):
                torch.nn.init.normal_(p, mean=0.0, std=0.02/math.sqrt(2 * config.n_layer))

        # report number of parameters
        print("number of parameters: %.2fM" % (self.get_num_params()/1e6,))

    def get_num_params(self, non_embedding=True):
        """
        Return the number of parameters in the model.
        For non-embedding count (default), the position embeddings get subtracted.
        The token embeddings would too, except due to the parameter sharing these
        params are actually used as weights in the final layer, so we include them.
        """
        n_params = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n_params -= self.transformer.wpe.weight.numel()
        return n_params

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx, targets=None):
        device = idx.device
        b, t = idx.size()
        assert t <= self.config.block_size, \
            f"Cannot forward sequence of length {t}, block size is only {self.config.block_size}"
        pos = torch.arange(0, t, dtype=torch.long, device=device) # shape (t)

        # forward the GPT model itself
        tok_emb = self.transformer.wte(idx) # token embeddings of shape (b, t, n_embd)
        pos_emb = self.transformer.wpe(pos) # position embeddings of shape (t, n_embd)
        x = self.transformer.drop(tok_emb + pos_emb)
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)

        if targets is not None:
            # if we are given some desired targets also calculate the loss
            logits = self.lm_head(x)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)
        else:
            # inference-time mini-optimization: only forward the lm_head on the very last position
            logits = self.lm_head(x[:, [-1], :]) # note: using list [-1] to preserve the time dim
            loss = None

        return logits, loss

    def crop_block_size(self, block_size):
        # model surgery to decrease the block size if necessary
        # e.g. we may load the GPT2 pretrained model checkpoint (block size 1024)
        # but want to use a smaller block size for some smaller, simpler model
        assert block_size <= self.config.block_size
        self.config.block_size = block_size
        self.transformer.wpe.weight = nn.Parameter(self.transformer.wpe.weight[:block_size])

    def param_components(self, n_components):
        """Split the parameters into <= n_components contiguous components for PLASLS (\"Faster Convergence
        for Transformer Fine-tuning with Line Search Methods\", Kenneweg, Galli, Kenneweg, Hammer, 2023, Sec.
        III-C): the embeddings, the transformer blocks in contiguous groups, and the final norm (the head is
        tied to the token embedding). Returns a list of lists of parameters, in model order."""
        blocks = [list(b.parameters()) for b in self.transformer.h]
        n_block_groups = max(1, min(len(blocks), n_components - 2))
        comps = [[self.transformer.wte.weight, self.transformer.wpe.weight]]
        bounds = [round(i * len(blocks) / n_block_groups) for i in range(n_block_groups + 1)]
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            comps.append([p for b in blocks[lo:hi] for p in b])
        comps.append(list(self.transformer.ln_f.parameters()))
        comps = [c for c in comps if c]
        while len(comps) > max(1, n_components): # n_components < 3: merge the trailing components
            comps[-2:] = [comps[-2] + comps[-1]]
        return comps

    @classmethod
    def from_pretrained(cls, model_type, override_args=None):
        """GPT-2 from a Hugging Face GPT-2 directory (hf_gpt2_dir: a path, or 'gpt2', 'gpt2-medium',
        'gpt2-large', 'gpt2-xl' from the local cache), as nanoGPT's from_pretrained. Its shape comes from
        config.json (vocab as saved: 50257 for OpenAI's); bias=False when every bias in it is zero
        (export_hf.py's export of a bias=False model). model.py's MLP uses the exact GELU: a checkpoint with
        activation 'gelu_new' (OpenAI's) loads with a notice, as in nanoGPT (logits differ slightly). Only
        'dropout' may be overridden."""
        override_args = override_args or {}
        assert all(k == 'dropout' for k in override_args)
        path = hf_gpt2_dir(model_type)
        if not os.path.isfile(os.path.join(path, 'config.json')):
            raise FileNotFoundError(f"{path} has no config.json: not a Hugging Face model directory")
        from transformers import GPT2LMHeadModel
        print(f"loading weights from the Hugging Face GPT-2 in {path}")
        model_hf = GPT2LMHeadModel.from_pretrained(path, local_files_only=True)
        c = model_hf.config
        unsupported = {k: getattr(c, k) for k, ok in [
            ('n_inner', c.n_inner in (None, 4 * c.n_embd)), ('layer_norm_epsilon',
                                                             c.layer_norm_epsilon == 1e-5),
            ('scale_attn_weights', c.scale_attn_weights), ('tie_word_embeddings', c.tie_word_embeddings),
            ('scale_attn_by_inverse_layer_idx', not c.scale_attn_by_inverse_layer_idx),
            ('activation_function', c.activation_function in ('gelu', 'gelu_new'))] if not ok}
        if unsupported:
            raise ValueError(f"{path}: settings model.py does not implement: {unsupported}")
        if c.activation_function != 'gelu':
            print(f"note: {path} uses activation {c.activation_function!r}, model.py the exact GELU (as "
                  "nanoGPT)")
        sd_hf = {k: v for k, v in model_hf.state_dict().items()
                 # causal-mask buffers of older versions
                 if not k.endswith(('.attn.masked_bias', '.attn.bias'))}
        bias = any(v.any() for k, v in sd_hf.items() if k.endswith('.bias'))
        config = GPTConfig(n_layer=c.n_layer, n_head=c.n_head, n_embd=c.n_embd, block_size=c.n_positions,
                           vocab_size=c.vocab_size, bias=bias, **override_args)
        model = GPT(config)
        sd = model.state_dict()
        keys = [k for k in sd if not k.endswith('.bias') or bias]
        missing = sorted(set(keys) - set(sd_hf))
        assert not missing, f"not in {path}: {missing}"
        for k in keys:
            w = sd_hf[k].t() if k.endswith(HF_CONV1D) else sd_hf[k]
            assert w.shape == sd[k].shape, (k, w.shape, sd[k].shape)
            with torch.no_grad():
                sd[k].copy_(w)
        return model

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type, optimizer='adamw',
                             n_components=10, adamw_lr=None, adamw_scale=None, **opt_kwargs):
        # AdamW, a line-search optimizer of the alsals package, or Muon (torch.optim.Muon on the hidden
        # matrices, AdamW at adamw_lr on the rest) / its line search, on the same groups; extra kwargs go to
        # the optimizer, which validates them
        # start with all of the candidate parameters
        param_dict = {pn: p for pn, p in self.named_parameters()}
        # filter out those that do not require grad
        param_dict = {pn: p for pn, p in param_dict.items() if p.requires_grad}
        # create optim groups. Any parameters that is 2D will be weight decayed, otherwise no.
        # i.e. all weight tensors in matmuls + embeddings decay, all biases and layernorms don't.
        decay_params = [p for n, p in param_dict.items() if p.dim() >= 2]
        nodecay_params = [p for n, p in param_dict.items() if p.dim() < 2]
        optim_groups = [
            {'params': decay_params, 'weight_decay': weight_decay},
            {'params': nodecay_params, 'weight_decay': 0.0}
        ]
        num_decay_params = sum(p.numel() for p in decay_params)
        num_nodecay_params = sum(p.numel() for p in nodecay_params)
        print(f"num decayed parameter tensors: {len(decay_params)}, with {num_decay_params:,} parameters")
        print(f"num non-decayed parameter tensors: {len(nodecay_params)}, with {num_nodecay_params:,} "
              "parameters")
        if optimizer in ('muon', 'muonsls'):
            # Muon takes the 2-D weights inside the blocks (attention and MLP matrices); the embeddings, the
            # lm_head (tied to wte: one matrix, an embedding, so AdamW's), the norms and biases stay with
            # AdamW at adamw_lr (or at adamw_scale x learning_rate). lr_scale: the schedule sets each group's
            # lr to lr * lr_scale
            import alsals
            hidden = [p for n, p in param_dict.items() if n.startswith('transformer.h.') and p.dim() == 2]
            rest = [p for p in decay_params if all(p is not q for q in hidden)]
            scale = (adamw_scale if adamw_scale is not None else
                     (adamw_lr if adamw_lr is not None else learning_rate) / learning_rate)
            optim_groups = [
                {'params': hidden, 'weight_decay': weight_decay, 'use_muon': True, 'lr_scale': 1.0},
                {'params': rest, 'weight_decay': weight_decay, 'lr': learning_rate * scale,
                 'lr_scale': scale},
                {'params': nodecay_params, 'weight_decay': 0.0, 'lr': learning_rate * scale,
                 'lr_scale': scale},
            ]
            print(f"muon: {len(hidden)} hidden matrices with {sum(p.numel() for p in hidden):,} parameters; "
                  f"AdamW at lr x {scale:g} on the other {len(rest) + len(nodecay_params)} tensors")
            if optimizer == 'muon':
                return alsals.MuonAdamW(optim_groups, lr=learning_rate, betas=betas,
                                        fused=True if device_type == 'cuda' else None, **opt_kwargs)
            return alsals.MuonSLS(optim_groups, lr=learning_rate, betas=betas, **opt_kwargs)
        if optimizer != 'adamw':
            import alsals
            if optimizer not in alsals.OPTIMIZERS:
                raise ValueError(f"unknown optimizer {optimizer!r}; choose from adamw, muon, muonsls, "
                                 f"{', '.join(alsals.OPTIMIZERS)}")
            if optimizer == 'plasls':
                opt_kwargs['components'] = self.param_components(n_components)
            return alsals.OPTIMIZERS[optimizer](optim_groups, lr=learning_rate, betas=betas, **opt_kwargs)
        # Create AdamW optimizer and use the fused version if it is available
        fused_available = 'fused' in inspect.signature(torch.optim.AdamW).parameters
        use_fused = fused_available and device_type == 'cuda'
        extra_args = dict(fused=True) if use_fused else dict()
        optimizer = torch.optim.AdamW(optim_groups, lr=learning_rate, betas=betas, **extra_args)
        print(f"using fused AdamW: {use_fused}")

        return optimizer

    def estimate_mfu(self, fwdbwd_per_iter, dt, extra_forwards=0.0):
        """estimate model flops utilization (MFU) in units of the bfloat16 peak FLOPS of the device the model
        is on. extra_forwards counts no-grad forwards per iteration (line-search trials), each ~1/3 of a
        fwd+bwd."""
        # first estimate the number of flops we do per iteration.
        # see PaLM paper Appendix B as ref: https://arxiv.org/abs/2204.02311
        N = self.get_num_params()
        cfg = self.config
        L, H, Q, T = cfg.n_layer, cfg.n_head, cfg.n_embd//cfg.n_head, cfg.block_size
        flops_per_token = 6*N + 12*L*H*Q*T
        flops_per_fwdbwd = flops_per_token * T
        flops_per_iter = flops_per_fwdbwd * (fwdbwd_per_iter + extra_forwards / 3.0)
        # express our flops throughput as ratio of the device's bfloat16 peak flops
        flops_achieved = flops_per_iter * (1.0/dt) # per second
        flops_promised = peak_bf16_flops(device_name(next(self.parameters()).device))
        mfu = flops_achieved / flops_promised
        return mfu

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None):
        """
        Take a conditioning sequence of indices idx (LongTensor of shape (b,t)) and complete
        the sequence max_new_tokens times, feeding the predictions back into the model each time.
        Most likely you'll want to make sure to be in model.eval() mode of operation for this.
        """
        for _ in range(max_new_tokens):
            # if the sequence context is growing too long we must crop it at block_size
            idx_cond = idx if idx.size(1) <= self.config.block_size else idx[:, -self.config.block_size:]
            # forward the model to get the logits for the index in the sequence
            logits, _ = self(idx_cond)
            # pluck the logits at the final step and scale by desired temperature
            logits = logits[:, -1, :] / temperature
            # optionally crop the logits to only the top k options
            if top_k is not None:
                v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                logits[logits < v[:, [-1]]] = -float('Inf')
            # apply softmax to convert logits to (normalized) probabilities
            probs = F.softmax(logits, dim=-1)
            # sample from the distribution
            idx_next = torch.multinomial(probs, num_samples=1)
            # append sampled index to the running sequence and continue
            idx = torch.cat((idx, idx_next), dim=1)

        return idx


# dense (no sparsity) bfloat16 peak FLOPS by GPU name, from the vendor datasheets; first match wins
PEAK_BF16_FLOPS = [('H100 PCIe', 756e12), ('H100', 989e12), ('H200', 989e12), ('A100', 312e12)]
_noted = set()

def device_name(device):
    return torch.cuda.get_device_name(device) if device.type == 'cuda' else device.type

def peak_bf16_flops(name):
    """The bfloat16 peak of the GPU called `name`; any other device (a CPU, an unlisted GPU) gets the A100's
    312 TFLOPS, said once, so that MFU stays comparable with nanoGPT's figures."""
    for key, flops in PEAK_BF16_FLOPS:
        if key in name:
            return flops
    if name not in _noted:
        _noted.add(name)
        print(f"mfu: no bfloat16 peak known for {name!r}, reporting MFU against the A100's 312 TFLOPS")
    return 312e12
