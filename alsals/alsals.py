"""
ALSALS and the stochastic line-search (SLS) family as torch.optim optimizers.

Papers:
  [A] P. Kenneweg, T. Kenneweg, B. Hammer, "Improving Line Search Methods for Large Scale Neural Network
      Training", 2024, arXiv:2403.18519 (ALSALS).
  [F] P. Kenneweg, L. Galli, T. Kenneweg, B. Hammer, "Faster Convergence for Transformer Fine-tuning with
      Line Search Methods", 2023 (SGD+SLS, ADAM+SLS, PLASLS).

Each step after the warmup (ALSALS; the variants below differ only in their directions):

    eta   <- min(eta * 2**(1/b), eta_max)                       growth between steps    [A] Eq. 2
    f_a    = -grad f(w) . d_trial                               slope along the trial direction
    loop:  f_t = f(w + eta * d_trial)                           one no-grad forward (the closure)
           D'  = beta_s*D + (1-beta_s)*(f(w) - f_t)             smoothed decrease       [A] Sec. II
           G'  = beta_s*G + (1-beta_s)*f_a                      smoothed slope
           c_h = c if G' > 0 else 1/c                           [A] Eq. 8
           accept if D' >= c_h * eta * G'                       [A] Eq. 9 (smoothed)
           else eta <- max(backtrack*eta, eta_min)              at most max_backtracks times
    a     = eta * lr / lr_0                                     lr_0: the group's lr at the hand-off
    w     <- w*(1 - a*wd) + a * d_final                         decoupled weight decay, AdamW form

    variant  d_trial                      d_final              f_a = -g.d_trial           c    smoothing
    ALSALS   -m^/(sqrt(v^)+eps)            = d_trial            g.m^/(sqrt(v^)+eps)       0.6  on   [A] Eq. 3, 6-9
    AdamSLS  -g/(sqrt(v^)+eps)             -m^/(sqrt(v^)+eps)   sum g^2/(sqrt(v^)+eps)    0.1  off  [F] Eq. 5
    SGDSLS   -g                            = d_trial            ||g||^2                   0.1  off  [F] Eq. 1-2
    PLASLS   as AdamSLS, one eta per network component, searched round robin             0.1  off  [F] Sec. III-C

f_a is the exact limit of [A] Eq. 6's finite difference (f(w) - f(w + lambda*d))/lambda as lambda -> 0, so it
costs no forward; fa='fd' evaluates Eq. 6 with lambda = fd_eps for comparison (float32/float64 only).

Where the state lives (as torch.optim and torch.distributed.checkpoint expect): tensors per parameter in
optimizer.state[p] (exp_avg, exp_avg_sq, step); every scalar of the search in the param groups (eta, D, G,
exhausted and the component of the group; step, cursor, skip_left and the run's totals in every group alike;
lr_0 as 'handoff_lr'). So state_dict() round-trips with torch's own code.

Project choices (not in the papers), each for a stated reason:
  * Parameters move in place: to w + eta*d for the trial, by (eta' - eta)*d on a rejection, and they stay at
    the accepted trial point. The Adam direction is never materialised: one buffer, sqrt(v) + eps', lives
    from the moments to the end of the step, and each move is one _foreach_addcdiv_.
  * lr schedulers act after the warmup: the applied step is a = eta * lr/lr_0 while the search tests and keeps
    eta itself, so a schedule (e.g. warmup-stable-decay annealing) never feeds back into the scale the search
    finds. Param groups scale the trial as well: group k moves eta * lr_0(k)/lr_0(first group of its
    component) along its own direction (1 when every group has the same lr).
  * A search that fails max_backtracks times, or reaches eta_min, is "exhausted": the parameters return to w
    (no update; a non-finite trial is never accepted) and both EMAs restart. If its last (smallest) trial was
    finite, the test failed at every eta tried: eta is too large and keeps that last tried value, so a first
    guess far too high keeps coming down (x0.12 per exhausted step; with the EMAs restarted, the next test is
    the plain Eq. 9 one). After non-finite trials eta keeps its last tried value only if the previous search
    was accepted, so a closure that fails whatever eta cannot shrink eta again and again.
  * If the smoothed decrease D is negative, the smoothed test tends to beta_s*D < 0 <= c_h*eta*G' as eta -> 0
    whatever the sign of G', so no eta can pass and the EMAs would lock the search for ~1/(1-beta_s) steps:
    the EMAs then restart, and that step uses the plain Eq. 9 test.
  * Warmup (first warmup_steps steps): plain AdamW (SGD for SGDSLS) with group['lr']. The moments carry over
    and the search starts from eta = the last warmup lr. In the last ema_warmup_steps warmup steps the closure
    is evaluated at the new point to warm D and G (every step accepted).
  * c_h takes the sign of the quantity it multiplies (the smoothed slope G' when smoothing, f_a otherwise).
  * Clipping (max_grad_norm) is done here: the clipped gradient feeds the moments (as clip_grad_norm_ + AdamW),
    but f_a uses the unclipped gradient, because the slope of the loss along d is -grad f(w).d.
  * A non-finite f(w) or gradient norm skips the step: neither moments nor parameters change.
  * The start when ramp > 0 (not in the papers): no AdamW warmup; an LR range test from lr/100 (or ramp_from)
    finds the edge where the training loss rises; the search starts from its eta / ramp_sigma (alsals/start.py).
  * lr = 0 in every group makes step() a no-op that only creates the per-parameter state:
    torch.distributed.checkpoint initialises a fresh optimizer's state that way.
  * DDP: every decision reads only all-reduced numbers, each decision's inputs in one collective: [f(w),
    gradient norm], [f_trial, f_a] (first trial), [f_trial] (each further trial). FSDP2 (DTensor parameters,
    one mesh over all ranks): the same collectives, with the norm and the slope summed over the shards; the
    moves act on each rank's local shard.

Usage (the fast path: f(w) from the training forward; see README for a complete loop):
    opt = ALSALS(model.parameters(), lr=6e-4, warmup_steps=2000)
    loss = loss_fn(model(x), y); loss.backward()
    opt.step(closure=lambda: loss_fn(model(x), y), loss=loss.detach())   # closure: same data, no grad needed
    opt.step(closure)    # torch.optim style: f(w) from one extra no-grad call of the closure
"""

import math
import sys
from typing import Any, Callable, Iterable, Optional, Union

import torch
import torch.distributed as dist

from . import start
from ._compat import upgrade_state_dict

Params = Union[Iterable[torch.Tensor], Iterable[dict]]

# the settings of the search itself: one search over all parameters, so they must agree in every group
_SEARCH_KEYS = ('c', 'smooth', 'beta_s', 'b', 'backtrack', 'max_backtracks', 'eta_min', 'eta_max', 'warmup_steps',
                'ema_warmup_steps', 'skip_stable', 'max_grad_norm', 'fa', 'fd_eps', 'reduce_losses', 'ramp',
                'ramp_sigma', 'ramp_hold', 'ramp_from')
# the search's scalars in every param group: per component (the groups sharing group['component']) ...
_COMPONENT_STATE = dict(eta=None, D=0.0, G=0.0, exhausted=False)
# ... and for the whole optimizer (every group holds the same value), the start's (alsals/start.py) among them
_OPTIMIZER_STATE = dict(step=0, cursor=0, skip_left=0, forwards=0, backtracks=0, exhaustions=0, skipped=0,
                        **start.STATE)


def _is_dtensor(t) -> bool:
    """Whether t is a DTensor (FSDP2's parameters and their state). torch.distributed.tensor takes about 0.8 s to
    import (torch itself 1.2-2 s, measured here), so it is not imported here: until FSDP2 has imported it, no
    tensor is a DTensor."""
    module = sys.modules.get('torch.distributed.tensor')
    return module is not None and isinstance(t, module.DTensor)


def _local(t: torch.Tensor) -> torch.Tensor:
    """A DTensor's local shard (a view: in-place ops on it move the parameter), or the tensor itself."""
    return t.to_local() if _is_dtensor(t) else t


class _Part:
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


class ALSALS(torch.optim.Optimizer):
    """ALSALS ([A] Sec. III): Armijo line search on the Adam-with-momentum direction d = -m^/(sqrt(v^)+eps),
    f_a = -grad f(w).d, c_h from [A] Eq. 8, both sides of [A] Eq. 9 smoothed. The module docstring gives the
    algorithm; the variants (AdamSLS, SGDSLS, PLASLS) are thin subclasses.

    Args:
        params (iterable): parameters or param groups (a group may set lr, betas, eps, weight_decay).
        lr (float, optional): the warmup learning rate, and the first eta when warmup_steps is 0; after the
            warmup a scheduler's lr scales the applied step as lr/lr_0 (default: 1e-3)
        betas (Tuple[float, float], optional): Adam's moment coefficients, as in [A] Sec. IV (default: (0.9, 0.999))
        eps (float, optional): Adam's denominator term (default: 1e-8)
        weight_decay (float, optional): decoupled weight decay, applied with the applied step (default: 0)
        c (float, optional): Armijo constant, [A] Sec. III-C ([F] uses 0.1) (default: 0.6)
        smooth (bool, optional): smooth both sides of the criterion, [A] Sec. II (default: True)
        beta_s (float, optional): the smoothing factor (default: 0.99)
        b (float, optional): growth eta <- eta * 2**(1/b) at the start of every step, [A] Eq. 2 (default: 500)
        backtrack (float, optional): eta <- backtrack * eta on a rejection (the authors' code) (default: 0.9)
        max_backtracks (int, optional): rejections per step, each a forward; 20 shrink eta 8x (default: 20)
        eta_min (float, optional): lower bound on eta (default: 1e-8)
        eta_max (float, optional): upper bound on eta (default: 1.0)
        warmup_steps (int, optional): steps of plain AdamW/SGD with group['lr'] before the search (default: 0)
        ema_warmup_steps (int, optional): the last this-many warmup steps evaluate the closure to warm D and G
            (default: 100)
        skip_stable (int, optional): after a search accepted at its first trial, this many steps take the grown
            eta without a trial (the authors' later SaLSA code skips searches once eta is stable) (default: 0)
        max_grad_norm (float, optional): clip the total gradient norm for the moments, 0 = off; f_a uses the
            raw gradient (default: 0)
        fa (str, optional): 'exact' (f_a = -g.d) or 'fd' ([A] Eq. 6, one extra forward) (default: 'exact')
        fd_eps (float, optional): lambda of fa='fd'; the authors' 5e-8 measures float32 rounding noise (default:
            1e-5)
        reduce_losses (bool, optional): all-reduce the decision inputs over the default process group when one
            is initialised (default: True)
        ramp (float, optional): the start by an LR range test (alsals/start.py): steps per doubling of eta, >= 1;
            0 = off, the paper (default: 0)
        ramp_sigma (float, optional): the search starts from the range test's edge eta / ramp_sigma (default: 2)
        ramp_hold (int, optional): steps at that eta before the search (the last ema_warmup_steps with a trial
            that warms D and G); -1 = ramp steps (default: 0)
        ramp_from (float, optional): the range test's first eta; 0 = lr/100 (default: 0)

    step(closure, loss=None): `closure()` returns the loss at the current parameters on the batch the gradient
    came from (called without autograd); `loss` is f(w) from the training forward. Without `loss`, f(w) comes
    from one extra call of the closure. In warmup the closure is only used near its end.
    """

    adam = True               # Adam moments and preconditioning (False: plain SGD direction)
    momentum_trial = True     # trial direction -m^/(sqrt(v^)+eps) (ALSALS) or the raw-gradient one ([F])

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, c: float = 0.6, smooth: bool = True, beta_s: float = 0.99,
                 b: float = 500.0, backtrack: float = 0.9, max_backtracks: int = 20, eta_min: float = 1e-8,
                 eta_max: float = 1.0, warmup_steps: int = 0, ema_warmup_steps: int = 100, skip_stable: int = 0,
                 max_grad_norm: float = 0.0, fa: str = 'exact', fd_eps: float = 1e-5, reduce_losses: bool = True,
                 ramp: float = 0.0, ramp_sigma: float = 2.0, ramp_hold: int = 0, ramp_from: float = 0.0):
        name = type(self).__name__
        _require(lr > 0, f"{name}: lr must be > 0, got {lr}")
        _require(0 <= betas[0] < 1 and 0 <= betas[1] < 1, f"{name}: betas must be in [0, 1), got {betas}")
        _require(eps >= 0, f"{name}: eps must be >= 0, got {eps}")
        _require(weight_decay >= 0, f"{name}: weight_decay must be >= 0, got {weight_decay}")
        _require(0 < c < 1, f"{name}: c must be in (0, 1), got {c}")
        _require(isinstance(smooth, bool), f"{name}: smooth must be True or False, got {smooth!r}")
        _require(0 <= beta_s < 1, f"{name}: beta_s must be in [0, 1), got {beta_s}")
        _require(b > 0, f"{name}: b must be > 0, got {b}")
        _require(0 < backtrack < 1, f"{name}: backtrack must be in (0, 1), got {backtrack}")
        _require(max_backtracks >= 0, f"{name}: max_backtracks must be >= 0, got {max_backtracks}")
        _require(0 <= eta_min < eta_max, f"{name}: need 0 <= eta_min < eta_max, got {eta_min}, {eta_max}")
        _require(warmup_steps >= 0, f"{name}: warmup_steps must be >= 0, got {warmup_steps}")
        _require(ema_warmup_steps >= 0, f"{name}: ema_warmup_steps must be >= 0, got {ema_warmup_steps}")
        _require(skip_stable >= 0, f"{name}: skip_stable must be >= 0, got {skip_stable}")
        _require(max_grad_norm >= 0, f"{name}: max_grad_norm must be >= 0, got {max_grad_norm}")
        _require(fa in ('exact', 'fd'), f"{name}: fa must be 'exact' or 'fd', got {fa!r}")
        _require(fd_eps > 0, f"{name}: fd_eps must be > 0, got {fd_eps}")
        _require(ramp == 0 or ramp >= 1, f"{name}: ramp must be 0 (off) or >= 1 (steps per doubling), got {ramp}")
        _require(ramp_sigma >= 1, f"{name}: ramp_sigma must be >= 1, got {ramp_sigma}")
        _require(ramp_hold >= -1, f"{name}: ramp_hold must be >= 0 (or -1: ramp steps), got {ramp_hold}")
        _require(ramp_from >= 0, f"{name}: ramp_from must be >= 0 (0: lr/100), got {ramp_from}")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, c=c, smooth=smooth, beta_s=beta_s,
                        b=b, backtrack=backtrack, max_backtracks=max_backtracks, eta_min=eta_min, eta_max=eta_max,
                        warmup_steps=warmup_steps, ema_warmup_steps=ema_warmup_steps, skip_stable=skip_stable,
                        max_grad_norm=max_grad_norm, fa=fa, fd_eps=fd_eps, reduce_losses=reduce_losses, ramp=ramp,
                        ramp_sigma=ramp_sigma, ramp_hold=ramp_hold, ramp_from=ramp_from)
        self.last_stats = {}   # the last step: eta, forwards, backtracks, accepted, exhausted, skipped, f_w, ...
        super().__init__(params, defaults)
        _require(fa == 'exact' or all(p.dtype in (torch.float32, torch.float64) for p in self._all_params()),
                 f"{name}: fa='fd' needs float32/float64 parameters (a finite difference of {fd_eps:g} vanishes in "
                 f"16-bit floats)")
        self.register_load_state_dict_pre_hook(upgrade_state_dict)   # checkpoints of earlier layouts: _compat.py

    def add_param_group(self, param_group: dict) -> None:
        """A new group joins the search (component 0 unless it names another); its parameters start their own
        moments and bias correction."""
        super().add_param_group(param_group)
        group, first = self.param_groups[-1], self.param_groups[0]
        for key in _SEARCH_KEYS:
            _require(group[key] == first[key], f"{type(self).__name__}: {key} must be the same in every param "
                     f"group (one search covers all of them), got {first[key]!r} and {group[key]!r}")
        group.setdefault('component', 0)
        group.setdefault('handoff_lr', None)   # lr_0, recorded at the group's first searched step
        peer = next((g for g in self.param_groups[:-1] if g['component'] == group['component']), None)
        for key, value in _COMPONENT_STATE.items():
            group.setdefault(key, peer[key] if peer else (float(group['lr']) if key == 'eta' else value))
        for key, value in _OPTIMIZER_STATE.items():
            group.setdefault(key, first[key] if group is not first else value)

    # ---- for training loops ------------------------------------------------------------------------------------
    @property
    def in_warmup(self) -> bool:
        """True while the next step() is a warmup (plain AdamW/SGD with group['lr']) step."""
        return self.param_groups[0]['step'] < self.param_groups[0]['warmup_steps']

    @property
    def in_start(self) -> bool:
        """True while the next step() belongs to the start: the warmup, or the range test and its hold."""
        return self.in_warmup or start.pending(self.param_groups[0])

    @property
    def eta(self) -> float:
        """The current step size (several components, as PLASLS's: their mean, as in [F] Fig. 7)."""
        etas = {g['component']: g['eta'] for g in self.param_groups}
        return sum(etas.values()) / len(etas)

    # ---- the step, as named phases ---------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], Any]] = None, loss: Any = None) -> Optional[float]:
        """One step; returns f(w) (None in warmup without loss or closure). See the class docstring."""
        first = self.param_groups[0]
        if all(group['lr'] == 0 for group in self.param_groups):
            # moves nothing: only the per-parameter state is created (torch.distributed.checkpoint initialises an
            # optimizer's state this way); the search and its counters are left as they are
            self._init_group()
            return None if loss is None else float(loss)
        warmup = first['step'] < first['warmup_steps']
        if not warmup and closure is None:
            raise RuntimeError(f"{type(self).__name__}: after warmup, step() needs closure= (the loss at the "
                               f"current parameters on the same batch, evaluated without autograd)")
        forwards = 0
        if loss is None and closure is not None and not warmup:
            loss, forwards = closure(), 1                        # torch.optim style: one extra no-grad forward
        grads = [p.grad for p in self._all_params() if p.grad is not None]
        if not grads:
            return None if loss is None else float(loss)
        self._sharded = any(_is_dtensor(g) for g in grads)
        stats = self.last_stats = dict(eta=self.eta, forwards=forwards, backtracks=0, accepted=True,
                                       exhausted=False, skipped=False, warmup=warmup, f_w=None, f_trial=None,
                                       f_a=None, searched=0)   # searched: the component's index (None: all)

        # 1. non-finite guard, one collective and one sync: f(w) and the gradient norm decide whether to step
        norms = torch.stack(torch._foreach_norm([_local(g) for g in grads]))
        norms = norms.float() if norms.element_size() < 4 else norms    # 16-bit gradients: norms in float32
        grad_norm = norms.square().sum() if self._sharded else torch.linalg.vector_norm(norms)
        f_w, grad_norm = self._reduce([math.nan if loss is None else loss, grad_norm], (False, True))
        grad_norm = math.sqrt(grad_norm) if self._sharded else grad_norm
        stats['f_w'] = None if loss is None else f_w
        if not math.isfinite(grad_norm) or (loss is not None and not math.isfinite(f_w)):
            stats.update(accepted=False, skipped=True)
            self._set_all(skipped=first['skipped'] + 1)
            return f_w
        clip_coef = min(1.0, first['max_grad_norm'] / (grad_norm + 1e-6)) if first['max_grad_norm'] > 0 else 1.0

        # 2. the direction: moments and directions per group
        self._set_all(step=first['step'] + 1)
        parts = self._init_group()
        for part in parts:
            self._directions(part, clip_coef)

        # 3. warmup: AdamW with group['lr'] (the training script's schedule)
        if warmup:
            self._warmup_step(parts, closure, f_w if loss is not None else None, stats)
            return stats['f_w']

        # 4. the hand-off records lr_0; the search (one component; PLASLS: one per step, round robin) and the move,
        # with the applied step a = eta * lr/lr_0
        for group in self.param_groups:
            if group['handoff_lr'] is None:
                group['handoff_lr'] = group['lr']
        self._search_components(parts, closure, f_w, stats)

        # 5. bookkeeping
        stats['eta'] = self.eta
        self._set_all(forwards=first['forwards'] + stats['forwards'],
                      backtracks=first['backtracks'] + stats['backtracks'],
                      exhaustions=first['exhaustions'] + int(stats['exhausted']))
        return f_w

    def _init_group(self) -> list:
        """Gather, once per step, every parameter that has a gradient with its state: one _Part per group."""
        parts = []
        for group in self.param_groups:
            part = _Part(group)
            for p in group['params']:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    self._init_state(p, state, group)
                part.params.append(_local(p))
                part.grads.append(_local(p.grad))
                part.states.append(state)
            if part.params:
                parts.append(part)
        return parts

    def _init_state(self, p: torch.Tensor, state: dict, group: dict) -> None:
        if self.adam:
            state['step'] = 0
            state['exp_avg'] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state['exp_avg_sq'] = torch.zeros_like(p, memory_format=torch.preserve_format)

    # ---- the direction -----------------------------------------------------------------------------------------
    def _directions(self, part: _Part, clip_coef: float) -> None:
        """The trial and final directions of one part (a hook: MuonSLS gives Muon's for its groups)."""
        _adam_directions(part, clip_coef, self.adam, self.momentum_trial)

    # ---- the warmup (the paper's start) --------------------------------------------------------------------------
    def _warmup_step(self, parts: list, closure, f_w, stats: dict) -> None:
        """AdamW (SGD) with group['lr']; in the last ema_warmup_steps steps one closure call warms D and G."""
        first = self.param_groups[0]
        for comp in _by_component(parts):                         # the search will start from the last lr
            self._set_component(_groups(comp), eta=float(comp[0].group['lr']))
            for part in comp:                                         # the trial moves each group by its lr
                part.trial_mult = part.group['lr'] / comp[0].group['lr']
        stats['eta'] = self.eta
        warm_ema = (first['smooth'] and closure is not None and f_w is not None
                    and first['step'] > first['warmup_steps'] - first['ema_warmup_steps'])
        if not warm_ema:
            for part in parts:
                _update_part(part, part.group['lr'])
            return
        f_a = self._fa(parts, closure, f_w, stats)
        for part in parts:
            _move(part, part.group['lr'], trial=True)
        f_t, f_a = self._reduce([closure(), f_a], (False, True))
        stats.update(forwards=stats['forwards'] + 1, f_trial=f_t, f_a=f_a)
        if math.isfinite(f_t):
            beta_s = first['beta_s']
            self._set_component(self.param_groups, D=beta_s * first['D'] + (1 - beta_s) * (f_w - f_t),
                                G=beta_s * first['G'] + (1 - beta_s) * f_a)
        for part in parts:
            _accept_part(part, part.group['lr'], part.group['lr'], self.momentum_trial)

    # ---- the search ----------------------------------------------------------------------------------------------
    def _search_components(self, parts: list, closure, f_w, stats: dict) -> None:
        """Search one component (round robin when there are several); the others step with their own eta."""
        comps = _by_component(parts)
        searched = self.param_groups[0]['cursor'] % len(comps)
        self._set_all(cursor=(searched + 1) % len(comps))
        stats['searched'] = searched
        for comp in comps:
            _multipliers(comp)
        self._search_or_skip(comps[searched], closure, f_w, stats)
        for k, comp in enumerate(comps):                           # [F]: the update rule after Eq. 7
            if k != searched:
                _update(comp, comp[0].group['eta'])

    def _search_or_skip(self, comp: list, closure, f_w, stats: dict) -> None:
        """The start while it lasts; then search the component, or, in the skip_stable steps after a first-trial
        acceptance, take the grown eta."""
        first, state = self.param_groups[0], comp[0].group
        # ---- the start (alsals/start.py): the range test, then a hold at its edge; None once it is over ----
        begun = start.step(self.param_groups, state['eta'], f_w)
        if begun is not None:
            eta, mode = begun
            stats['ramp_end'] = mode == 'edge'
            self._set_component(_groups(comp), eta=eta)
            if mode == 'warm':                                     # as a warmup's last steps: warm D and G
                return self._search(comp, eta, closure, f_w, stats, accept_any=True)
            return _update(comp, eta)
        eta = min(state['eta'] * 2.0 ** (1.0 / state['b']), state['eta_max'])          # [A] Eq. 2
        if first['skip_left'] > 0:
            self._set_all(skip_left=first['skip_left'] - 1)
            self._set_component(_groups(comp), eta=eta)
            _update(comp, eta)
        else:
            self._search(comp, eta, closure, f_w, stats)

    def _search(self, comp: list, eta_start: float, closure, f_w: float, stats: dict, accept_any=False) -> None:
        """Backtracking Armijo search on one component, in place (no copies). [A] Eq. 8-9. accept_any: every
        finite trial passes (the start's warming steps; the EMAs still follow the decrease)."""
        hp = comp[0].group
        beta_s, c, smooth = hp['beta_s'], hp['c'], hp['smooth']
        D, G = hp['D'], hp['G']
        f_a = self._fa(comp, closure, f_w, stats)
        if smooth and D < 0:
            # beta_s*D < 0: no eta passes the smoothed test (module docstring); restart the EMAs
            D = G = 0.0
            stats['ema_restart'] = True
        eta, moved = eta_start, 0.0
        while True:
            for part in comp:
                _move(part, (eta - moved) * part.trial_mult, trial=True)
            moved = eta
            if stats['f_a'] is None:                                   # first trial: fetch f_a with f_t
                f_t, f_a = self._reduce([closure(), f_a], (False, True))
                stats['f_a'] = f_a
                G_new = beta_s * G + (1 - beta_s) * f_a if smooth else f_a
                c_h = c if G_new > 0 else 1.0 / c                                      # [A] Eq. 8
            else:
                f_t, = self._reduce([closure()])
            stats['forwards'] += 1
            D_new = beta_s * D + (1 - beta_s) * (f_w - f_t) if smooth else f_w - f_t
            if math.isfinite(f_t) and (accept_any or D_new >= c_h * eta * G_new):
                break                                                                   # [A] Eq. 9
            if stats['backtracks'] >= hp['max_backtracks'] or eta <= hp['eta_min']:
                stats.update(accepted=False, exhausted=True)
                break
            eta = max(eta * hp['backtrack'], hp['eta_min'])
            stats['backtracks'] += 1
        stats['f_trial'] = f_t
        if stats['exhausted']:
            for part in comp:
                _move(part, -moved * part.trial_mult, trial=True)     # back to w: no update
            # the smallest eta still failed at a finite loss: it is too large, keep cutting (from a first guess far
            # too high); after non-finite trials cut once only (a closure that fails whatever eta must not drive
            # eta to eta_min)
            keep_cut = math.isfinite(f_t) or not hp['exhausted']
            self._set_component(_groups(comp), eta=eta if keep_cut else eta_start,
                                exhausted=True, **(dict(D=0.0, G=0.0) if smooth else dict(D=D, G=G)))
            self._set_all(skip_left=0)
            return
        self._set_component(_groups(comp), eta=eta, D=D_new, G=G_new, exhausted=False)
        for part in comp:
            _accept_part(part, eta * part.trial_mult, eta * part.applied_mult, self.momentum_trial)
        self._set_all(skip_left=hp['skip_stable'] if stats['backtracks'] == 0 else 0)

    # ---- the slope and the reductions ------------------------------------------------------------------------
    def _fa(self, comp: list, closure, f_w: float, stats: dict):
        """The slope along d_trial: exact (-g.d, no forward) or [A] Eq. 6's finite difference (fa='fd')."""
        if self.param_groups[0]['fa'] == 'exact':
            return self._slope(comp)
        return _fd_slope(self, comp, closure, f_w, stats)

    def _slope(self, comp: list) -> torch.Tensor:
        return _exact_slope(comp)

    def _reduce(self, values: list, partial: tuple = ()) -> list:
        return _reduce(self.param_groups, values, partial, self._sharded)

    # ---- the search state in the param groups: optimizer-wide scalars in every group; a component's in every
    # group of the component(s) of `groups`, also those without grads
    def _set_all(self, **values) -> None:
        self._set_component(self.param_groups, **values)

    def _set_component(self, groups: list, **values) -> None:
        components = {g['component'] for g in groups}
        for group in (g for g in self.param_groups if g['component'] in components):
            group.update(values)

    def _all_params(self) -> list:
        return [p for group in self.param_groups for p in group['params']]


def _reduce(groups: list, values: list, partial: tuple = (), sharded: bool = False) -> list:
    """The mean over ranks of a few scalars (tensors or floats), in one collective and one host sync. Under FSDP2
    (sharded) the entries marked partial are this rank's part of a sum over shards: those are summed."""
    device = _local(groups[0]['params'][0]).device
    t = torch.stack([v.detach().to(device, torch.float64).reshape(()) if torch.is_tensor(v)       # a python float
                     else torch.full((), v, dtype=torch.float64, device=device) for v in values])  # is a fill
    if not (groups[0]['reduce_losses'] and dist.is_available() and dist.is_initialized()
            and dist.get_world_size() > 1):
        return t.tolist()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    n = dist.get_world_size()
    return [v if sharded and i < len(partial) and partial[i] else v / n for i, v in enumerate(t.tolist())]


# ---- the directions and the slope --------------------------------------------------------------------------
def _adam_directions(part: _Part, clip_coef: float, adam: bool, momentum_trial: bool) -> None:
    """Adam's moments on the clipped gradient (as clip_grad_norm_ + AdamW), then the directions:
    d_final = -m^/(sqrt(v^)+eps) = scale * m / denom  [A] Eq. 3, with scale = -sqrt(1-beta2^t)/(1-beta1^t),
    denom = sqrt(v) + eps*sqrt(1-beta2^t) (torch.optim.AdamW's rewrite); SGD: d = -coef * g."""
    part.clip_coef = clip_coef
    if not adam:
        part.final_num = part.trial_num = part.grads
        part.final_scale = part.trial_scale = [-clip_coef] * len(part.grads)
        return
    beta1, beta2 = part.group['betas']
    exp_avgs = [_local(s['exp_avg']) for s in part.states]
    exp_avg_sqs = [_local(s['exp_avg_sq']) for s in part.states]
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


def _exact_slope(comp: list) -> torch.Tensor:
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


def _multipliers(comp: list) -> None:
    """Per group of a component: the trial moves eta * lr_0(k)/lr_0(ref) along d_k; the applied step is
    eta * lr(k)/lr_0(ref), so a scheduler's lr scales it (ref: the component's first group)."""
    lr0 = comp[0].group['handoff_lr']
    for part in comp:
        part.trial_mult = part.group['handoff_lr'] / lr0
        part.applied_mult = part.group['lr'] / lr0


# ---- the moves: each one pass over a part's tensors ------------------------------------------------------------
def _move(part: _Part, step: float, trial: bool) -> None:
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


def _decay(part: _Part, applied: float) -> None:
    """From w + a*d to the AdamW-form update w*(1 - a*wd) + a*d = p*(1 - a*wd) + a^2*wd*d."""
    wd = part.group['weight_decay']
    if wd != 0.0 and applied != 0.0:
        torch._foreach_mul_(part.params, 1.0 - applied * wd)
        _move(part, applied * applied * wd, trial=False)


def _update_part(part: _Part, applied: float) -> None:
    """The plain update w <- w*(1 - a*wd) + a*d_final (no search)."""
    _move(part, applied, trial=False)
    _decay(part, applied)


def _update(comp: list, eta: float) -> None:
    for part in comp:
        _update_part(part, eta * part.applied_mult)


def _accept_part(part: _Part, tried: float, applied: float, momentum_trial: bool) -> None:
    """From the accepted trial point w + tried*d_trial to the update w*(1 - a*wd) + a*d_final, a = applied."""
    if not momentum_trial:                                             # [F]: the update uses the momentum
        _move(part, -tried, trial=True)
        _move(part, applied, trial=False)
    elif applied != tried:                                             # a scheduler's lr: d_final == d_trial here
        _move(part, applied - tried, trial=False)
    _decay(part, applied)


def _fd_slope(opt: ALSALS, comp: list, closure, f_w: float, stats: dict) -> float:
    """fa='fd': [A] Eq. 6's finite difference (f(w) - f(w + lambda*d))/lambda, one extra forward."""
    lam = opt.param_groups[0]['fd_eps']
    for part in comp:
        _move(part, lam * part.trial_mult, trial=True)
    f_lambda, = opt._reduce([closure()])
    for part in comp:
        _move(part, -lam * part.trial_mult, trial=True)
    stats['forwards'] += 1
    return (f_w - f_lambda) / lam


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _groups(comp: list) -> list:
    return [part.group for part in comp]


def _by_component(parts: list) -> list:
    """The parts grouped by group['component'], components in increasing order of their id."""
    comps = {}
    for part in parts:
        comps.setdefault(part.group['component'], []).append(part)
    return [comps[k] for k in sorted(comps)]


class AdamSLS(ALSALS):
    """ADAM+SLS ([F] Eq. 5, [A] Sec. II-B): trial direction Adam without momentum -g/(sqrt(v^)+eps), slope
    sum g^2/(sqrt(v^)+eps), c = 0.1, no smoothing by default; the update uses the momentum direction with the
    accepted eta. This is the variant whose eta collapses on GPT-2 ([A] Fig. 1). Arguments as ALSALS."""
    momentum_trial = False

    def __init__(self, params: Params, c: float = 0.1, smooth: bool = False, **kwargs):
        super().__init__(params, c=c, smooth=smooth, **kwargs)


class SGDSLS(ALSALS):
    """SGD+SLS (Vaswani et al.; [F] Eq. 1-2): d = -g, slope ||g||^2, c = 0.1, no smoothing by default.
    betas/eps are accepted and ignored. Arguments as ALSALS."""
    adam = False

    def __init__(self, params: Params, c: float = 0.1, smooth: bool = False, **kwargs):
        super().__init__(params, c=c, smooth=smooth, **kwargs)


class PLASLS(AdamSLS):
    """PLASLS ([F] Sec. III-C): ADAM+SLS with one step size per component of the network.

    Args:
        params (iterable): parameters or param groups, as for ALSALS.
        components (list of lists of parameters): a partition of the parameters (model.GPT.param_components(L)
            gives the split used for GPT, L = 10 as in [F]). Each given group is split by component: the
            optimizer's groups carry group['component'], and each component's eta, D and G live in its groups.
        eta_min (float, optional): 1e-14 here, so that a component can reach merge_threshold (default: 1e-14)
        merge_threshold (float, optional): when the smallest eta is at or below it, that component merges with
            the one of second-smallest eta, [F] Fig. 2 and Algorithm 1 (default: 1e-12)
        **kwargs: as ALSALS (c = 0.1 and no smoothing by default, as AdamSLS).

    The first searched step searches the whole network; afterwards each step searches one component in round
    robin while the others step with their own eta; merged components take their mean eta ([F] Algorithm 1).
    """

    def __init__(self, params: Params, components: Optional[list] = None, eta_min: float = 1e-14,
                 merge_threshold: float = 1e-12, **kwargs):
        _require(components is not None, "PLASLS: components= (a list of lists of parameters) is required")
        _require(merge_threshold >= 0, f"PLASLS: merge_threshold must be >= 0, got {merge_threshold}")
        groups = list(params)
        groups = [dict(g, params=list(g['params'])) for g in groups] if groups and isinstance(groups[0], dict) \
            else [{'params': groups}]
        flat = [p for g in groups for p in g['params']]
        owner = {}
        for k, comp in enumerate(components):
            for p in comp:
                owner.setdefault(id(p), []).append(k)
        _require(sorted(map(id, flat)) == sorted(owner) and all(len(v) == 1 for v in owner.values()),
                 "PLASLS: components must partition the parameters exactly once")
        split = [dict(g, params=[p for p in g['params'] if owner[id(p)] == [k]], component=k)
                 for k in range(len(components)) for g in groups]
        self._building = True
        super().__init__([g for g in split if g['params']], eta_min=eta_min, **kwargs)
        self.defaults['merge_threshold'] = merge_threshold
        for group in self.param_groups:
            group['merge_threshold'] = merge_threshold
        self._building = False

    def add_param_group(self, param_group: dict) -> None:
        _require(getattr(self, '_building', False), "PLASLS: add_param_group is not supported (the components "
                 "partition the parameters)")
        super().add_param_group(param_group)

    def _search_components(self, parts: list, closure, f_w, stats: dict) -> None:
        first = self.param_groups[0]
        if first['step'] == first['warmup_steps'] + 1:             # the first search covers the whole network
            _multipliers(parts)
            self._search_or_skip(parts, closure, f_w, stats)
            stats['searched'] = None
        else:
            super()._search_components(parts, closure, f_w, stats)
            self._merge_smallest()

    def _merge_smallest(self) -> bool:
        """[F] Algorithm 1: when the smallest eta <= merge_threshold, that component merges with the one of
        second-smallest eta; the merged one (the lower id) takes their mean eta and mean EMAs."""
        comps = {}
        for group in self.param_groups:
            comps.setdefault(group['component'], group)
        if len(comps) < 2:
            return False
        small, second = sorted(comps, key=lambda k: comps[k]['eta'])[:2]
        if comps[small]['eta'] > self.param_groups[0]['merge_threshold']:
            return False
        a, b = comps[small], comps[second]
        merged = dict(eta=(a['eta'] + b['eta']) / 2, D=(a['D'] + b['D']) / 2, G=(a['G'] + b['G']) / 2,
                      exhausted=False)
        keep, gone = min(small, second), max(small, second)
        for group in self.param_groups:
            if group['component'] in (keep, gone):
                group.update(merged, component=keep)
        return True


OPTIMIZERS = {'alsals': ALSALS, 'adamsls': AdamSLS, 'sgdsls': SGDSLS, 'plasls': PLASLS}
