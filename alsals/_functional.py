"""
The arithmetic of the line-search optimizers (alsals.py, variants.py, muon.py), as torch.optim keeps its
functional forms beside the classes: one param group's tensors and directions, the slope along the trial
direction, the moves of the parameters, the reduction of the decision inputs over ranks, and the Armijo search
itself as one function of plain numbers.
"""
import math
import sys
from typing import Callable, NamedTuple

import torch
import torch.distributed as dist


def require(ok: bool, message: str) -> None:
    """A hyperparameter's check: a one-line ValueError."""
    if not ok:
        raise ValueError(message)


def is_dtensor(t) -> bool:
    """Whether t is a DTensor (FSDP2's parameters and their state). torch.distributed.tensor is slow to
    import, so it is not imported here: until FSDP2 has imported it, no tensor is a DTensor."""
    module = sys.modules.get('torch.distributed.tensor')
    return module is not None and isinstance(t, module.DTensor)


def local(t: torch.Tensor) -> torch.Tensor:
    """A DTensor's local shard (a view: in-place ops on it move the parameter), or the tensor itself."""
    return t.to_local() if is_dtensor(t) else t


class Part:
    """One param group's tensors with a gradient, gathered once per step (local shards under FSDP2), and its
    directions: d = scale * num / denom (denom None: scale * num), one scale per tensor."""

    def __init__(self, group: dict):
        self.group = group
        self.params, self.grads, self.states = [], [], []
        self.clip_coef = 1.0
        self.final_num, self.final_scale = [], []
        self.trial_num, self.trial_scale = [], []
        self.denom = None
        self.trial_mult = self.applied_mult = 1.0   # lr_0(group)/lr_0(reference), lr/lr_0(reference)


def by_component(parts: list) -> list:
    """The parts grouped by group['component'], components in increasing order of their id."""
    comps = {}
    for part in parts:
        comps.setdefault(part.group['component'], []).append(part)
    return [comps[k] for k in sorted(comps)]


def write(groups: list, all_groups: list, **values) -> None:
    """The one way the search's scalars are written: into every group of the components of `groups` (a
    component's scalars live in all its groups, also those without grads; all_groups: the optimizer's)."""
    components = {g['component'] for g in groups}
    for group in all_groups:
        if group['component'] in components:
            group.update(values)


def reduce(groups: list, values: list, partial: tuple = (), sharded: bool = False) -> list:
    """The mean over ranks of a few scalars (tensors or floats), in one collective and one host sync. Under
    FSDP2 (sharded) the entries marked partial are this rank's part of a sum over shards: those are summed."""
    device = local(groups[0]['params'][0]).device
    # a python float
    t = torch.stack([v.detach().to(device, torch.float64).reshape(()) if torch.is_tensor(v)
                     else torch.full((), v, dtype=torch.float64, device=device) for v in values])  # is a fill
    if not (groups[0]['reduce_losses'] and dist.is_available() and dist.is_initialized()
            and dist.get_world_size() > 1):
        return t.tolist()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    n = dist.get_world_size()
    return [v if sharded and i < len(partial) and partial[i] else v / n for i, v in enumerate(t.tolist())]


# ---- the directions and the slope --------------------------------------------------------------------------
def adam_directions(part: Part, clip_coef: float, adam: bool, momentum_trial: bool) -> None:
    """Adam's moments on the clipped gradient (as clip_grad_norm_ + AdamW), then the directions:
    d_final = -m^/(sqrt(v^)+eps) = scale * m / denom  [A] Eq. 3, with scale = -sqrt(1-beta2^t)/(1-beta1^t),
    denom = sqrt(v) + eps*sqrt(1-beta2^t) (torch.optim.AdamW's rewrite); SGD: d = -coef * g."""
    part.clip_coef = clip_coef
    if not adam:
        part.final_num = part.trial_num = part.grads
        part.final_scale = part.trial_scale = [-clip_coef] * len(part.grads)
        return
    beta1, beta2 = part.group['betas']
    exp_avgs = [local(s['exp_avg']) for s in part.states]
    exp_avg_sqs = [local(s['exp_avg_sq']) for s in part.states]
    if clip_coef == 1.0:
        torch._foreach_lerp_(exp_avgs, part.grads, 1 - beta1)              # one pass
    else:
        torch._foreach_mul_(exp_avgs, beta1)
        torch._foreach_add_(exp_avgs, part.grads, alpha=(1 - beta1) * clip_coef)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, part.grads, part.grads, value=(1 - beta2) * clip_coef ** 2)
    eps_prime, trial_scale = [], []
    for state in part.states:
        state['step'] += 1
        bc1, bc2 = 1 - beta1 ** state['step'], 1 - beta2 ** state['step']
        part.final_scale.append(-math.sqrt(bc2) / bc1)
        trial_scale.append(-clip_coef * math.sqrt(bc2))                   # [F] Eq. 5: -g/(sqrt(v^)+eps)
        eps_prime.append(part.group['eps'] * math.sqrt(bc2))
    part.denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_add_(part.denom, eps_prime)
    part.final_num = exp_avgs
    part.trial_num, part.trial_scale = ((exp_avgs, part.final_scale) if momentum_trial
                                        else (part.grads, trial_scale))


def exact_slope(comp: list) -> torch.Tensor:
    """f_a = -g.d_trial with the unclipped gradient g, as a float64 device tensor (this rank's shards under
    FSDP2; no sync here: it is fetched with the first trial loss). One float32 dot per tensor, summed in
    float64 and weighted by python floats (a weight tensor would be a host-to-device copy, a sync on CUDA)."""
    total = 0.0
    for part in comp:
        if part.denom is None:
            ratio = part.trial_num
        else:
            ratio = torch._foreach_div(part.trial_num, part.denom)
        dots = [torch.dot(g.reshape(-1), r.reshape(-1).to(g.dtype)) for g, r in zip(part.grads, ratio)]
        weights = [-s * part.trial_mult for s in part.trial_scale]
        del ratio
        if len(set(weights)) == 1:                                     # the usual case: one bias correction
            total = total + torch.stack(dots).double().sum() * weights[0]
        else:
            total = total + sum(d.double() * w for d, w in zip(dots, weights))
    return total


def multipliers(comp: list) -> None:
    """Per group of a component: the trial moves eta * lr_0(k)/lr_0(ref) along d_k; the applied step is
    eta * lr(k)/lr_0(ref), so a scheduler's lr scales it (ref: the component's first group)."""
    lr0 = comp[0].group['handoff_lr']
    for part in comp:
        part.trial_mult = part.group['handoff_lr'] / lr0
        part.applied_mult = part.group['lr'] / lr0


# ---- the moves: each one pass over a part's tensors --------------------------------------------------------
def move(part: Part, step: float, trial: bool) -> None:
    """w += step * d, with d the trial direction (trial=True) or the final one, in one pass."""
    if step == 0.0:
        return
    num, scale = (part.trial_num, part.trial_scale) if trial else (part.final_num, part.final_scale)
    if part.denom is not None:
        torch._foreach_addcdiv_(part.params, num, part.denom, [step * s for s in scale])
    elif len(set(scale)) == 1:
        torch._foreach_add_(part.params, num, alpha=step * scale[0])
    else:
        for p, n, s in zip(part.params, num, scale):
            p.add_(n, alpha=step * s)


def decay(part: Part, applied: float) -> None:
    """From w + a*d to the AdamW-form update w*(1 - a*wd) + a*d = p*(1 - a*wd) + a^2*wd*d."""
    wd = part.group['weight_decay']
    if wd != 0.0 and applied != 0.0:
        torch._foreach_mul_(part.params, 1.0 - applied * wd)
        move(part, applied * applied * wd, trial=False)


def update(comp: list, eta: float, applied_mult: bool = True) -> None:
    """The plain update w <- w*(1 - a*wd) + a*d_final (no search), a = eta * the part's applied multiplier (or
    its lr itself: applied_mult=False, the warmup's AdamW step)."""
    for part in comp:
        a = eta * part.applied_mult if applied_mult else part.group['lr']
        move(part, a, trial=False)
        decay(part, a)


def accept(part: Part, tried: float, applied: float, momentum_trial: bool) -> None:
    """From the accepted trial point w + tried*d_trial to the update w*(1 - a*wd) + a*d_final, a = applied."""
    if not momentum_trial:                                             # [F]: the update uses the momentum
        move(part, -tried, trial=True)
        move(part, applied, trial=False)
    # a scheduler's lr: d_final == d_trial here
    elif applied != tried:
        move(part, applied - tried, trial=False)
    decay(part, applied)


# ---- the search --------------------------------------------------------------------------------------------
class Search(NamedTuple):
    """What armijo() found: the eta it ends at, the EMAs to keep, whether the test passed (else exhausted)."""
    eta: float
    D: float
    G: float
    accepted: bool
    backtracks: int
    f_trial: float
    f_a: float
    ema_restart: bool


def armijo(trial: Callable[[float], tuple], f_w: float, eta: float, D: float, G: float, c: float,
           beta_s: float, smooth: bool, backtrack: float, max_backtracks: int, eta_min: float,
           accept_any: bool = False) -> Search:
    """Backtracking Armijo search from eta, [A] Eq. 8-9 (both sides smoothed with beta_s when smooth).

    trial(eta) -> (f(w + eta*d), f_a): one forward at the trial point (the parameters move there), and the
        slope
    f_a = -grad f(w).d. Accepted: the first finite trial with D' >= c_h * eta * G' (accept_any: every finite
    trial; the start's warming steps). Exhausted: max_backtracks rejections or eta at eta_min; the EMAs are
    then left to the caller (it restarts them). A negative smoothed decrease D restarts both EMAs first: no
    eta could pass the smoothed test, beta_s*D < 0 <= c_h*eta*G' as eta -> 0."""
    restart = smooth and D < 0
    if restart:
        D = G = 0.0
    backtracks = 0
    while True:
        f_t, f_a = trial(eta)
        G_new = beta_s * G + (1 - beta_s) * f_a if smooth else f_a
        c_h = c if G_new > 0 else 1.0 / c                                              # [A] Eq. 8
        D_new = beta_s * D + (1 - beta_s) * (f_w - f_t) if smooth else f_w - f_t
        if math.isfinite(f_t) and (accept_any or D_new >= c_h * eta * G_new):       # [A] Eq. 9
            return Search(eta, D_new, G_new, True, backtracks, f_t, f_a, restart)
        if backtracks >= max_backtracks or eta <= eta_min:
            return Search(eta, D, G, False, backtracks, f_t, f_a, restart)
        eta = max(eta * backtrack, eta_min)
        backtracks += 1
