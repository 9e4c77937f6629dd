"""
Poor Man's Configurator, after karpathy/nanoGPT, but strict. Usage from a script whose config lives in
globals:

$ python train.py config/override_file.py --batch_size=32

The config file is executed, then every --key=value overrides a global. Values go through
ast.literal_eval (so --compile=False is a bool) and keep their type (an int may be given for a float); a
setting whose default is None (train.py's ls_*: "the optimizer's own default") takes the literal as given, and
text that is not a literal stays text (--ls_fa=fd).
An unknown key, a type mismatch or a missing config file is a one-line error and exit code 1: a typo must
not silently train with the default for hours.

Also here, for every script: fail(), the one way they report a bad setting or input.
"""
import sys
from ast import literal_eval


CONFIG_ERROR = 'config error'


def fail(msg, kind='error'):
    """Exit with one line on stderr, '<kind>: <msg>', and exit code 1 (a SystemExit with a string: no
    traceback). Every script reports a bad setting or input this way; the configurator's own messages say
    'config error'."""
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
                # a string setting keeps the text as given (--wandb_run_name=2024, --dataset=123)
                attempt = val
            config[key] = _coerce(key, attempt, config[key])
            print(f"Overriding: {key} = {config[key]}")
    return files
