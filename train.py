"""
This training script can be run both on a single gpu in debug mode,
and also in a larger training run with distributed data parallel (ddp).

To run on a single GPU, example:
$ python train.py --batch_size=32 --compile=False

To run with DDP on 4 gpus on 1 node, example:
$ torchrun --standalone --nproc_per_node=4 train.py

To run with DDP on 4 gpus across 2 nodes, example:
- Run on the first (master) node with example IP 123.456.123.456:
$ torchrun --nproc_per_node=8 --nnodes=2 --node_rank=0 --master_addr=123.456.123.456 --master_port=1234 \
    train.py
- Run on the worker node:
$ torchrun --nproc_per_node=8 --nnodes=2 --node_rank=1 --master_addr=123.456.123.456 --master_port=1234 \
    train.py
(If your cluster does not have Infiniband interconnect prepend NCCL_IB_DISABLE=1)
On several nodes, out_dir must be a directory that every node sees (a shared file system): FSDP2 (--fsdp=True)
writes each rank's shards there, and every rank reads ckpt.pt on --init_from=resume.

The settings and their defaults are trainer/defaults.py's; the setup (data, model, optimizer, compile, DDP) is
trainer/setup.py's and the training step trainer/step.py's, which bench.py and the experiments share. The
optimizer is AdamW, Muon or a line search (alsals/); its sites are marked `# ---- line search ----`.
"""

import math
import sys
import time

from configurator import fail
from trainer import checkpoint as ckpt_io, config as cfg, distributed, runlog
from trainer.defaults import * # noqa: F403 - the settings as globals, as in nanoGPT
from trainer.setup import setup
from trainer.step import ls_lr_base

# -----------------------------------------------------------------------------
config = cfg.parse(sys.argv[1:]) # overrides from command line or config file
globals().update(config) # will be useful for logging, and the loop reads the settings as globals
# -----------------------------------------------------------------------------

# various inits, derived attributes, I/O setup; the model, the optimizer, compile and DDP (trainer/setup.py)
run = setup(config)
model, raw_model, optimizer = run.model, run.raw_model, run.optimizer
master_process, get_lr, line_search = run.master_process, run.get_lr, run.line_search
iter_num, best_val_loss, nonfinite_steps = run.iter_num, run.best_val_loss, run.nonfinite_steps
log_json = runlog.json_log(log_file if master_process else '', fresh=init_from != 'resume') # log_file's lines
if hellaswag_file and run.hellaswag_data:
    from trainer import hellaswag

# logging
wandb_run = None
if wandb_log and master_process:
    import wandb
    wandb_run = runlog.wandb_start(wandb_project, wandb_run_name, config, run.wandb_run_id) # resume: the same

# training loop
X, Y = run.get_batch('train', iter_num * run.gradient_accumulation_steps) # fetch the very first batch
t0 = time.time()
local_iter_num = 0 # number of iterations in the lifetime of this process
running_mfu = -1.0
dt_sum, dt_n = 0.0, 0 # iteration times after this process's first: the ETA's mean
hms = lambda s: f"{int(s) // 3600}:{int(s) % 3600 // 60:02d}:{int(s) % 60:02d}" # h:mm:ss
while True:

    # determine and set the learning rate for this iteration
    lr = get_lr(iter_num) if decay_lr else learning_rate
    for param_group in optimizer.param_groups: # muon: its AdamW groups run at muon_adamw_lr (lr_scale)
        param_group['lr'] = lr * param_group.get('lr_scale', 1.0) # line search: eta * lr/lr_0 after warmup

    # evaluate the loss on train/val sets and write checkpoints (with every rank's RNG state, gathered by all)
    rng_states = ckpt_io.gather_rng_states() if iter_num % eval_interval == 0 else None
    # HellaSwag: every rank scores items rank::world_size (the counts all-reduced), on the uncompiled model
    hs = (hellaswag.evaluate(raw_model, run.hellaswag_data, run.device, run.ctx, run.rank, run.world_size,
                             lockstep=fsdp) if run.hellaswag_data and iter_num % eval_interval == 0 else None)
    if iter_num % eval_interval == 0 and (master_process or fsdp): # FSDP2: every rank evaluates and saves
        losses = run.estimate_loss()
        if master_process:
            print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}"
                  + (f", hellaswag {hs['acc']:.4f} ({hs['n']} items; by summed loss {hs['acc_sum']:.4f})"
                     if hs else ""))
        log_json(iter=iter_num, train_loss=losses['train'], val_loss=losses['val'],
                 **(dict(hellaswag=hs['acc'], hellaswag_sum=hs['acc_sum']) if hs else {}))
        if wandb_run:
            wandb.log({"train/loss": losses['train'], "val/loss": losses['val'],
                       **({"hellaswag": hs['acc']} if hs else {})}, step=iter_num)
        if not math.isfinite(losses['val']):
            if master_process:
                print(f"val loss is not finite: not saving a checkpoint")
        elif (losses['val'] < best_val_loss or always_save_checkpoint) and not eval_only:
            best_val_loss = min(best_val_loss, losses['val'])
            if iter_num > 0:
                checkpoint = {'model_args': run.model_args, 'iter_num': iter_num,
                              'best_val_loss': best_val_loss, 'config': config, 'rng': rng_states, # per rank
                              'nonfinite_steps': nonfinite_steps,
                              'wandb_run_id': wandb_run.id if wandb_run else run.wandb_run_id}
                if master_process:
                    print(f"saving checkpoint to {out_dir}")
                # ckpt.pt, atomically; FSDP2: every rank writes its shards (DCP), then rank 0 ckpt.pt
                ckpt_io.save_checkpoint(raw_model, optimizer, checkpoint, out_dir)
                checkpoint = None
    if eval_only: # also when resuming (iter_num > 0): evaluate, never train
        break

    X, Y, loss, applied = run.train_step(X, Y, iter_num)
    nonfinite_steps = 0 if applied else nonfinite_steps + 1 # a non-finite loss or gradient: no update
    if not applied:
        print(f"iter {iter_num}: update skipped: non-finite loss or gradient "
              f"({nonfinite_steps}/{max_nonfinite_steps} in a row)")
        if nonfinite_steps >= max_nonfinite_steps: # too many in a row stop the run
            fail(f"{nonfinite_steps} consecutive non-finite steps at iter {iter_num}; stopping (last good "
                 f"checkpoint in {out_dir} kept)")

    # timing and logging
    t1 = time.time()
    dt = t1 - t0
    t0 = t1
    if local_iter_num >= 1: # the ETA's mean time per iteration leaves out the first (compilation, warm-up)
        dt_sum, dt_n = dt_sum + dt, dt_n + 1
    if iter_num % log_interval == 0 and master_process:
        # get loss as float. note: this is a CPU-GPU sync point
        lossf = loss.item()
        # ---- line search ---- its step size after warmup, its trial forwards (each on n_trial micro-batches)
        st = optimizer.last_stats if line_search else dict(eta=lr, forwards=0, backtracks=0,
                                                           warmup=iter_num < warmup_iters)
        step_size = lr if st['warmup'] else st['eta']
        if local_iter_num >= 5: # let the training loop settle a bit
            mfu = raw_model.estimate_mfu(batch_size * run.gradient_accumulation_steps, dt,
                                         extra_forwards=st['forwards'] * run.n_trial * batch_size)
            running_mfu = mfu if running_mfu == -1.0 else 0.9*running_mfu + 0.1*mfu
        extra = (f", fwd {st['forwards']}, bt {st['backtracks']}" + (" (warmup)" if st['warmup'] else "")
                 if line_search else "")
        # tok/s: this iteration's training tokens (all ranks) over its wall time, which includes the line
        # search's trial forwards (their tokens are not counted) and, every eval_interval, the eval; eta: to
        # max_iters at the mean time per iteration so far
        tok_per_s = run.tokens_per_iter / dt
        eta_s = (max_iters - iter_num) * (dt_sum / dt_n if dt_n else dt)
        print(f"iter {iter_num}: loss {lossf:.4f}, time {dt*1000:.2f}ms, mfu {running_mfu*100:.2f}%, "
              f"lr {step_size:.3e}{extra}, tok/s {tok_per_s:,.0f}, eta {hms(eta_s)}")
        log_json(iter=iter_num, loss=lossf, lr=step_size, dt_ms=dt*1000, forwards=st['forwards'],
                 backtracks=st['backtracks'], skipped=not applied, warmup=st['warmup'], tok_per_s=tok_per_s,
                 eta_s=eta_s, **({'lr_factor': get_lr(iter_num) / ls_lr_base(config)} if line_search else {}))
        if wandb_run: # lr: the schedule's; ls/eta: the search's step size (the applied step is eta*lr/lr_0)
            wandb.log({"train/loss_step": lossf, "lr": lr, "mfu": running_mfu*100, "tok_per_s": tok_per_s,
                       "eta_s": eta_s, **({"ls/eta": st['eta'], "ls/forwards": st['forwards'],
                                           "ls/backtracks": st['backtracks']} if line_search else {})},
                      step=iter_num)
    iter_num += 1
    local_iter_num += 1

    # termination conditions
    if iter_num > max_iters:
        break

if wandb_run and not run.ddp:
    wandb.finish()
if run.ddp:
    # every rank must end with the same parameters (checked); then the group is torn down and the process ends
    distributed.finish_ddp(raw_model, master_process, finish_wandb=wandb_run is not None, sharded=fsdp)
