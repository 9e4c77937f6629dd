"""configurator.py: --key=value overrides, config files, and strict one-line errors."""
import glob
import os

import pytest

from configurator import configure
from trainutil import ROOT, check_one_line_error, run_script


def defaults():
    return dict(compile=True, batch_size=12, learning_rate=6e-4, dataset='openwebtext', wandb_run_name='gpt2',
                dropout=0.0)


def apply(argv, cfg=None):
    cfg = defaults() if cfg is None else cfg
    configure(argv, cfg, list(defaults()))
    return cfg


def one_line_exit(argv, *needles):
    with pytest.raises(SystemExit) as e:
        apply(argv)
    msg = e.value.code
    assert isinstance(msg, str) and '\n' not in msg, msg  # SystemExit(str): one line on stderr, exit code 1
    assert msg.startswith('config error:')
    for needle in needles:
        assert needle in msg, msg
    return msg


def test_literal_eval_overrides():
    cfg = apply(['--compile=False', '--batch_size=32', '--learning_rate=1e-3', '--dataset=shakespeare_char'])
    assert cfg['compile'] is False
    assert cfg['batch_size'] == 32 and type(cfg['batch_size']) is int
    assert cfg['learning_rate'] == 1e-3
    assert cfg['dataset'] == 'shakespeare_char'


def test_int_for_float_is_allowed():
    cfg = apply(['--learning_rate=1', '--dropout=0'])
    assert cfg['learning_rate'] == 1.0 and type(cfg['learning_rate']) is float
    assert type(cfg['dropout']) is float


def test_string_settings_keep_their_text():
    # a string setting whose value looks like a number or a literal stays the string given
    cfg = apply(['--wandb_run_name=2024', '--dataset=/abs/path/data', "--compile=True"])
    assert cfg['wandb_run_name'] == '2024' and cfg['dataset'] == '/abs/path/data'
    assert apply(["--dataset='quoted'"])['dataset'] == 'quoted'


def test_config_file_then_overrides(tmp_path, capsys):
    f = tmp_path / 'cfg.py'
    f.write_text("import math\nbatch_size = 64\nlearning_rate = 3e-3\n_private = 1\n")
    cfg = apply([str(f), '--batch_size=16'])
    assert cfg['batch_size'] == 16  # the command line comes after the file
    assert cfg['learning_rate'] == 3e-3
    assert 'math' not in cfg and '_private' not in cfg
    assert configure([str(f)], defaults(), list(defaults())) == [str(f)]


def test_unknown_key():
    one_line_exit(['--bach_size=32'], "'bach_size'")


@pytest.mark.parametrize('arg,key', [('--batch_size=1.5', 'batch_size'), ('--compile=1', 'compile'),
                                     ('--batch_size=True', 'batch_size'), ('--learning_rate=fast',
                                                                           'learning_rate')])
def test_type_mismatch(arg, key):
    one_line_exit([arg], key)


def test_bare_flag_is_an_error():
    one_line_exit(['--compile'], '--compile')


def test_missing_config_file(tmp_path):
    one_line_exit([str(tmp_path / 'nope.py')], 'nope.py')


def test_unknown_key_in_config_file(tmp_path):
    f = tmp_path / 'cfg.py'
    f.write_text("batch_size = 8\nlerning_rate = 1e-3\n")
    one_line_exit([str(f)], "'lerning_rate'", 'cfg.py')


def test_type_mismatch_in_config_file(tmp_path):
    f = tmp_path / 'cfg.py'
    f.write_text("batch_size = '8'\n")
    one_line_exit([str(f)], 'batch_size')


def test_broken_config_file(tmp_path):
    f = tmp_path / 'cfg.py'
    f.write_text("batch_size = 8 +\n")
    one_line_exit([str(f)], 'cfg.py', 'SyntaxError')


def train_py_defaults():
    """train.py's settings and their defaults (trainer/defaults.py), as a fresh dict, and their names."""
    from trainer import config, defaults
    keys = config.keys()
    return {k: getattr(defaults, k) for k in keys}, keys


@pytest.mark.parametrize('path', sorted(glob.glob(os.path.join(ROOT, 'config', '*.py'))),
                         ids=lambda p: os.path.basename(p))
def test_shipped_config_files_apply(path, monkeypatch):
    # every config file sets only keys train.py knows, with the right types (some exec() another config)
    monkeypatch.chdir(ROOT)
    ns, keys = train_py_defaults()
    configure([os.path.relpath(path, ROOT)], ns, keys)


def test_train_py_unknown_key_subprocess():
    r = run_script('train.py', '--nonexistent=1')
    check_one_line_error(r, 'nonexistent')


def test_none_default_takes_the_literal_given(tmp_path):
    # a setting whose default is None ("the optimizer's own default") takes whatever literal is given
    cfg = dict(ls_c=None, ls_smooth=None, ls_fa=None, ls_b=None, ls_eta_min=None)
    configure(['--ls_c=0.5', '--ls_smooth=True', '--ls_fa=fd', '--ls_b=None'], cfg, list(cfg))
    assert cfg == dict(ls_c=0.5, ls_smooth=True, ls_fa='fd', ls_b=None, ls_eta_min=None)
    f = tmp_path / 'cfg.py'
    f.write_text("ls_eta_min = 1e-12\nls_c = 0.3\n")
    configure([str(f), '--ls_c=0.4'], cfg, list(cfg))
    assert cfg['ls_eta_min'] == 1e-12 and cfg['ls_c'] == 0.4


def test_train_py_ls_settings_default_to_none():
    ns, keys = train_py_defaults()
    ls = {k: ns[k] for k in keys if k.startswith('ls_')}
    # the trainer's own settings
    assert ls.pop('ls_trial_microsteps') == 1 and ls.pop('ls_n_components') == 10
    assert ls.pop('ls_anneal_frac') == 0.0  # the line search's lr decay: off (the paper) unless set
    assert ls.pop('ls_anneal_to') == 0.1  # ... and its end, a fraction of the search's step
    assert ls.pop('ls_range_test') is False  # the AdamW warmup (the paper) unless set
    assert ls and all(v is None for v in ls.values()), ls  # the optimizer's: its own default unless set


def test_optimizer_kwargs_from_train_py_settings():
    """The line search's kwargs: the ls_* that are set, unprefixed, the trainer's own ls_* left out; AdamW's
    warmup or, with ls_range_test, the range test's ramp and hold of warmup_iters in its place (a set ls_*
    wins there); grad_clip as max_grad_norm; nothing for adamw and muon."""
    from trainer.config import optimizer_kwargs
    ns, keys = train_py_defaults()
    config = {k: ns[k] for k in keys}
    config.update(optimizer='alsals', warmup_iters=40, grad_clip=0.5, ls_c=0.3, ls_trial_microsteps=2)
    assert optimizer_kwargs(config) == dict(warmup_steps=40, max_grad_norm=0.5, c=0.3)
    config.update(ls_range_test=True, ls_ramp_hold=7)
    assert optimizer_kwargs(config) == dict(warmup_steps=0, max_grad_norm=0.5, c=0.3, ramp=4.0, ramp_hold=7)
    config.update(warmup_iters=5)  # at least one step per doubling
    assert optimizer_kwargs(config)['ramp'] == 1.0
    for name in ('adamw', 'muon'):
        assert optimizer_kwargs(dict(config, optimizer=name)) == {}
