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

    variant  d_trial              d_final              f_a = -g.d_trial        c    smoothing
    ALSALS   -m^/(sqrt(v^)+eps)    = d_trial            g.m^/(sqrt(v^)+eps)    0.6  on   [A] Eq. 3, 6-9
    AdamSLS  -g/(sqrt(v^)+eps)     -m^/(sqrt(v^)+eps)   sum g^2/(sqrt(v^)+eps) 0.1  off  [F] Eq. 5
    SGDSLS   -g                    = d_trial            ||g||^2                0.1  off  [F] Eq. 1-2
    PLASLS   as AdamSLS, one eta per network component, searched round robin   0.1  off  [F] Sec. III-C

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
  * Clipping (max_grad_norm) is done here: the clipped gradient feeds the moments (as clip_grad_norm_ +
    AdamW), but f_a uses the unclipped gradient, because the slope of the loss along d is -grad f(w).d.
  * A non-finite f(w) or gradient norm skips the step: neither moments nor parameters change.
  * The start when ramp > 0 (not in the papers): no AdamW warmup; an LR range test from lr/100 (or ramp_from)
    finds the edge where the training loss rises; the search starts from its eta / ramp_sigma
    (alsals/start.py).
  * The constants: beta_s = 0.99 is the smoothing the authors' code hard-codes (its constructor's beta_s is
    unused); at most max_backtracks = 20 rejections a step (x0.9 each, eta shrinks 8x; the authors' code
    allows 100), so that one step costs at most 21 forwards; eta_max = 1 caps the growth (the authors' has no
    cap), a step far beyond any stable Adam lr.
  * skip_stable (off by default): after a search accepted at its first trial, a fixed number of steps take the
    grown eta without a trial, so that the trial's cost is paid once in skip_stable + 1 steps. The authors'
    later SaLSA code skips too, but adaptively (from a fast/slow ratio of eta's EMAs, at most 10 steps).
  * lr = 0 in every group makes step() a no-op that only creates the per-parameter state:
    torch.distributed.checkpoint initialises a fresh optimizer's state that way.
  * DDP: every decision reads only all-reduced numbers, each decision's inputs in one collective: [f(w),
    gradient norm], [f_trial, f_a] (first trial), [f_trial] (each further trial). FSDP2 (DTensor parameters,
    one mesh over all ranks): the same collectives, with the norm and the slope summed over the shards; the
    moves act on each rank's local shard.

The code: this class gathers a step's tensors (_init_group) and runs its phases (step); the arithmetic, the
Armijo search among it, is alsals/_functional.py's; the variants are alsals/variants.py's.

Usage (the fast path: f(w) from the training forward; see README for a complete loop):
    opt = ALSALS(model.parameters(), lr=6e-4, warmup_steps=2000)
    loss = loss_fn(model(x), y); loss.backward()
    opt.step(closure=lambda: loss_fn(model(x), y), loss=loss.detach())   # closure: same data, no grad needed
    opt.step(closure)    # torch.optim style: f(w) from one extra no-grad call of the closure
"""

import math
from typing import Any, Callable, Iterable, Optional, Union

import torch

from . import start
from ._functional import (Part, accept, adam_directions, armijo, by_component, exact_slope, is_dtensor, local,
                          move, multipliers, reduce, require, update, write)

Params = Union[Iterable[torch.Tensor], Iterable[dict]]

# the settings of the search itself: one search over all parameters, so they must agree in every group
SEARCH_KEYS = ('c', 'smooth', 'beta_s', 'b', 'backtrack', 'max_backtracks', 'eta_min', 'eta_max',
               'warmup_steps', 'ema_warmup_steps', 'skip_stable', 'max_grad_norm', 'fa', 'fd_eps',
               'reduce_losses', 'ramp', 'ramp_sigma', 'ramp_hold', 'ramp_from', 'search')
# the search's scalars in every param group: per component (the groups sharing group['component']) ...
COMPONENT_STATE = dict(eta=None, D=0.0, G=0.0, exhausted=False)
# ... and for the whole optimizer (every group holds the same value), the start's (alsals/start.py) among them
OPTIMIZER_STATE = dict(step=0, cursor=0, skip_left=0, forwards=0, backtracks=0, exhaustions=0, skipped=0,
                       **start.STATE)


class ALSALS(torch.optim.Optimizer):
    """ALSALS ([A] Sec. III): Armijo line search on the Adam-with-momentum direction d = -m^/(sqrt(v^)+eps),
    f_a = -grad f(w).d, c_h from [A] Eq. 8, both sides of [A] Eq. 9 smoothed. The module docstring gives the
    algorithm; the variants (AdamSLS, SGDSLS, PLASLS) are thin subclasses.

    Args:
        params (iterable): parameters or param groups (a group may set lr, betas, eps, weight_decay).
        lr (float, optional): the warmup learning rate, and the first eta when warmup_steps is 0; after the
            warmup a scheduler's lr scales the applied step as lr/lr_0 (default: 1e-3)
        betas (Tuple[float, float], optional): Adam's moment coefficients, as in [A] Sec. IV (default: (0.9,
            0.999))
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
        skip_stable (int, optional): after a search accepted at its first trial, this many steps take the
            grown eta without a trial (a fixed skip; the module docstring) (default: 0)
        max_grad_norm (float, optional): clip the total gradient norm for the moments, 0 = off; f_a uses the
            raw gradient (default: 0)
        fa (str, optional): 'exact' (f_a = -g.d) or 'fd' ([A] Eq. 6, one extra forward) (default: 'exact')
        fd_eps (float, optional): lambda of fa='fd'; the authors' 5e-8 measures float32 rounding noise
            (default: 1e-5)
        reduce_losses (bool, optional): all-reduce the decision inputs over the default process group when one
            is initialised (default: True)
        ramp (float, optional): the start by an LR range test (alsals/start.py): steps per doubling of eta, >=
            1; 0 = off, the paper (default: 0)
        ramp_sigma (float, optional): the search starts from the range test's edge eta / ramp_sigma (default:
            2)
        ramp_hold (int, optional): steps at that eta before the search (the last ema_warmup_steps with a trial
            that warms D and G); -1 = ramp steps (default: 0)
        ramp_from (float, optional): the range test's first eta; 0 = lr/100 (default: 0)
        search (bool, optional): False: no trial after the start (the control: the start's eta, plain steps)
            (default: True)

    step(closure, loss=None): `closure()` returns the loss at the current parameters on the batch the gradient
    came from (called without autograd); `loss` is f(w) from the training forward. Without `loss`, f(w) comes
    from one extra call of the closure. In warmup the closure is only used near its end.
    """

    adam = True               # Adam moments and preconditioning (False: plain SGD direction)
    momentum_trial = True     # trial direction -m^/(sqrt(v^)+eps) (ALSALS) or the raw-gradient one ([F])

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, c: float = 0.6, smooth: bool = True, beta_s: float = 0.99,
                 b: float = 500.0, backtrack: float = 0.9, max_backtracks: int = 20, eta_min: float = 1e-8,
                 eta_max: float = 1.0, warmup_steps: int = 0, ema_warmup_steps: int = 100,
                 skip_stable: int = 0, max_grad_norm: float = 0.0, fa: str = 'exact', fd_eps: float = 1e-5,
                 reduce_losses: bool = True, ramp: float = 0.0, ramp_sigma: float = 2.0, ramp_hold: int = 0,
                 ramp_from: float = 0.0, search: bool = True):
        name = type(self).__name__
        require(lr > 0, f"{name}: lr must be > 0, got {lr}")
        require(0 <= betas[0] < 1 and 0 <= betas[1] < 1, f"{name}: betas must be in [0, 1), got {betas}")
        require(eps >= 0, f"{name}: eps must be >= 0, got {eps}")
        require(weight_decay >= 0, f"{name}: weight_decay must be >= 0, got {weight_decay}")
        require(0 < c < 1, f"{name}: c must be in (0, 1), got {c}")
        require(isinstance(smooth, bool), f"{name}: smooth must be True or False, got {smooth!r}")
        require(0 <= beta_s < 1, f"{name}: beta_s must be in [0, 1), got {beta_s}")
        require(b > 0, f"{name}: b must be > 0, got {b}")
        require(0 < backtrack < 1, f"{name}: backtrack must be in (0, 1), got {backtrack}")
        require(max_backtracks >= 0, f"{name}: max_backtracks must be >= 0, got {max_backtracks}")
        require(0 <= eta_min < eta_max, f"{name}: need 0 <= eta_min < eta_max, got {eta_min}, {eta_max}")
        require(warmup_steps >= 0, f"{name}: warmup_steps must be >= 0, got {warmup_steps}")
        require(ema_warmup_steps >= 0, f"{name}: ema_warmup_steps must be >= 0, got {ema_warmup_steps}")
        require(skip_stable >= 0, f"{name}: skip_stable must be >= 0, got {skip_stable}")
        require(max_grad_norm >= 0, f"{name}: max_grad_norm must be >= 0, got {max_grad_norm}")
        require(fa in ('exact', 'fd'), f"{name}: fa must be 'exact' or 'fd', got {fa!r}")
        require(fd_eps > 0, f"{name}: fd_eps must be > 0, got {fd_eps}")
        require(ramp == 0 or ramp >= 1,
                f"{name}: ramp must be 0 (off) or >= 1 (steps per doubling), got {ramp}")
        require(ramp_sigma >= 1, f"{name}: ramp_sigma must be >= 1, got {ramp_sigma}")
        require(ramp_hold >= -1, f"{name}: ramp_hold must be >= 0 (or -1: ramp steps), got {ramp_hold}")
        require(ramp_from >= 0, f"{name}: ramp_from must be >= 0 (0: lr/100), got {ramp_from}")
        require(isinstance(search, bool), f"{name}: search must be True or False, got {search!r}")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, c=c, smooth=smooth,
                        beta_s=beta_s, b=b, backtrack=backtrack, max_backtracks=max_backtracks,
                        eta_min=eta_min, eta_max=eta_max, warmup_steps=warmup_steps,
                        ema_warmup_steps=ema_warmup_steps, skip_stable=skip_stable,
                        max_grad_norm=max_grad_norm, fa=fa, fd_eps=fd_eps, reduce_losses=reduce_losses,
                        ramp=ramp, ramp_sigma=ramp_sigma, ramp_hold=ramp_hold, ramp_from=ramp_from,
                        search=search)
        # the last step: eta, forwards, backtracks, accepted, exhausted, skipped, f_w, ...
        self.last_stats = {}
        super().__init__(params, defaults)
        full = all(p.dtype in (torch.float32, torch.float64) for g in self.param_groups for p in g['params'])
        require(fa == 'exact' or full, f"{name}: fa='fd' needs float32/float64 parameters (a finite "
                f"difference of {fd_eps:g} vanishes in 16-bit floats)")
        # settings a checkpoint predates: defaults
        self.register_load_state_dict_pre_hook(_complete_state_dict)

    def add_param_group(self, param_group: dict) -> None:
        """A new group joins the search (component 0 unless it names another); its parameters start their own
        moments and bias correction."""
        super().add_param_group(param_group)
        group, first = self.param_groups[-1], self.param_groups[0]
        for key in SEARCH_KEYS:
            require(group[key] == first[key], f"{type(self).__name__}: {key} must be the same in every param "
                    f"group (one search covers all of them), got {first[key]!r} and {group[key]!r}")
        group.setdefault('component', 0)
        group.setdefault('handoff_lr', None)   # lr_0, recorded at the group's first searched step
        peer = next((g for g in self.param_groups[:-1] if g['component'] == group['component']), None)
        for key, value in COMPONENT_STATE.items():
            group.setdefault(key, peer[key] if peer else (float(group['lr']) if key == 'eta' else value))
        for key, value in OPTIMIZER_STATE.items():
            group.setdefault(key, first[key] if group is not first else value)

    # ---- for training loops --------------------------------------------------------------------------------
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

    # ---- the variants' hooks -------------------------------------------------------------------------------
    def _init_state(self, p: torch.Tensor, state: dict, group: dict) -> None:
        """A parameter's state at its first step (MuonSLS: Muon's momentum buffer for its matrices)."""
        if self.adam:
            state['step'] = 0
            state['exp_avg'] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state['exp_avg_sq'] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _directions(self, part: Part, clip_coef: float) -> None:
        """The trial and final directions of one part (MuonSLS: Muon's for its matrices)."""
        adam_directions(part, clip_coef, self.adam, self.momentum_trial)

    def _search_whole(self) -> bool:
        """Whether this step searches all components as one (PLASLS's first search)."""
        return False

    def _after_step(self) -> None:
        """After a step that searched one component (PLASLS: the merge of components, [F] Algorithm 1)."""

    # ---- the step ------------------------------------------------------------------------------------------
    def _init_group(self, clip_coef: Optional[float] = None) -> list:
        """Gather, once per step, every parameter that has a gradient with its state: one Part per group; with
        clip_coef, the step's directions too."""
        parts = []
        for group in self.param_groups:
            part = Part(group)
            for p in group['params']:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    self._init_state(p, state, group)
                part.params.append(local(p))
                part.grads.append(local(p.grad))
                part.states.append(state)
            if part.params:
                if clip_coef is not None:
                    self._directions(part, clip_coef)
                parts.append(part)
        return parts

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], Any]] = None, loss: Any = None) -> Optional[float]:
        """One step; returns f(w) (None in warmup without loss or closure). See the class docstring."""
        groups, first = self.param_groups, self.param_groups[0]
        if all(group['lr'] == 0 for group in groups):
            # moves nothing: only the per-parameter state is created (torch.distributed.checkpoint initialises
            # an optimizer's state this way); the search and its counters are left as they are
            self._init_group()
            return None if loss is None else float(loss)
        warmup = first['step'] < first['warmup_steps']
        if not warmup and closure is None:
            raise RuntimeError(f"{type(self).__name__}: after warmup, step() needs closure= (the loss at the "
                               f"current parameters on the same batch, evaluated without autograd)")
        forwards = 0
        if loss is None and closure is not None and not warmup:
            # torch.optim style: one extra no-grad forward
            loss, forwards = closure(), 1
        grads = [p.grad for group in groups for p in group['params'] if p.grad is not None]
        if not grads:
            return None if loss is None else float(loss)
        sharded = any(is_dtensor(g) for g in grads)
        stats = self.last_stats = dict(eta=self.eta, forwards=forwards, backtracks=0, accepted=True,
                                       exhausted=False, skipped=False, warmup=warmup, f_w=None, f_trial=None,
                                       f_a=None, searched=0)   # searched: the component's index (None: all)

        # 1. non-finite guard, one collective and one sync: f(w) and the gradient norm decide whether to step
        norms = torch.stack(torch._foreach_norm([local(g) for g in grads]))
        norms = norms.float() if norms.element_size() < 4 else norms    # 16-bit gradients: norms in float32
        grad_norm = norms.square().sum() if sharded else torch.linalg.vector_norm(norms)
        f_w, grad_norm = reduce(groups, [math.nan if loss is None else loss, grad_norm], (False, True),
                                sharded)
        grad_norm = math.sqrt(grad_norm) if sharded else grad_norm
        stats['f_w'] = None if loss is None else f_w
        if not math.isfinite(grad_norm) or (loss is not None and not math.isfinite(f_w)):
            stats.update(accepted=False, skipped=True)
            write(groups, groups, skipped=first['skipped'] + 1)
            return f_w
        clip_coef = min(1.0,
                        first['max_grad_norm'] / (grad_norm + 1e-6)) if first['max_grad_norm'] > 0 else 1.0

        # 2. the direction: moments and directions per group
        write(groups, groups, step=first['step'] + 1)
        parts = self._init_group(clip_coef)

        def slope(comp):
            """Slope along d_trial: exact (-g.d, no forward) or [A] Eq. 6's finite difference (fa='fd')."""
            if first['fa'] == 'exact':
                return exact_slope(comp)
            lam = first['fd_eps']
            for part in comp:
                move(part, lam * part.trial_mult, trial=True)
            f_lambda, = reduce(groups, [closure()], (), sharded)
            for part in comp:
                move(part, -lam * part.trial_mult, trial=True)
            stats['forwards'] += 1
            return (f_w - f_lambda) / lam

        def search(comp, eta, accept_any=False):
            """[A] Eq. 8-9 on one component, in place (no copies): the parameters move to each trial point and
            stay at the accepted one, or return to w; the outcome is written into the component's groups."""
            hp, moved, f_a = comp[0].group, [0.0], slope(comp)

            def trial(eta_t):
                for part in comp:
                    move(part, (eta_t - moved[0]) * part.trial_mult, trial=True)
                moved[0] = eta_t
                stats['forwards'] += 1
                if stats['f_a'] is None:                               # first trial: fetch f_a with f_t
                    f_t, stats['f_a'] = reduce(groups, [closure(), f_a], (False, True), sharded)
                    return f_t, stats['f_a']
                return reduce(groups, [closure()], (), sharded)[0], stats['f_a']

            s = armijo(trial, f_w, eta, hp['D'], hp['G'], hp['c'], hp['beta_s'], hp['smooth'],
                       hp['backtrack'], hp['max_backtracks'], hp['eta_min'], accept_any)
            stats.update(backtracks=s.backtracks, f_trial=s.f_trial, accepted=s.accepted,
                         exhausted=not s.accepted)
            if s.ema_restart:
                stats['ema_restart'] = True
            if not s.accepted:
                for part in comp:
                    move(part, -moved[0] * part.trial_mult, trial=True)     # back to w: no update
                # the smallest eta still failed at a finite loss: it is too large, keep cutting (from a first
                # guess far too high); after non-finite trials cut once only (a closure that fails whatever
                # eta must not drive eta to eta_min)
                keep_cut = math.isfinite(s.f_trial) or not hp['exhausted']
                write(comp_groups(comp), groups, eta=s.eta if keep_cut else eta, exhausted=True,
                      **(dict(D=0.0, G=0.0) if hp['smooth'] else dict(D=s.D, G=s.G)))
                write(groups, groups, skip_left=0)
                return
            write(comp_groups(comp), groups, eta=s.eta, D=s.D, G=s.G, exhausted=False)
            for part in comp:
                accept(part, s.eta * part.trial_mult, s.eta * part.applied_mult, self.momentum_trial)
            write(groups, groups, skip_left=hp['skip_stable'] if s.backtracks == 0 else 0)

        # 3. warmup: AdamW (SGD) with group['lr'] (the training script's schedule); in its last
        # ema_warmup_steps steps one closure call warms D and G
        if warmup:
            for comp in by_component(parts):                         # the search will start from the last lr
                write(comp_groups(comp), groups, eta=float(comp[0].group['lr']))
                for part in comp:                                     # the trial moves each group by its lr
                    part.trial_mult = part.group['lr'] / comp[0].group['lr']
            stats['eta'] = self.eta
            if not (first['smooth'] and closure is not None and loss is not None
                    and first['step'] > first['warmup_steps'] - first['ema_warmup_steps']):
                update(parts, 0.0, applied_mult=False)
                return stats['f_w']
            f_a = slope(parts)
            for part in parts:
                move(part, part.group['lr'], trial=True)
            f_t, f_a = reduce(groups, [closure(), f_a], (False, True), sharded)
            stats.update(forwards=stats['forwards'] + 1, f_trial=f_t, f_a=f_a)
            if math.isfinite(f_t):
                beta_s = first['beta_s']
                write(groups, groups, D=beta_s * first['D'] + (1 - beta_s) * (f_w - f_t),
                      G=beta_s * first['G'] + (1 - beta_s) * f_a)
            for part in parts:
                accept(part, part.group['lr'], part.group['lr'], self.momentum_trial)
            return stats['f_w']

        # 4. the hand-off records lr_0; one component is searched (round robin), the others step with their
        # own eta, with the applied step a = eta * lr/lr_0 ([F]: the update rule after Eq. 7)
        for group in groups:
            if group['handoff_lr'] is None:
                group['handoff_lr'] = group['lr']
        whole = self._search_whole()
        comps = [parts] if whole else by_component(parts)
        searched = 0 if whole else first['cursor'] % len(comps)
        if not whole:
            write(groups, groups, cursor=(searched + 1) % len(comps))
        stats['searched'] = None if whole else searched
        for comp in comps:
            multipliers(comp)
        comp, state = comps[searched], comps[searched][0].group
        # the start (alsals/start.py) while it lasts
        begun = start.step(groups, state['eta'], f_w)
        if begun is not None:
            eta, mode = begun
            stats['ramp_end'] = mode == 'edge'
            write(comp_groups(comp), groups, eta=eta)
            # as a warmup's last steps: warm D and G
            if mode == 'warm' and first['search']:
                search(comp, eta, accept_any=True)
            else:
                update(comp, eta)
        else:
            eta = min(state['eta'] * 2.0 ** (1.0 / state['b']), state['eta_max'])      # [A] Eq. 2
            if not first['search']:                                    # the control: no trial
                write(comp_groups(comp), groups, eta=eta)
                update(comp, eta)
            elif first['skip_left'] > 0:                               # skip_stable: the grown eta, no trial
                write(groups, groups, skip_left=first['skip_left'] - 1)
                write(comp_groups(comp), groups, eta=eta)
                update(comp, eta)
            else:
                search(comp, eta)
        for k, other in enumerate(comps):                             # [F]: the update rule after Eq. 7
            if k != searched:
                update(other, other[0].group['eta'])
        if not whole:
            self._after_step()

        # 5. bookkeeping
        stats['eta'] = self.eta
        write(groups, groups, forwards=first['forwards'] + stats['forwards'],
              backtracks=first['backtracks'] + stats['backtracks'],
              exhaustions=first['exhaustions'] + int(stats['exhausted']))
        return f_w

    def _after_step(self) -> None:
        """After a searched step (PLASLS: the merge of components)."""


def comp_groups(comp: list) -> list:
    return [part.group for part in comp]


def _complete_state_dict(optimizer, state_dict: dict) -> dict:
    """load_state_dict's pre-hook: settings and scalars that a checkpoint predates take this optimizer's
    defaults (a run saved after its warmup has no start left to make), and the state is the optimizer's own
    copy."""
    require(all('eta' in g for g in state_dict['param_groups']),
            f"{type(optimizer).__name__}: state_dict has no line-search state (was it saved by another "
            "optimizer?)")
    groups = []
    for g in state_dict['param_groups']:
        missing = {k: v for k, v in {**optimizer.defaults, **OPTIMIZER_STATE}.items() if k not in g}
        if 'ramping' in missing and g['step'] > g['warmup_steps']:
            missing['ramping'] = False
        groups.append(dict(g, **missing))
    # copies of the moments: torch's own load keeps a tensor that already has the right dtype and device, so
    # the source optimizer stepping on would move the loaded one's (DTensors under FSDP2 are DCP's fresh
    # shards)
    state = {k: {n: v.clone() if torch.is_tensor(v) and not is_dtensor(v) else v for n, v in s.items()}
             for k, s in state_dict['state'].items()}
    return dict(state_dict, param_groups=groups, state=state)
