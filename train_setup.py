"""
train.py's setup, for the scripts that drive its training step themselves: bench.py, gpu_check.py, and in
experiments/ the study's peers and the landscape. The one place that runs train.py as a library.

train.py is a flat script, as in nanoGPT: its setup (config, data checks, model, optimizer, compile) runs from
top to bottom, and its training loop only when it is the main program (`while __name__ == '__main__'`). setup()
runs that file under another name with the given command line, so the caller gets exactly what
`python train.py <args>` would train, without the loop. It returns a namespace holding these names of train.py
(the objects themselves, as train.py's own functions see them):

  config          dict: every setting after config files and --key=value, as given (DDP's division of
                  gradient_accumulation_steps and the rank's device come after); config['optimizer'] is the
                  optimizer's name ('adamw', 'alsals', ...)
  model           the model being trained: compiled (compile=True) and DDP-wrapped (under torchrun)
  raw_model       the GPT itself (model.py), unwrapped
  optimizer       the optimizer object (AdamW, alsals.MuonAdamW, or a line search of the alsals package)
  line_search     whether optimizer is a line search (config['optimizer'] not 'adamw' or 'muon')
  n_trial         how many micro-batches the line search's trial forward runs on
  train_step      train_step(X, Y, iter_num) -> (next X, next Y, the step's mean loss tensor, applied): one
                  training iteration, the loop's (the line search's step included)
  replay_closure  replay_closure(model, [(X, Y, rng_state)], ctx): the trial closure train_step hands the search
  get_batch       get_batch(split, index) -> (X, Y): batch number `index` of 'train' or 'val' (its own seed)
  estimate_loss   estimate_loss() -> {'train': loss, 'val': loss} on the fixed eval batches
  get_lr          get_lr(it): the learning rate at iteration it (warmup, then cosine or wsd decay; the line
                  search: constant, then a linear decay over the last ls_anneal_frac, which scales its applied step)
  ctx             the autocast context of the forward passes (nullcontext for float32)
  device          the device the model is on ('cuda:<local rank>' under DDP)
  gradient_accumulation_steps   micro-batches per step, per process
  batch_size      sequences per micro-batch
  tokens_per_iter tokens per step, all processes together
  iter_num        the iteration the run would start at (0, or the checkpoint's with --init_from=resume)
  globals         train.py's own module globals (a live dict): train_step, estimate_loss and get_batch read their
                  names there; set globals['optimizer'] to train with another optimizer (experiments/peers.py)

train.py's paths (data/<dataset>, out_dir, config files) are relative to the current directory, as on the command
line: run from the repository root, or pass cwd (the directory is restored after the setup; get_batch opens the
data again on each call, so a relative dataset needs that directory then too).
"""
import os
import runpy
import sys
from contextlib import nullcontext, redirect_stdout
from io import StringIO
from types import SimpleNamespace

TRAIN_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'train.py')
NAMES = ('config', 'model', 'raw_model', 'optimizer', 'line_search', 'n_trial', 'train_step', 'replay_closure',
         'get_batch', 'estimate_loss', 'get_lr', 'ctx', 'device', 'gradient_accumulation_steps',
         'batch_size', 'tokens_per_iter', 'iter_num')


def setup(args, run_name='train_setup', quiet=False, cwd=None):
    """train.py's setup with command line `args` (config files and --key=value, as for `python train.py`);
    returns the namespace of NAMES and `globals` described above. quiet: discard what it prints (the config echo,
    notices). run_name='__main__' runs the training loop too, as `python train.py` does. Errors exit as
    train.py's do (SystemExit with a one-line message). sys.argv and the current directory are restored."""
    argv, here = sys.argv, os.getcwd()
    sys.argv = ['train.py', *args]
    try:
        if cwd is not None:
            os.chdir(cwd)
        with redirect_stdout(StringIO()) if quiet else nullcontext():
            ns = runpy.run_path(TRAIN_PY, run_name=run_name)
    finally:
        sys.argv = argv
        os.chdir(here)
    g = ns['train_step'].__globals__ # run_path returns a copy of the globals; the functions hold the real ones
    return SimpleNamespace(**{k: g[k] for k in NAMES}, globals=g)
