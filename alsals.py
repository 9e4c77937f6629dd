"""
ALSALS and the stochastic line-search (SLS) family as torch.optim optimizers.

Papers:
  [A] P. Kenneweg, T. Kenneweg, B. Hammer, "Improving Line Search Methods for Large Scale Neural Network
      Training", 2024, arXiv:2403.18519 (ALSALS).
  [F] P. Kenneweg, L. Galli, T. Kenneweg, B. Hammer, "Faster Convergence for Transformer Fine-tuning with
      Line Search Methods", 2023 (SGD+SLS, ADAM+SLS, PLASLS).

One Armijo core (LineSearchOptimizer) is shared by every variant. Each step after warmup:

    eta   <- min(eta * 2**(1/b), eta_max)                       growth between steps    [A] Eq. 2
    f_a    = -grad f(w) . d_trial                               slope along the trial direction
    loop:  f_t = f(w + eta * d_trial)                           one no-grad forward (the closure)
           D'  = beta_s*D + (1-beta_s)*(f(w) - f_t)             smoothed decrease       [A] Sec. II
           G'  = beta_s*G + (1-beta_s)*f_a                      smoothed slope
           c_h = c if G' > 0 else 1/c                           [A] Eq. 8
           accept if D' >= c_h * eta * G'                       [A] Eq. 9 (smoothed)
           else eta <- max(backtrack*eta, eta_min)              at most max_backtracks times
    w     <- w*(1 - s*eta*wd) + s*eta * d_final                 decoupled weight decay, AdamW form

s is the group's step_scale (1 unless a training script anneals the applied step; the search tests and
keeps eta itself, so annealing does not shrink the eta the search carries forward).

The variants differ only in their directions (the slope is always f_a = -g.d_trial, so the
"gradient-magnitude term" follows from the direction):

    variant  d_trial                      d_final              f_a = -g.d_trial           c    smoothing
    ALSALS   -m^/(sqrt(v^)+eps)            = d_trial            g.m^/(sqrt(v^)+eps)       0.6  on   [A] Eq. 3, 6-9
    AdamSLS  -g/(sqrt(v^)+eps)             -m^/(sqrt(v^)+eps)   sum g^2/(sqrt(v^)+eps)    0.1  off  [F] Eq. 5
    SGDSLS   -g                            = d_trial            ||g||^2                   0.1  off  [F] Eq. 1-2
    PLASLS   as AdamSLS, searched on one component per step, round robin                 0.1  off  [F] Sec. III-C

ALSALS's f_a is the exact limit of [A] Eq. 6's finite difference (f(w) - f(w + lambda*d))/lambda as
lambda -> 0, so it costs no forward; fa='fd' evaluates Eq. 6 with lambda = fd_eps for comparison (one extra
forward per search; float32/float64 parameters only).

Project choices (not in the papers), each for a stated reason:
  * Parameters are moved in place: to w + eta*d for the trial, by (eta' - eta)*d on a rejection, and they stay
    at the accepted trial point. No copy of the parameters is kept. The direction is never materialised:
    one buffer, sqrt(v) + eps', lives from the moments to the end of the step (between the backward and the
    next forward, when no activations are held), and each move is one _foreach_addcdiv_.
  * A search that fails max_backtracks times, or reaches eta_min, is "exhausted": the parameters return to w
    (no update; a non-finite trial loss is never accepted) and both EMAs restart (what they held did not
    describe this landscape). eta keeps its last tried value only if the previous search of that component
    was accepted; an exhausted search right after another one goes back to the eta it started from, so
    repeated exhaustion cannot shrink eta by 1/backtrack**max_backtracks again and again.
  * If the smoothed decrease D is negative, the smoothed test tends to beta_s*D < 0 <= c_h*eta*G' as eta -> 0
    whatever the sign of G', so no eta can pass and the EMAs (which only decay) would lock the search for
    ~1/(1-beta_s) steps. A loss spike (e.g. during warmup) does this. The EMAs then restart, and that step
    uses the plain Eq. 9 test.
  * Warmup (first warmup_steps steps): plain AdamW (SGD for SGDSLS) with group['lr'], which the training
    script's schedule sets. The moments carry over, and the search then starts from eta = the last warmup
    lr. During the last ema_warmup_steps warmup steps the closure is evaluated at the new point to warm
    D and G (every step accepted): with fresh EMAs the first test would be an unsmoothed, strict one.
  * c_h takes the sign of the quantity it multiplies (the smoothed slope G' when smoothing, f_a otherwise).
  * Gradient clipping (max_grad_norm) is done here, not by the caller: the clipped gradient feeds the
    moments (as with clip_grad_norm_ + AdamW), but f_a uses the unclipped gradient, because the slope of the
    loss along d is -grad f(w).d whatever the clipping.
  * Annealing (step_scale, not in the papers): a constant-eta search misses the end-of-run bonus that a decay
    schedule gives AdamW. The training script may lower group['step_scale'] from 1 towards 0 at the end of a
    run, as a scheduler lowers lr; the update then moves s*eta along d_final while the search still tests and
    keeps eta itself (train.py: ls_anneal_frac).
  * A non-finite f(w) or gradient norm skips the step: neither moments nor parameters change.
  * DDP: every decision reads only all-reduced numbers, each decision's inputs in one collective:
    [f(w), gradient norm] (skip? clip coefficient), [f_trial, f_a] (first trial), [f_trial] (each further
    trial). Every rank therefore makes the same decisions even if its own f_a differs in the last bit, runs
    the same number of trial forwards, and no broadcast of the parameters is needed.

Usage (the fast path: f(w) from the training forward; see README for a complete loop):
    opt = ALSALS(model.parameters(), lr=6e-4, warmup_steps=2000)
    loss = loss_fn(model(x), y); loss.backward()
    opt.step(closure=lambda: loss_fn(model(x), y), loss=loss.detach())   # closure: same data, no grad needed
    opt.step(closure)    # torch.optim style: f(w) from one extra no-grad call of the closure
"""

import copy
import math

import torch
import torch.distributed as dist

# the settings of the search itself: one search over all parameters, so they must agree in every group
_SEARCH_KEYS = ('c', 'smooth', 'beta_s', 'b', 'backtrack', 'max_backtracks', 'eta_min', 'eta_max', 'warmup_steps',
                'ema_warmup_steps', 'skip_stable', 'max_grad_norm', 'fa', 'fd_eps', 'reduce_losses', 'merge_threshold')


class _Part:
    """The tensors of one (component, param group) pair, gathered once per step: moves use the group's weight
    decay, betas and eps, and the component's eta."""

    def __init__(self, group):
        self.group = group
        self.params, self.grads, self.exp_avgs, self.exp_avg_sqs = [], [], [], []
        self.clip_coef = 1.0   # gradient clipping coefficient of this step
        self.scale = []        # -sqrt(1-beta2^t)/(1-beta1^t) per parameter: d = scale * m / denom
        self.denom = None      # sqrt(v) + eps*sqrt(1-beta2^t), the direction's one buffer


class LineSearchOptimizer(torch.optim.Optimizer):
    """The shared Armijo core (see the module docstring for the algorithm). Variants are thin subclasses that
    set `adam` / `momentum_trial` and their own defaults.

    Args (defaults are ALSALS's, [A] Sec. III-IV):
        params: iterable of parameters or param groups (each group may set lr, betas, eps, weight_decay).
        lr (1e-3): the warmup learning rate, and the initial step size eta when warmup_steps == 0.
        betas ((0.9, 0.999)), eps (1e-8): Adam moments (Adam's defaults, as in [A] Sec. IV).
        weight_decay (0): decoupled weight decay, applied with the accepted eta (AdamW form).
        c (0.6): Armijo constant ([A] Sec. III-C; [F] uses 0.1).
        smooth (True), beta_s (0.99): exponential smoothing of both sides of the criterion ([A] Sec. II).
        b (500): growth eta <- eta * 2**(1/b) at the start of every step ([A] Eq. 2).
        backtrack (0.9): eta <- backtrack * eta on rejection (the authors' code).
        max_backtracks (20): bound on rejections per step (each costs a forward); 20 shrinks eta by 8x.
        eta_min (1e-8), eta_max (1.0): bounds on eta.
        warmup_steps (0): steps of plain AdamW/SGD with group['lr'] before the search starts.
        ema_warmup_steps (100): the last this-many warmup steps evaluate the closure to warm D and G.
        step_scale (1.0): the update after warmup moves step_scale*eta (the search tests eta itself); a training
            script anneals it at the end of a run, as it would lr. Per param group; ignored in warmup.
        skip_stable (0): after a search accepted on its first trial, this many following steps take the grown
            eta without a trial forward (the authors' later SaLSA code skips searches once eta is stable).
        max_grad_norm (0 = off): clip the total gradient norm for the moments; f_a uses the raw gradient.
        fa ('exact'): 'exact' (f_a = -g.d) or 'fd' ([A] Eq. 6, one extra forward, float32/float64 only).
        fd_eps (1e-5): lambda of fa='fd'. The authors' 5e-8 measures rounding noise in float32: the loss moves
            by about its own float32 resolution; 1e-5 was within 0.5% of the exact slope on a small char GPT
            (tests/test_alsals.py::test_fd_slope_resolves_in_float32 measures both).
        reduce_losses (True): all-reduce the decision inputs over the default process group when initialised.
        components (None), merge_threshold (1e-12): PLASLS only (see PLASLS).

    step(closure, loss=None): `closure()` returns the loss at the current parameters on the batch the
    gradient came from (called without autograd); `loss` is f(w) from the training forward. Without `loss`,
    f(w) comes from one extra call of the closure. In warmup the closure is only used near its end.
    """

    adam = True               # Adam moments and preconditioning (False: plain SGD direction)
    momentum_trial = True     # trial direction -m^/(sqrt(v^)+eps) (ALSALS) or the raw-gradient one ([F])

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, c=0.6, smooth=True,
                 beta_s=0.99, b=500.0, backtrack=0.9, max_backtracks=20, eta_min=1e-8, eta_max=1.0,
                 warmup_steps=0, ema_warmup_steps=100, step_scale=1.0, skip_stable=0, max_grad_norm=0.0, fa='exact',
                 fd_eps=1e-5, reduce_losses=True, components=None, merge_threshold=1e-12):
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
        _require(step_scale >= 0, f"{name}: step_scale must be >= 0, got {step_scale}")
        _require(skip_stable >= 0, f"{name}: skip_stable must be >= 0, got {skip_stable}")
        _require(max_grad_norm >= 0, f"{name}: max_grad_norm must be >= 0, got {max_grad_norm}")
        _require(fa in ('exact', 'fd'), f"{name}: fa must be 'exact' or 'fd', got {fa!r}")
        _require(fd_eps > 0, f"{name}: fd_eps must be > 0, got {fd_eps}")
        _require(merge_threshold >= 0, f"{name}: merge_threshold must be >= 0, got {merge_threshold}")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, c=c, smooth=smooth, beta_s=beta_s,
                        b=b, backtrack=backtrack, max_backtracks=max_backtracks, eta_min=eta_min, eta_max=eta_max,
                        warmup_steps=warmup_steps, ema_warmup_steps=ema_warmup_steps, step_scale=step_scale,
                        skip_stable=skip_stable,
                        max_grad_norm=max_grad_norm, fa=fa, fd_eps=fd_eps, reduce_losses=reduce_losses,
                        merge_threshold=merge_threshold)
        super().__init__(params, defaults)
        flat = self._flat_params()
        _require(fa == 'exact' or all(p.dtype in (torch.float32, torch.float64) for p in flat),
                 f"{name}: fa='fd' needs float32/float64 parameters (a finite difference of {fd_eps:g} vanishes in "
                 f"16-bit floats)")
        split = None
        if components is not None:   # lists of parameters -> lists of their indices in state_dict order
            pos = {id(p): i for i, p in enumerate(flat)}
            split = [sorted(pos[id(p)] for p in comp if id(p) in pos) for comp in components]
            _require(sorted(i for s in split for i in s) == list(range(len(flat))),
                     f"{name}: components must partition the parameters exactly once")
        # The search state, beside the per-parameter state (torch's state_dict keeps non-tensor keys as they
        # are). One component (all parameters) until the first search; PLASLS then splits it ([F] Sec. III-C).
        self.state['search'] = dict(
            step=0, cursor=0, skip_left=0, split=split,
            components=[dict(params=list(range(len(flat))), eta=float(lr), D=0.0, G=0.0, exhausted=False)],
            totals=dict(forwards=0, backtracks=0, exhausted=0, skipped=0), last={})
        self.register_load_state_dict_pre_hook(_upgrade_old_state_dict)
        self.register_load_state_dict_post_hook(_own_search_state)

    def add_param_group(self, param_group):
        super().add_param_group(param_group)
        if len(self.param_groups) > 1:
            new, first = self.param_groups[-1], self.param_groups[0]
            for key in _SEARCH_KEYS:
                _require(new[key] == first[key], f"{type(self).__name__}: {key} must be the same in every param "
                         f"group (one search covers all of them), got {new[key]!r} and {first[key]!r}")
        search = self.state.get('search')
        if search is not None:   # after __init__: the new parameters join the one component
            _require(search['split'] is None and len(search['components']) == 1,
                     f"{type(self).__name__}: add_param_group is not supported with components (PLASLS)")
            n = len(self._flat_params())
            search['components'][0]['params'].extend(range(n - len(param_group['params']), n))

    # ---- properties for training loops --------------------------------------------------------------------
    @property
    def in_warmup(self):
        """True while the next step() is a warmup (plain AdamW/SGD with group['lr']) step."""
        return self.state['search']['step'] < self.param_groups[0]['warmup_steps']

    @property
    def eta(self):
        """Current step size (PLASLS: mean over components, as in [F] Fig. 7)."""
        comps = self.state['search']['components']
        return sum(c['eta'] for c in comps) / len(comps)

    @property
    def last_stats(self):
        """The last step: eta, forwards, backtracks, accepted, exhausted, skipped, warmup, f_w, f_trial, f_a."""
        return dict(self.state['search']['last'])

    # ---- the step, as named phases ---------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure=None, loss=None):
        """One step; returns f(w) (None in warmup without loss or closure). See the class docstring."""
        search, hp = self.state['search'], self.param_groups[0]
        warmup = search['step'] < hp['warmup_steps']
        if not warmup and closure is None:
            raise RuntimeError(f"{type(self).__name__}: after warmup, step() needs closure= (the loss at the "
                               f"current parameters on the same batch, evaluated without autograd)")
        extra_forwards = 0
        if loss is None and closure is not None and not warmup:
            loss, extra_forwards = closure(), 1               # torch.optim style: one extra no-grad forward
        grads = [p.grad for group in self.param_groups for p in group['params'] if p.grad is not None]
        if not grads:
            return None if loss is None else float(loss)
        stats = dict(eta=self.eta, forwards=extra_forwards, backtracks=0, accepted=True, exhausted=False, skipped=False,
                     warmup=warmup, f_w=None, f_trial=None, f_a=None, searched=0)

        # 1. non-finite guard, one collective and one sync: f(w) and the gradient norm decide whether to step
        grad_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)).float())
        f_w, grad_norm = self._reduce([math.nan if loss is None else loss, grad_norm])
        stats['f_w'] = None if loss is None else f_w
        if not math.isfinite(grad_norm) or (loss is not None and not math.isfinite(f_w)):
            stats.update(accepted=False, skipped=True)
            search['totals']['skipped'] += 1
            search['last'] = stats
            return f_w
        clip_coef = min(1.0, hp['max_grad_norm'] / (grad_norm + 1e-6)) if hp['max_grad_norm'] > 0 else 1.0

        # 2. moments and the direction's denominator
        search['step'] += 1
        parts, flat_index = self._init_group()
        for part in parts:
            self._moments(part, clip_coef)

        # 3. warmup: AdamW with group['lr'] (the training script's schedule)
        if warmup:
            self._warmup_step(parts, closure, f_w if loss is not None else None, stats)
            search['last'] = stats
            return stats['f_w']

        # 4. choose the component to search (PLASLS: the whole network first, then round robin, [F] III-C)
        comps = search['components']
        if search['split'] is not None and search['step'] > hp['warmup_steps'] + 1:
            base = comps[0]
            comps = search['components'] = [dict(params=list(s), eta=base['eta'], D=base['D'], G=base['G'],
                                                 exhausted=False) for s in search['split']]
            search['split'] = None
        searched = search['cursor'] % len(comps)
        search['cursor'] = (searched + 1) % len(comps)
        stats['searched'] = searched
        comp_parts = self._component_parts(parts, flat_index, comps)

        # 5. search the chosen component (or, when stable, take its grown eta without a trial)
        comp = comps[searched]
        comp['eta'] = min(comp['eta'] * 2.0 ** (1.0 / hp['b']), hp['eta_max'])          # [A] Eq. 2
        if comp_parts[searched]:
            if search['skip_left'] > 0:
                search['skip_left'] -= 1
                self._update(comp_parts[searched], comp['eta'], scaled=True)
            else:
                self._search(comp, comp_parts[searched], closure, f_w, stats)

        # 6. the other components step with their own eta ([F] update rule after Eq. 7)
        for k, other in enumerate(comps):
            if k != searched:
                self._update(comp_parts[k], other['eta'], scaled=True)

        # 7. PLASLS merge ([F] Algorithm 1)
        if len(comps) > 1:
            _merge_smallest(comps, hp['merge_threshold'])

        # 8. bookkeeping
        for group in self.param_groups:
            group['lr'] = self.eta                                       # for loggers that read group['lr']
        stats['eta'] = self.eta
        totals = search['totals']
        totals['forwards'] += stats['forwards']
        totals['backtracks'] += stats['backtracks']
        totals['exhausted'] += int(stats['exhausted'])
        search['last'] = stats
        return f_w

    # ---- phases --------------------------------------------------------------------------------------------
    def _init_group(self):
        """Gather, once per step, every parameter that has a gradient with its state, one _Part per group.
        Also returns each gathered parameter's (group, position in part) by its state_dict index."""
        parts, flat_index, i = [], {}, 0
        for group in self.param_groups:
            part = _Part(group)
            for p in group['params']:
                if p.grad is not None:
                    state = self.state[p]
                    if self.adam and not state:
                        state['step'] = 0
                        state['exp_avg'] = torch.zeros_like(p, memory_format=torch.preserve_format)
                        state['exp_avg_sq'] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    flat_index[i] = (len(parts), len(part.params))
                    part.params.append(p)
                    part.grads.append(p.grad)
                    if self.adam:
                        part.exp_avgs.append(state['exp_avg'])
                        part.exp_avg_sqs.append(state['exp_avg_sq'])
                i += 1
            if part.params:
                parts.append(part)
        return parts, flat_index

    def _moments(self, part, clip_coef):
        """Adam moments on the clipped gradient (as clip_grad_norm_ + AdamW), then denom = sqrt(v) + eps' with
        the bias corrections folded into scale:  d = -m^/(sqrt(v^)+eps) = scale * m / denom  [A] Eq. 3, with
        scale = -sqrt(1-beta2^t)/(1-beta1^t) and eps' = eps*sqrt(1-beta2^t) (torch.optim.AdamW's rewrite)."""
        part.clip_coef = clip_coef
        if not self.adam:
            return
        beta1, beta2 = part.group['betas']
        if clip_coef == 1.0:
            torch._foreach_lerp_(part.exp_avgs, part.grads, 1 - beta1)         # one pass
        else:
            torch._foreach_mul_(part.exp_avgs, beta1)
            torch._foreach_add_(part.exp_avgs, part.grads, alpha=(1 - beta1) * clip_coef)
        torch._foreach_mul_(part.exp_avg_sqs, beta2)
        torch._foreach_addcmul_(part.exp_avg_sqs, part.grads, part.grads, value=(1 - beta2) * clip_coef ** 2)
        eps_prime = []
        for p in part.params:
            state = self.state[p]
            state['step'] += 1
            bc1, bc2 = 1 - beta1 ** state['step'], 1 - beta2 ** state['step']
            part.scale.append(-math.sqrt(bc2) / bc1)
            eps_prime.append(part.group['eps'] * math.sqrt(bc2))
        part.denom = torch._foreach_sqrt(part.exp_avg_sqs)
        torch._foreach_add_(part.denom, eps_prime)

    def _trial_scale(self, part):
        """d_trial = -coef*g/(sqrt(v^)+eps) = trial_scale * g / denom  ([F] Eq. 5)."""
        beta2 = part.group['betas'][1]
        return [-part.clip_coef * math.sqrt(1 - beta2 ** self.state[p]['step']) for p in part.params]

    def _move(self, part, eta, trial=True):
        """w += eta * d in one pass, with d the trial direction (trial=True) or the final one."""
        if eta == 0.0:
            return
        if not self.adam:                                                        # d = -coef*g
            torch._foreach_add_(part.params, part.grads, alpha=-eta * part.clip_coef)
        elif trial and not self.momentum_trial:
            torch._foreach_addcdiv_(part.params, part.grads, part.denom, [eta * s for s in self._trial_scale(part)])
        else:                                                                    # d = -m^/(sqrt(v^)+eps)
            torch._foreach_addcdiv_(part.params, part.exp_avgs, part.denom, [eta * s for s in part.scale])

    def _decay(self, part, eta):
        """From w + eta*d to the AdamW-form update w*(1 - eta*wd) + eta*d = p*(1 - eta*wd) + eta^2*wd*d."""
        wd = part.group['weight_decay']
        if wd != 0.0 and eta != 0.0:
            torch._foreach_mul_(part.params, 1.0 - eta * wd)
            self._move(part, eta * eta * wd, trial=False)

    def _update(self, parts, eta, scaled=False):
        """The plain update w <- w*(1 - a*wd) + a*d_final (no search), a = eta (scaled: step_scale*eta)."""
        for part in parts:
            applied = eta * part.group['step_scale'] if scaled else eta
            self._move(part, applied, trial=False)
            self._decay(part, applied)

    def _accept(self, part, eta, applied):
        """From the accepted trial point w + eta*d_trial to the update w*(1 - a*wd) + a*d_final, a = applied."""
        if not self.momentum_trial:                                    # [F]: the update uses the momentum
            self._move(part, -eta, trial=True)
            self._move(part, applied, trial=False)
        elif applied != eta:                                           # annealing: d_final == d_trial here
            self._move(part, applied - eta, trial=False)
        self._decay(part, applied)

    def _fa(self, parts, closure, f_w, stats):
        """The slope along d_trial: exact (-g.d, no forward) or [A] Eq. 6's finite difference."""
        if self.param_groups[0]['fa'] == 'exact':
            return self._slope(parts)
        return self._fd_slope(parts, closure, f_w, stats)

    def _slope(self, parts):
        """f_a = -g.d_trial with the unclipped gradient g, as a float64 device tensor (no sync here: it is
        fetched together with the first trial loss). One float32 dot per tensor (no float64 copies of the
        gradient), summed in float64 and weighted by python floats (a weight tensor would be a host-to-device
        copy, which synchronises on CUDA)."""
        total = 0.0
        for part in parts:
            if not self.adam:                                              # -g.(-coef*g) = coef*||g||^2
                dots = [torch.dot(g.reshape(-1), g.reshape(-1)) for g in part.grads]
                weights = [part.clip_coef] * len(dots)
            else:
                ratio = torch._foreach_div(part.exp_avgs if self.momentum_trial else part.grads, part.denom)
                dots = [torch.dot(g.reshape(-1), r.reshape(-1)) for g, r in zip(part.grads, ratio)]
                weights = [-s for s in (part.scale if self.momentum_trial else self._trial_scale(part))]
                del ratio
            if len(set(weights)) == 1:                                     # the usual case: one bias correction
                total = total + torch.stack(dots).double().sum() * weights[0]
            else:
                total = total + sum(d.double() * w for d, w in zip(dots, weights))
        return total

    def _reduce(self, values):
        """The mean over ranks of a few scalars (tensors or floats), in one collective and one host sync."""
        device = self.param_groups[0]['params'][0].device
        t = torch.stack([v.detach().to(device, torch.float64).reshape(()) if torch.is_tensor(v)   # a python float
                         else torch.full((), v, dtype=torch.float64, device=device) for v in values])  # is a fill, no copy
        if self.param_groups[0]['reduce_losses'] and dist.is_available() and dist.is_initialized() \
                and dist.get_world_size() > 1:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            t /= dist.get_world_size()
        return t.tolist()

    def _warmup_step(self, parts, closure, f_w, stats):
        """AdamW (SGD) with group['lr']; in the last ema_warmup_steps steps one closure call warms D and G."""
        search, hp = self.state['search'], self.param_groups[0]
        comp = search['components'][0]
        comp['eta'] = float(hp['lr'])                                  # the search will start from the last lr
        stats['eta'] = comp['eta']
        warm_ema = (hp['smooth'] and closure is not None and f_w is not None
                    and search['step'] > hp['warmup_steps'] - hp['ema_warmup_steps'])
        if not warm_ema:
            for part in parts:
                self._update([part], part.group['lr'])
            return
        f_a = self._fa(parts, closure, f_w, stats)
        for part in parts:
            self._move(part, part.group['lr'], trial=True)
        f_t, f_a = self._reduce([closure(), f_a])
        stats.update(forwards=stats['forwards'] + 1, f_trial=f_t, f_a=f_a)
        if math.isfinite(f_t):
            beta_s = hp['beta_s']
            comp['D'] = beta_s * comp['D'] + (1 - beta_s) * (f_w - f_t)
            comp['G'] = beta_s * comp['G'] + (1 - beta_s) * f_a
        for part in parts:
            self._accept(part, part.group['lr'], part.group['lr'])

    def _component_parts(self, parts, flat_index, comps):
        """For each component, its gathered tensors split by param group (a list of _Part)."""
        if len(comps) == 1:                     # one component holds every parameter
            return [parts]
        out = []
        for comp in comps:
            by_part = {}
            for i in comp['params']:
                if i in flat_index:
                    k, j = flat_index[i]
                    by_part.setdefault(k, []).append(j)
            sub_parts = []
            for k, js in sorted(by_part.items()):
                src, sub = parts[k], _Part(parts[k].group)
                sub.clip_coef = src.clip_coef
                for attr in ('params', 'grads', 'exp_avgs', 'exp_avg_sqs', 'scale'):
                    vals = getattr(src, attr)
                    setattr(sub, attr, [vals[j] for j in js] if vals else [])
                sub.denom = None if src.denom is None else [src.denom[j] for j in js]
                sub_parts.append(sub)
            out.append(sub_parts)
        return out

    def _fd_slope(self, parts, closure, f_w, stats):
        """[A] Eq. 6: f_a = (f(w) - f(w + lambda*d)) / lambda, one extra forward."""
        lam = self.param_groups[0]['fd_eps']
        for part in parts:
            self._move(part, lam)
        f_lambda, = self._reduce([closure()])
        for part in parts:
            self._move(part, -lam)
        stats['forwards'] += 1
        return (f_w - f_lambda) / lam

    def _search(self, comp, parts, closure, f_w, stats):
        """Backtracking Armijo search on one component, in place (no copies). [A] Eq. 8-9."""
        hp = self.param_groups[0]
        beta_s, c, smooth = hp['beta_s'], hp['c'], hp['smooth']
        eta_start = comp['eta']
        f_a = self._fa(parts, closure, f_w, stats)
        if smooth and comp['D'] < 0:
            # beta_s*D < 0: no eta passes the smoothed test (module docstring); restart the EMAs
            comp['D'] = comp['G'] = 0.0
            stats['ema_restart'] = True
        eta, moved = eta_start, 0.0
        while True:
            for part in parts:
                self._move(part, eta - moved, trial=True)
            moved = eta
            if stats['f_a'] is None:                                   # first trial: fetch f_a with f_t
                f_t, f_a = self._reduce([closure(), f_a])
                stats['f_a'] = f_a
                G_new = beta_s * comp['G'] + (1 - beta_s) * f_a if smooth else f_a
                c_h = c if G_new > 0 else 1.0 / c                                      # [A] Eq. 8
            else:
                f_t, = self._reduce([closure()])
            stats['forwards'] += 1
            D_new = beta_s * comp['D'] + (1 - beta_s) * (f_w - f_t) if smooth else f_w - f_t
            if math.isfinite(f_t) and D_new >= c_h * eta * G_new:                       # [A] Eq. 9
                break
            if stats['backtracks'] >= hp['max_backtracks'] or eta <= hp['eta_min']:
                stats.update(accepted=False, exhausted=True)
                break
            eta = max(eta * hp['backtrack'], hp['eta_min'])
            stats['backtracks'] += 1
        stats['f_trial'] = f_t
        search = self.state['search']
        if stats['exhausted']:
            for part in parts:
                self._move(part, -moved, trial=True)               # back to w: no update
            if smooth:
                comp['D'] = comp['G'] = 0.0
            comp['eta'] = eta_start if comp['exhausted'] else eta
            comp['exhausted'] = True
            search['skip_left'] = 0
            return
        comp.update(eta=eta, D=D_new, G=G_new, exhausted=False)
        for part in parts:
            self._accept(part, eta, eta * part.group['step_scale'])
        search['skip_left'] = hp['skip_stable'] if stats['backtracks'] == 0 else 0

    def _flat_params(self):
        return [p for group in self.param_groups for p in group['params']]


def _require(ok, message):
    if not ok:
        raise ValueError(message)


def _merge_smallest(comps, threshold):
    """PLASLS merge ([F] Algorithm 1): when the smallest eta <= threshold, that component merges with the one
    of second-smallest eta; the merged one takes their mean eta (and mean EMAs)."""
    order = sorted(range(len(comps)), key=lambda k: comps[k]['eta'])
    small, second = order[0], order[1]
    if comps[small]['eta'] > threshold:
        return False
    a, b = comps[small], comps[second]
    comps[min(small, second)] = dict(params=sorted(a['params'] + b['params']), eta=(a['eta'] + b['eta']) / 2,
                                     D=(a['D'] + b['D']) / 2, G=(a['G'] + b['G']) / 2, exhausted=False)
    del comps[max(small, second)]
    return True


def _own_search_state(optimizer):
    """load_state_dict copies non-parameter state by reference: take a private copy, so that stepping this
    optimizer never changes the dict it was loaded from."""
    optimizer.state['search'] = copy.deepcopy(optimizer.state['search'])


def _upgrade_old_state_dict(optimizer, state_dict):
    """Checkpoints written before the search state moved into optimizer.state (keys 'line_search' and
    'line_search_hp') load with their search state and settings."""
    current = optimizer.param_groups[0]
    if 'line_search' not in state_dict:
        _require('search' in state_dict['state'], f"{type(optimizer).__name__}: state_dict has no line-search "
                 f"state (was it saved by another optimizer?)")
        if all('step_scale' in g for g in state_dict['param_groups']):
            return state_dict
        state_dict = dict(state_dict)          # saved before step_scale existed: the update was unscaled
        state_dict['param_groups'] = [{'step_scale': 1.0, **g} for g in state_dict['param_groups']]
        return state_dict
    state_dict = dict(state_dict)
    old, old_hp = state_dict.pop('line_search'), state_dict.pop('line_search_hp', {})
    state_dict['param_groups'] = [{**{k: old_hp.get(k, current[k]) for k in _SEARCH_KEYS}, 'step_scale': 1.0, **g}
                                  for g in state_dict['param_groups']]
    state = {k: (dict(v, step=old['step']) if 'exp_avg' in v else v) for k, v in state_dict['state'].items()}
    state['search'] = dict(
        step=old['step'], cursor=old['cursor'], skip_left=old['skip_left'], split=old['split'],
        components=[dict(params=c['idx'], eta=c['eta'], D=c['D'], G=c['G'], exhausted=False)
                    for c in old['components']],
        totals=dict(forwards=old.get('total_forwards', 0), backtracks=old.get('total_backtracks', 0),
                    exhausted=old.get('total_exhausted', 0), skipped=0), last={})
    state_dict['state'] = state
    return state_dict


class ALSALS(LineSearchOptimizer):
    """ALSALS ([A] Sec. III): Armijo line search on the Adam-with-momentum direction d = -m^/(sqrt(v^)+eps),
    f_a = -grad f(w).d (the exact limit of [A] Eq. 6), c_h from [A] Eq. 8, c = 0.6 ([A] Sec. III-C), both
    sides of [A] Eq. 9 smoothed with beta_s = 0.99, growth 2**(1/500) per step ([A] Eq. 2).
    See LineSearchOptimizer for every argument and default."""


class AdamSLS(LineSearchOptimizer):
    """ADAM+SLS ([F] Eq. 5, [A] Sec. II-B): trial direction Adam without momentum -g/(sqrt(v^)+eps), slope
    sum g^2/(sqrt(v^)+eps), c = 0.1, no smoothing by default; the update uses the momentum direction with the
    accepted eta. This is the variant whose eta collapses on GPT-2 ([A] Fig. 1)."""
    momentum_trial = False

    def __init__(self, params, c=0.1, smooth=False, **kwargs):
        super().__init__(params, c=c, smooth=smooth, **kwargs)


class SGDSLS(LineSearchOptimizer):
    """SGD+SLS (Vaswani et al.; [F] Eq. 1-2): d = -g, slope ||g||^2, c = 0.1, no smoothing by default.
    betas/eps are accepted and ignored."""
    adam = False

    def __init__(self, params, c=0.1, smooth=False, **kwargs):
        super().__init__(params, c=c, smooth=smooth, **kwargs)


class PLASLS(AdamSLS):
    """PLASLS ([F] Sec. III-C): ADAM+SLS with one step size per component of the network. `components` (a
    list of lists of parameters partitioning params; model.GPT.param_components(L) gives the split used for
    GPT, L = 10 as in [F]) is required. The first step searches the whole network; afterwards each step
    searches one component in round robin while the others step with their stored eta. When the smallest
    eta <= merge_threshold (1e-12, [F] Fig. 2), that component merges with the one of second-smallest eta
    (their mean eta, [F] Algorithm 1). eta_min defaults to 1e-14 here so that merging can happen at all."""

    def __init__(self, params, components=None, eta_min=1e-14, **kwargs):
        _require(components is not None, "PLASLS: components= (a list of lists of parameters) is required")
        super().__init__(params, components=components, eta_min=eta_min, **kwargs)


OPTIMIZERS = {'alsals': ALSALS, 'adamsls': AdamSLS, 'sgdsls': SGDSLS, 'plasls': PLASLS}
