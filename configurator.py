"""
Poor Man's Configurator, after karpathy/nanoGPT, but strict. Usage from a script whose config lives in globals:

$ python train.py config/override_file.py --batch_size=32

The config file is executed, then every --key=value overrides a global. Values go through
ast.literal_eval (so --compile=False is a bool) and keep their type (an int may be given for a float); a
setting whose default is None (train.py's ls_*: "the optimizer's own default") takes the literal as given, and
text that is not a literal stays text (--ls_fa=fd).
An unknown key, a type mismatch or a missing config file is a one-line error and exit code 1: a typo must
not silently train with the default for hours.

Also here, for every script: fail(), the one way they report a bad setting or input; and for train.py: the
checks of its settings (check_train_config) and the optimizer's kwargs derived from them (optimizer_kwargs,
optimizer_errors).
"""
import os
import sys
from ast import literal_eval
from contextlib import contextmanager


CONFIG_ERROR = 'config error'
PLAIN_OPTIMIZERS = ('adamw', 'muon') # train.py's optimizers without a line search (no ls_* apply)


def fail(msg, kind='error'):
    """Exit with one line on stderr, '<kind>: <msg>', and exit code 1 (a SystemExit with a string: no traceback).
    Every script reports a bad setting or input this way; the configurator's own messages say 'config error'."""
    sys.exit(f"{kind}: {msg}")


def _coerce(key, value, default):
    if default is None or type(value) == type(default):
        return value
    if type(default) == float and type(value) == int:
        return float(value)
    fail(f"{key}={value!r} has type {type(value).__name__}, expected {type(default).__name__} "
         f"(default {default!r})", CONFIG_ERROR)


def configure(argv, config, keys):
    """Apply config files and --key=value overrides in argv to the dict `config` (a module's globals()),
    restricted to `keys`. Returns the list of config files that were applied."""
    keys = set(keys)
    files = []
    for arg in argv:
        if not arg.startswith('--'):
            # assume it's the name of a config file
            try:
                with open(arg) as f:
                    src = f.read()
            except OSError as e:
                fail(f"cannot read config file {arg!r}: {e.strerror}", CONFIG_ERROR)
            print(f"Overriding config with {arg}:")
            print(src)
            scope = {}
            try:
                exec(compile(src, arg, 'exec'), scope)
            except Exception as e:
                fail(f"config file {arg!r} failed: {type(e).__name__}: {e}", CONFIG_ERROR)
            for key, value in scope.items():
                if key.startswith('_') or type(value).__name__ == 'module':
                    continue
                if key not in keys:
                    fail(f"unknown config key {key!r} in {arg}", CONFIG_ERROR)
                config[key] = _coerce(key, value, config[key])
            files.append(arg)
        else:
            # assume it's a --key=value argument
            if '=' not in arg:
                fail(f"expected --key=value, got {arg!r}", CONFIG_ERROR)
            key, val = arg[2:].split('=', 1)
            if key not in keys:
                fail(f"unknown config key {key!r}", CONFIG_ERROR)
            try:
                # attempt to eval it it (e.g. if bool, number, or etc)
                attempt = literal_eval(val)
            except (SyntaxError, ValueError):
                # if that goes wrong, just use the string
                attempt = val
            if isinstance(config[key], str) and not isinstance(attempt, str):
                attempt = val # a string setting keeps the text as given (--wandb_run_name=2024, --dataset=123)
            config[key] = _coerce(key, attempt, config[key])
            print(f"Overriding: {key} = {config[key]}")
    return files


def check_train_config(config):
    """train.py's settings (its dict `config`) that would fail deep inside torch, or train with nonsense: a
    one-line error naming the setting."""
    for k in ('batch_size', 'block_size', 'gradient_accumulation_steps', 'n_layer', 'n_head', 'n_embd', 'eval_iters',
              'log_interval', 'eval_interval', 'ls_n_components', 'learning_rate'):
        if config[k] <= 0:
            fail(f"{k} must be > 0, got {config[k]}")
    for k in ('max_iters', 'warmup_iters', 'min_lr', 'grad_clip', 'ls_trial_microsteps', 'max_nonfinite_steps',
              'hellaswag_items'):
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
    if config['init_from'] not in ('scratch', 'resume', *HF_GPT2_NAMES) and not os.path.isdir(config['init_from']):
        fail(f"init_from must be 'scratch', 'resume', one of {', '.join(HF_GPT2_NAMES)} or a Hugging Face GPT-2 "
             f"directory, got {config['init_from']!r}")
    dtype, device = config['dtype'], config['device']
    if dtype not in ('float32', 'bfloat16', 'float16'):
        fail(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")
    if not 0.0 <= config['dropout'] < 1.0:
        fail(f"dropout must be in [0, 1), got {config['dropout']}")
    if config['n_embd'] % config['n_head'] != 0:
        fail(f"n_embd={config['n_embd']} must be divisible by n_head={config['n_head']}")
    world_size = int(os.environ.get('WORLD_SIZE', 1)) if 'RANK' in os.environ else 1 # under torchrun
    if config['gradient_accumulation_steps'] % world_size != 0:
        fail(f"gradient_accumulation_steps={config['gradient_accumulation_steps']} must be divisible by the number of "
             f"processes ({world_size})")
    if config['fsdp'] and 'RANK' not in os.environ:
        fail("fsdp=True needs torchrun (e.g. torchrun --nproc_per_node=2 train.py ... --fsdp=True)")
    import torch
    if 'cuda' in device and not torch.cuda.is_available():
        fail(f"device={device!r} but CUDA is not available; use --device=cpu --dtype=float32")
    # the line search (optimizer other than 'adamw')
    if config['optimizer'] not in PLAIN_OPTIMIZERS and dtype == 'float16':
        fail("the line-search optimizers need bfloat16 or float32 (GradScaler's loss scaling does not support a "
             "closure)")
    if config['ls_range_test'] and config['optimizer'] in PLAIN_OPTIMIZERS:
        fail(f"ls_range_test=True is the line search's start; optimizer={config['optimizer']!r} has no line search")
    if config['ls_fa'] == 'fd' and dtype != 'float32':
        fail(f"ls_fa='fd' needs dtype='float32': under {dtype} autocast the finite difference measures rounding noise")


# train.py's own ls_* settings, not the optimizer's kwargs
TRAINER_ONLY = ('ls_trial_microsteps', 'ls_n_components', 'ls_anneal_frac', 'ls_anneal_to', 'ls_range_test')


def muon_adamw_lr_of(config):
    """The lr of muon's and muonsls's AdamW part (embeddings, head, norms, biases): muon_adamw_lr if set, else
    learning_rate * muon_adamw_ratio (a config whose only lr is learning_rate)."""
    if config['muon_adamw_lr'] is not None:
        return config['muon_adamw_lr']
    return config['learning_rate'] * config['muon_adamw_ratio']


def optimizer_kwargs(config):
    """The line search's kwargs for model.configure_optimizers from train.py's settings ({} for adamw and muon):
    every ls_* that is set, without its prefix (None = the optimizer's own default), the AdamW warmup (warmup_iters)
    or, with ls_range_test, the range test and a hold of warmup_iters steps in its place (alsals/alsals.py's ramp), and
    grad_clip as the search's max_grad_norm."""
    if config['optimizer'] in PLAIN_OPTIMIZERS:
        return {}
    kwargs = {k[3:]: v for k, v in config.items() if k.startswith('ls_') and v is not None and k not in TRAINER_ONLY}
    if config['ls_range_test']:
        warmup = config['warmup_iters']
        kwargs = dict(dict(ramp=max(1.0, warmup / 10), ramp_hold=warmup), **kwargs)
    return dict(warmup_steps=0 if config['ls_range_test'] else config['warmup_iters'],
                max_grad_norm=config['grad_clip'], **kwargs)


@contextmanager
def optimizer_errors(ls_kwargs, config):
    """Building the optimizer: its own one-line message for a bad setting (ValueError; TypeError for a setting the
    variant lacks) becomes fail(), naming the ls_* that are set."""
    try:
        yield
    except (ValueError, TypeError) as e:
        set_ls = ', '.join(f'ls_{k}={v!r}' for k, v in ls_kwargs.items() if 'ls_' + k in config)
        fail(f"{e} (set: {set_ls or 'no ls_*'})")
