"""
The study's learning-rate-free peers (experiments/study.py, --what peers): Prodigy, D-Adapt Adam,
Schedule-Free
AdamW, SaLSA, DoG (with its polynomial-decay averaging), Mechanic (on AdamW) and Prodigy + Schedule-Free, with
their authors' settings. They are optional extras (requirements-study.txt); a missing one is
reported as "not run".

They cannot go through train.py's command line, so each runs in its own process (`study.py --peer <method> --
<train.py arguments>`, study.run_one's subprocess) on train.py's setup (trainer/setup.py: train.py's model,
batches, estimate_loss and training step) with the peer's optimizer in the step, and writes the JSON-lines
records train.py would write, which the study reads like any run's. SaLSA's step takes a closure that runs its
own backward, so it uses train.py's model and batches but not train_step.
"""
import json
import math
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# method: the module that provides it
PEERS = {'prodigy': 'prodigyopt', 'dadapt_adam': 'dadaptation', 'schedulefree_adamw': 'schedulefree',
         'salsa': 'salsa.SaLSA', 'dog': 'dog', 'mechanic': 'mechanic_pytorch', 'prodigy_sf': 'prodigyplus'}
PEER_LR = {'prodigy': 'lr 1 x schedule', 'dadapt_adam': 'lr 1 x schedule', 'schedulefree_adamw': 'lr 0.0025',
           'salsa': 'initial step 1', 'dog': 'lr 1, averaged', 'mechanic': 'AdamW lr 1 x schedule',
           'prodigy_sf': 'lr 1'}  # the authors' settings (peer_main), as the tables show them
# the peers whose lr is a step size, not a multiplier of a learned scale: study.py brackets it (--lrs)
PEER_HAS_LR = ('schedulefree_adamw',)


def peers_available():
    """{method: None if it can run here, else why not (the import error)}."""
    out = {}
    for m, mod in PEERS.items():
        try:
            __import__(mod)
            out[m] = None
        except Exception as e:  # noqa: BLE001 - optional extra
            out[m] = f"{type(e).__name__}: {e}"
    return out


def peer_main(method, argv):
    """One peer run in this process (`study.py --peer method -- <train.py arguments>`): train.py's setup
    without its loop, its optimizer replaced by the peer's; the loop here writes train.py's JSON-lines
    records."""
    import torch
    os.chdir(ROOT)
    sys.path.insert(0, ROOT)
    from trainer import step
    from trainer.setup import from_args  # train.py's setup: the attributes it returns are in its docstring
    log_file = dict(a[2:].split('=', 1) for a in argv if a.startswith('--'))['log_file']
    # train.py's lr schedule becomes the peer's multiplier (Prodigy and D-Adaptation use lr=1 with the
    # schedule one would use for Adam): warmup to 1, cosine to 0.1
    given_lr = float(dict(a[2:].split('=', 1) for a in argv if a.startswith('--'))['learning_rate'])
    argv = [a for a in argv if not a.startswith(('--log_file=', '--learning_rate=', '--min_lr='))]
    train = from_args(argv + ['--learning_rate=1.0', '--min_lr=0.1'])
    model, get_batch, get_lr, cfg = train.model, train.get_batch, train.get_lr, train.config
    wd, betas = cfg['weight_decay'], (cfg['beta1'], cfg['beta2'])
    warmup, max_iters, eval_interval = cfg['warmup_iters'], cfg['max_iters'], cfg['eval_interval']
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{'params': [p for p in params if p.dim() >= 2], 'weight_decay': wd},
              {'params': [p for p in params if p.dim() < 2], 'weight_decay': 0.0}]
    scheduled = method in ('prodigy', 'dadapt_adam', 'mechanic')
    averager = None
    if method == 'prodigy':
        # authors' README: lr=1.0 with a cosine schedule; with warmup use safeguard_warmup and bias correction
        from prodigyopt import Prodigy
        opt = Prodigy(groups, lr=1.0, betas=betas, weight_decay=wd, decouple=True, safeguard_warmup=True,
                      use_bias_correction=True)
    elif method == 'dadapt_adam':
        # authors' README: lr=1.0 with the schedule one would use for Adam; decouple=True for AdamW-style
        # decay
        from dadaptation import DAdaptAdam
        opt = DAdaptAdam(groups, lr=1.0, betas=betas, weight_decay=wd, decouple=True)
    elif method == 'schedulefree_adamw':
        # authors' defaults: lr=0.0025, warmup recommended, no schedule
        import schedulefree
        # (study.py --lrs brackets it: a run's learning_rate other than 1 is Schedule-Free's lr)
        opt = schedulefree.AdamWScheduleFree(groups, lr=0.0025 if given_lr == 1.0 else given_lr, betas=betas,
                                             weight_decay=wd, warmup_steps=warmup)
    elif method == 'dog':
        # authors' README: DoG with lr=1 (reps_rel=1e-6), combined with its polynomial-decay iterate
        # averaging, evaluated at the averaged model
        from dog import DoG, PolynomialDecayAverager
        opt = DoG(groups, lr=1.0)
        averager = PolynomialDecayAverager(train.raw_model)
    elif method == 'mechanic':
        # the paper's use: the base optimizer (AdamW) and its schedule as one would run it, with base lr 1:
        # Mechanic's learned scale s is then the step size
        import torch
        from mechanic_pytorch import mechanize
        opt = mechanize(torch.optim.AdamW)(groups, lr=1.0, betas=betas, weight_decay=wd)
    elif method == 'prodigy_sf':
        # package defaults (lr=1, schedule-free, its own warmup-free d adaptation); needs train()/eval()
        from prodigyplus import ProdigyPlusScheduleFree
        opt = ProdigyPlusScheduleFree(groups, lr=1.0, betas=betas, weight_decay=wd)
    else:
        # package defaults (init_step_size=1, c=0.5, speed_up=True); its API has no weight decay
        from salsa.SaLSA import SaLSA
        opt = SaLSA(params)
    step_args = dict(train.step_args, optimizer=opt)  # train.py's step, with the peer stepping
    sf = method in ('schedulefree_adamw', 'prodigy_sf')

    def rate():
        if method == 'salsa':
            return float(opt.step_size)
        grp = opt.param_groups[0]
        if method == 'dog':
            return float(grp['eta'][0])
        if method == 'mechanic':
            return float(grp['lr']) * float(opt.state['_mechanic']['s'].sum())
        return float(grp['lr']) * float(grp.get('d', 1.0))

    def salsa_step(X, Y, iter_num):
        # SaLSA's closure(backwards) runs the forward (and the backward when asked) on the step's batch itself
        def closure(backwards=False):
            if backwards:
                opt.zero_grad(set_to_none=True)
                with train.ctx:
                    loss = model(X, Y)[1]
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg['grad_clip'])
                return loss.detach()
            with torch.no_grad(), train.ctx:
                return model(X, Y)[1]
        n0 = opt.state['n_forwards']
        loss = opt.step(closure)
        return get_batch('train', iter_num + 1), float(loss), opt.state['n_forwards'] - n0 - 1

    with open(log_file, 'a') as f:
        def write(rec):
            f.write(json.dumps(rec) + '\n')
            f.flush()
        X, Y = get_batch('train', 0)
        if sf:
            opt.train()
        for iter_num in range(max_iters + 1):
            if scheduled:
                for grp in opt.param_groups:
                    grp['lr'] = get_lr(iter_num)
            if iter_num % eval_interval == 0 or iter_num == max_iters:
                if sf:
                    opt.eval()  # schedule-free evaluates at its averaged point
                # DoG: at the averaged model
                losses = (train.estimate_loss() if averager is None else
                          step.estimate_loss(averager.averaged_model, get_batch, cfg['eval_iters'],
                                             train.ctx))
                if sf:
                    opt.train()
                write({'iter': iter_num, 'train_loss': losses['train'], 'val_loss': losses['val']})
                if not math.isfinite(losses['val']):
                    break
            if iter_num == max_iters:
                break
            t0 = time.perf_counter()
            if method == 'salsa':
                (X, Y), loss, extra = salsa_step(X, Y, iter_num)
            else:
                X, Y, loss, _ = step.train_step(X, Y, iter_num, **step_args)
                loss, extra = float(loss), 0
                if averager is not None:
                    averager.step()
            write({'iter': iter_num, 'loss': loss, 'lr': rate(), 'dt_ms': 1000 * (time.perf_counter() - t0),
                   'forwards': extra, 'backtracks': 0, 'skipped': not math.isfinite(loss),
                   'warmup': iter_num < warmup})
