"""
train.py's settings: read from the defaults (trainer/defaults.py) and a command line, checked, and turned into
the optimizer's keyword arguments. The one place that knows what an ls_* setting means for the optimizer.
"""
import os
from contextlib import contextmanager, nullcontext, redirect_stdout
from io import StringIO

from configurator import configure, fail

PLAIN_OPTIMIZERS = ('adamw', 'muon') # train.py's optimizers without a line search (no ls_* apply)
# train.py's own ls_* settings, not the optimizer's kwargs
TRAINER_ONLY = ('ls_trial_microsteps', 'ls_n_components', 'ls_anneal_frac', 'ls_anneal_to', 'ls_range_test',
                'ls_lr')


def keys(defaults=None):
    """The names of train.py's settings, in the order trainer/defaults.py writes them."""
    if defaults is None:
        from trainer import defaults
    return [k for k, v in vars(defaults).items()
            if not k.startswith('_') and isinstance(v, (int, float, bool, str, type(None)))]


def parse(argv, quiet=False):
    """train.py's config from a command line (config files, then --key=value) over the defaults: a dict of
    every setting. quiet: without the configurator's echo of what it overrides."""
    from trainer import defaults
    config = {k: getattr(defaults, k) for k in keys(defaults)}
    with redirect_stdout(StringIO()) if quiet else nullcontext():
        configure(argv, config, list(config))
    return config


def check(config):
    """train.py's settings (its dict `config`) that would fail deep inside torch, or train with nonsense: a
    one-line error naming the setting."""
    for k in ('batch_size', 'block_size', 'gradient_accumulation_steps', 'n_layer', 'n_head', 'n_embd',
              'eval_iters', 'log_interval', 'eval_interval', 'ls_n_components', 'learning_rate'):
        if config[k] <= 0:
            fail(f"{k} must be > 0, got {config[k]}")
    for k in ('max_iters', 'warmup_iters', 'min_lr', 'grad_clip', 'ls_trial_microsteps',
              'max_nonfinite_steps', 'hellaswag_items'):
        if config[k] < 0:
            fail(f"{k} must be >= 0, got {config[k]}")
    if not 0.0 <= config['ls_anneal_frac'] <= 1.0:
        fail(f"ls_anneal_frac must be in [0, 1], got {config['ls_anneal_frac']}")
    if not 0.0 <= config['ls_anneal_to'] <= 1.0:
        fail(f"ls_anneal_to must be in [0, 1] (the anneal's end as a fraction of the search's step), got "
             f"{config['ls_anneal_to']}")
    if config['lr_schedule'] not in ('cosine', 'wsd'):
        fail(f"lr_schedule must be 'cosine' or 'wsd', got {config['lr_schedule']!r}")
    if not 0.0 < config['decay_frac'] <= 1.0:
        fail(f"decay_frac must be in (0, 1], got {config['decay_frac']}")
    if config['lr_schedule'] != 'cosine' and config['optimizer'] not in PLAIN_OPTIMIZERS:
        fail(f"lr_schedule={config['lr_schedule']!r} is for adamw and muon; the line search's schedule is "
             f"ls_anneal_frac (warmup-stable-decay on its step)")
    if not config['muon_adamw_ratio'] > 0:
        fail(f"muon_adamw_ratio must be > 0, got {config['muon_adamw_ratio']}")
    from model import HF_GPT2_NAMES
    if config['init_from'] not in ('scratch', 'resume',
                                   *HF_GPT2_NAMES) and not os.path.isdir(config['init_from']):
        fail(f"init_from must be 'scratch', 'resume', one of {', '.join(HF_GPT2_NAMES)} or a Hugging Face "
             f"GPT-2 directory, got {config['init_from']!r}")
    dtype, device = config['dtype'], config['device']
    if dtype not in ('float32', 'bfloat16', 'float16'):
        fail(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")
    if not 0.0 <= config['dropout'] < 1.0:
        fail(f"dropout must be in [0, 1), got {config['dropout']}")
    if config['n_embd'] % config['n_head'] != 0:
        fail(f"n_embd={config['n_embd']} must be divisible by n_head={config['n_head']}")
    world_size = int(os.environ.get('WORLD_SIZE', 1)) if 'RANK' in os.environ else 1 # under torchrun
    if config['gradient_accumulation_steps'] % world_size != 0:
        fail(f"gradient_accumulation_steps={config['gradient_accumulation_steps']} must be divisible by the "
             f"number of processes ({world_size})")
    if config['fsdp'] and 'RANK' not in os.environ:
        fail("fsdp=True needs torchrun (e.g. torchrun --nproc_per_node=2 train.py ... --fsdp=True)")
    import torch
    if 'cuda' in device and not torch.cuda.is_available():
        fail(f"device={device!r} but CUDA is not available; use --device=cpu --dtype=float32")
    # the line search (optimizer other than 'adamw')
    if config['optimizer'] not in PLAIN_OPTIMIZERS and dtype == 'float16':
        fail("the line-search optimizers need bfloat16 or float32 (GradScaler's loss scaling does not "
             "support a closure)")
    if config['ls_range_test'] and config['optimizer'] in PLAIN_OPTIMIZERS:
        fail(f"ls_range_test=True is the line search's start; optimizer={config['optimizer']!r} has no line "
             "search")
    if config['ls_fa'] == 'fd' and dtype != 'float32':
        fail(f"ls_fa='fd' needs dtype='float32': under {dtype} autocast the finite difference measures "
             "rounding noise")


def muon_adamw(config):
    """The lr of muon's and muonsls's AdamW part (embeddings, head, norms, biases), as
    model.configure_optimizers takes it: muon_adamw_lr if set, else muon_adamw_ratio x the Muon part's lr (a
    config whose only lr is learning_rate; the ratio itself, so that no lr enters it)."""
    if config['muon_adamw_lr'] is not None:
        return dict(adamw_lr=config['muon_adamw_lr'])
    return dict(adamw_scale=config['muon_adamw_ratio'])


def optimizer_kwargs(config):
    """The line search's kwargs for model.configure_optimizers from train.py's settings ({} for adamw and
    muon): every ls_* that is set, without its prefix (None = the optimizer's own default), the AdamW warmup
    (warmup_iters) or, with ls_range_test, the range test and a hold of warmup_iters steps in its place
    (alsals/alsals.py's ramp), and grad_clip as the search's max_grad_norm."""
    if config['optimizer'] in PLAIN_OPTIMIZERS:
        return {}
    kwargs = {k[3:]: v for k,
              v in config.items() if k.startswith('ls_') and v is not None and k not in TRAINER_ONLY}
    if config['ls_range_test']:
        warmup = config['warmup_iters']
        kwargs = dict(dict(ramp=max(1.0, warmup / 10), ramp_hold=warmup), **kwargs)
    return dict(warmup_steps=0 if config['ls_range_test'] else config['warmup_iters'],
                max_grad_norm=config['grad_clip'], **kwargs)


@contextmanager
def optimizer_errors(ls_kwargs, config):
    """Building the optimizer: its own one-line message for a bad setting (ValueError; TypeError for a setting
    the variant lacks) becomes fail(), naming the ls_* that are set."""
    try:
        yield
    except (ValueError, TypeError) as e:
        set_ls = ', '.join(f'ls_{k}={v!r}' for k, v in ls_kwargs.items() if 'ls_' + k in config)
        fail(f"{e} (set: {set_ls or 'no ls_*'})")
