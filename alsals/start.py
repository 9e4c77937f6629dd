"""
The line search's start when ramp > 0 (not in the papers): an LR range test, then a hold below its edge.

    eta_1 = lr / 100 (ramp_from > 0: ramp_from), eta_t = eta_{t-1} * 2**(1/ramp)   plain steps, eta doubling
                                                                   every ramp steps
    E_1 = f(w_1), E_t = (1 - 1/ramp) * E_{t-1} + f(w_t) / ramp     an EMA over ramp steps of the training loss
    the edge: the first t with E_t > 1.02 * min(E_1..E_t), or with eta_t >= eta_max (the loss never rose)
    there: eta = min(eta_{t-1} / ramp_sigma, eta_max), held for ramp_hold steps (-1: ramp steps); the last
           ema_warmup_steps of them take a trial that is always accepted, to warm the search's EMAs D and G
           as a warmup's last steps do. Then the search.

L. N. Smith, "Cyclical Learning Rates for Training Neural Networks", 2017 (the range test); ramp_sigma = 2
after Roulet et al., "Stepping on the Edge: Curvature Aware Learning Rate Tuners", 2024. The losses it reads
are the optimizer's f(w), the same all-reduced value on every rank. Its state lives beside the search's, in
every param
group (STATE), so a run resumed in the middle of the test continues it.
"""
import math

_RANGE_START = 0.01   # the test starts at 1/100 of the first guess ...
_RANGE_RISE = 0.02    # ... and ends when the smoothed loss is 2 % above its minimum: the edge
# ramping None: not begun; edge: the eta at which the smoothed loss rose (a record of what the test read)
STATE = dict(ramping=None, hold_left=0, loss_ema=0.0, loss_min=math.inf, edge=0.0)


def pending(s: dict) -> bool:
    """Whether the next step belongs to the start; s: the optimizer's first param group."""
    return (s['ramping'] is None and s['ramp'] > 0) or bool(s['ramping']) or s['hold_left'] > 0


def step(groups: list, eta: float, f_w: float):
    """This step of the start, from the current eta and f(w); writes the start's state into every group.
    Returns None once the start is over (the search steps), else (eta, mode): step with this eta, by a plain
    update (mode 'ramp', 'edge': the test's last step, 'hold') or by a trial that is always accepted ('warm').
    """
    s = groups[0]
    new = {}
    if s['ramping'] is None:                                            # the first step after any warmup
        new['ramping'] = s['ramp'] > 0
    if new.get('ramping', s['ramping']):
        k, fresh = s['ramp'], s['loss_min'] == math.inf
        beta = 1.0 - 1.0 / k
        ema = f_w if fresh else beta * s['loss_ema'] + (1 - beta) * f_w
        new.update(loss_ema=ema, loss_min=min(ema, s['loss_min']))
        first_eta = s['ramp_from'] if s['ramp_from'] > 0 else eta * _RANGE_START
        mode, eta_t = 'ramp', first_eta if fresh else eta * 2.0 ** (1.0 / k)
        if ema > (1.0 + _RANGE_RISE) * new['loss_min'] or eta_t >= s['eta_max']:
            # eta: the step that made the loss rise
            mode, eta_t = 'edge', min(eta / s['ramp_sigma'], s['eta_max'])
            new.update(ramping=False, hold_left=k if s['ramp_hold'] < 0 else s['ramp_hold'],
                       edge=min(eta, s['eta_max']))
        result = eta_t, mode
    elif s['hold_left'] > 0:
        new['hold_left'] = s['hold_left'] - 1
        result = eta, 'warm' if s['smooth'] and new['hold_left'] < s['ema_warmup_steps'] else 'hold'
    else:
        result = None
    for group in groups:
        group.update(new)
    return result
