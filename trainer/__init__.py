"""
The trainer: what train.py's loop calls, and what bench.py, the GPU scripts (scripts/), the experiments and
the tests share with it, so that each measures exactly what train.py trains (after karpathy/nanochat's library
beside its scripts: scripts import it, it imports no script).

  trainer/defaults.py    the settings and their defaults, one global a line (nanoGPT's config block)
  trainer/config.py      a command line over the defaults; their checks; the optimizer's kwargs from ls_*
  trainer/setup.py       setup(config): process group, data, model, optimizer, compile, DDP
  trainer/step.py        the lr schedule, the loss estimate, the line search's trial closure, the step
  trainer/checkpoint.py  ckpt.pt and FSDP2's shards, RNG states, what a resume checks and announces
  trainer/distributed.py the process group, FSDP2's sharding, the end of a DDP run
  trainer/hellaswag.py   HellaSwag's scoring at every eval
  trainer/runlog.py      the JSON-lines log and the wandb run
"""
