"""
A plain, slow reference twin of alsals.py and muon.py's MuonSLS (after facebookresearch/schedule_free's
*_reference.py files).

It follows the papers' presentation one parameter tensor at a time, keeps explicit copies of w and of both
directions, and writes the parameters as w + eta*d. It shares no code with alsals.py (its own defaults, its
own merge rule), so that a bug in the fast optimizer cannot pass the twin test (tests/test_alsals.py) by
being in both. For Muon's direction it calls torch's own Newton-Schulz iteration and shape factor, as
torch.optim.Muon does.

  [A] Kenneweg, Kenneweg, Hammer, "Improving Line Search Methods for Large Scale Neural Network Training",
      2024, arXiv:2403.18519.
  [F] Kenneweg, Galli, Kenneweg, Hammer, "Faster Convergence for Transformer Fine-tuning with Line Search
      Methods", 2023.

The project's own choices (warmup hand-off, the applied step eta*lr/lr_0, EMA restart, exhaustion rule,
clipping, skipping, the range-test start) are those of alsals.py's module docstring, written out again here in
the plainest form.
"""
import math

import torch
from torch.optim._muon import _adjust_lr, _zeropower_via_newtonschulz

# variant -> (trial direction, update direction, c, smoothing, eta_min): [A] Sec. III, [F] Eq. 1-5 and III-C;
# muonsls: Muon's direction on the groups with use_muon, Adam's momentum direction on the others
VARIANTS = {
    'alsals': ('momentum', 'momentum', 0.6, True, 1e-8), 'adamsls': ('adam_gradient', 'momentum', 0.1, False,
                                                                     1e-8),
    'sgdsls': ('gradient', 'gradient', 0.1, False, 1e-8), 'plasls': ('adam_gradient', 'momentum', 0.1, False,
                                                                     1e-14),
    'muonsls': ('momentum', 'momentum', 0.6, True, 1e-8),
}


class LineSearchReference(torch.optim.Optimizer):
    def __init__(self, params, variant='alsals', lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 c=None, smooth=None, beta_s=0.99, b=500.0, backtrack=0.9, max_backtracks=20, eta_min=None,
                 eta_max=1.0, warmup_steps=0, ema_warmup_steps=100, skip_stable=0, max_grad_norm=0.0,
                 components=None, merge_threshold=1e-12, ramp=0.0, ramp_sigma=2.0, ramp_hold=0, ramp_from=0.0,
                 momentum=0.95, nesterov=True, separate_eta=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, use_muon=False))
        self.trial_dir, self.final_dir, c0, smooth0, eta_min0 = VARIANTS[variant]
        self.c = c0 if c is None else c
        self.smooth = smooth0 if smooth is None else smooth
        self.eta_min = eta_min0 if eta_min is None else eta_min
        self.beta_s, self.b, self.backtrack, self.max_backtracks = beta_s, b, backtrack, max_backtracks
        self.eta_max, self.warmup_steps, self.ema_warmup_steps = eta_max, warmup_steps, ema_warmup_steps
        self.skip_stable, self.max_grad_norm = skip_stable, max_grad_norm
        self.merge_threshold = merge_threshold
        self.momentum, self.nesterov, self.ramp, self.ramp_sigma = momentum, nesterov, ramp, ramp_sigma
        self.ramp_hold, self.hold_left, self.ramp_from = ramp if ramp_hold < 0 else ramp_hold, 0, ramp_from
        self.merges = variant == 'plasls'
        all_params = [p for g in self.param_groups for p in g['params']]
        # components as lists of parameter objects; PLASLS: before the first search, one holds the whole
        # network
        self.pending_split = None if components is None else [list(comp) for comp in components]
        self.comps = [dict(params=all_params, eta=float(lr), D=0.0, G=0.0, exhausted=False)]
        # MuonSLS: Muon's matrices, then the others, searched in turn from the first search on
        if separate_eta:
            muon = [p for g in self.param_groups if g['use_muon'] for p in g['params']]
            self.comps = [dict(params=ps, eta=float(lr), D=0.0, G=0.0, exhausted=False)
                          for ps in (muon, [p for p in all_params if all(p is not q for q in muon)])]
        self.t, self.cursor, self.skip_left = 0, 0, 0
        self.lr0 = {}                                  # each group's lr at the hand-off (by id of the group)
        self.ramping, self.loss_ema, self.loss_min = ramp > 0, None, math.inf
        self.last = {}

    @property
    def eta(self):
        return sum(comp['eta'] for comp in self.comps) / len(self.comps)

    @torch.no_grad()
    def step(self, closure=None, loss=None):
        entries = []   # (param, its group)
        for g in self.param_groups:
            for p in g['params']:
                if p.grad is not None:
                    entries.append((p, g))
        warmup = self.t < self.warmup_steps
        if loss is None and closure is not None and not warmup:
            loss = closure()
        f_w = None if loss is None else float(loss)
        self.last = dict(accepted=True, exhausted=False, skipped=False, forwards=0, backtracks=0)
        raw = {p: p.grad.clone() for p, _ in entries}
        norm = math.sqrt(sum(float((g.double() ** 2).sum()) for g in raw.values()))
        if (f_w is not None and not math.isfinite(f_w)) or not math.isfinite(norm):
            self.last.update(accepted=False, skipped=True)
            return f_w
        coef = min(1.0, self.max_grad_norm / (norm + 1e-6)) if self.max_grad_norm > 0 else 1.0
        self.t += 1

        # moments and both directions, with explicit bias corrections ([A] Eq. 3, [F] Eq. 5)
        d_trial, d_final, group_of = {}, {}, {}
        for p, g in entries:
            group_of[p] = g
            grad = coef * raw[p]
            st = self.state[p]
            if self.trial_dir == 'gradient':
                d_trial[p] = d_final[p] = -grad
                continue
            if g['use_muon']:                         # Muon: B = mu*B + (1-mu)*g, Nesterov, Newton-Schulz, r
                # lerp as torch.optim.Muon: NS rounds to bfloat16, so its input must match bit for bit
                st.setdefault('buf', torch.zeros_like(p))
                st['buf'] = st['buf'].lerp(grad, 1 - self.momentum)
                u = grad.lerp(st['buf'], self.momentum) if self.nesterov else st['buf']
                ortho = _zeropower_via_newtonschulz(u, (3.4445, -4.775, 2.0315), 5, 1e-7).to(p.dtype)
                d_trial[p] = d_final[p] = -_adjust_lr(1.0, None, p.shape) * ortho
                continue
            b1, b2 = g['betas']
            if not st:
                st['step'], st['m'], st['v'] = 0, torch.zeros_like(p), torch.zeros_like(p)
            st['step'] += 1
            st['m'] = b1 * st['m'] + (1 - b1) * grad
            st['v'] = b2 * st['v'] + (1 - b2) * grad * grad
            m_hat = st['m'] / (1 - b1 ** st['step'])
            v_hat = st['v'] / (1 - b2 ** st['step'])
            d_final[p] = -m_hat / (v_hat.sqrt() + g['eps'])
            d_trial[p] = d_final[p] if self.trial_dir == 'momentum' else -grad / (v_hat.sqrt() + g['eps'])
        w = {p: p.clone() for p, _ in entries}

        if not warmup:                                # lr_0: each group's lr at its first searched step
            for g in self.param_groups:
                self.lr0.setdefault(id(g), g['lr'])

        # a component's reference: the group of its first parameter
        def ref_group(params):
            return group_of[params[0]]

        def trial_k(p, ref):                          # the trial moves group k by eta * lr_0(k)/lr_0(ref)
            return group_of[p]['lr'] / ref['lr'] if warmup else self.lr0[id(group_of[p])] / self.lr0[id(ref)]

        def put(params, eta, d):                      # p = w + eta*k*d
            ref = ref_group(params)
            for p in params:
                p.copy_(w[p] + eta * trial_k(p, ref) * d[p])

        # p = w*(1 - a*wd) + a*d_final, a = eta*lr/lr_0(ref) (AdamW form)
        def update(params, eta):
            ref = ref_group(params)
            for p in params:
                a = eta * group_of[p]['lr'] / self.lr0[id(ref)]
                p.copy_(w[p] * (1 - a * group_of[p]['weight_decay']) + a * d_final[p])

        # f_a = -g . d_trial (each group's trial factor), unclipped g
        def slope(params):
            ref = ref_group(params)
            return -sum(trial_k(p,
                                ref) * float((raw[p].double() * d_trial[p].double()).sum()) for p in params)

        if warmup:                                    # AdamW/SGD/Muon with each group's lr
            first = [p for p, _ in entries]
            for comp in self.comps:
                comp['eta'] = float(group_of[[p for p in comp['params'] if p in group_of][0]]['lr'])
            if self.smooth and closure is not None and f_w is not None \
                    and self.t > self.warmup_steps - self.ema_warmup_steps:
                f_a = slope(first)
                put(first, ref_group(first)['lr'], d_trial)
                f_t = float(closure())
                if math.isfinite(f_t):
                    for comp in self.comps:
                        comp['D'] = self.beta_s * comp['D'] + (1 - self.beta_s) * (f_w - f_t)
                        comp['G'] = self.beta_s * comp['G'] + (1 - self.beta_s) * f_a
            for p in group_of:
                lr = group_of[p]['lr']
                p.copy_(w[p] * (1 - lr * group_of[p]['weight_decay']) + lr * d_final[p])
            return f_w

        # the range-test start: plain steps, eta doubling per `ramp`
        if self.ramping:
            comp = self.comps[0]
            fresh = self.loss_ema is None
            if fresh:                                 # from ramp_from, or else 1/100 of the first guess
                eta = self.ramp_from if self.ramp_from > 0 else comp['eta'] * 0.01
            else:
                eta = comp['eta'] * 2.0 ** (1.0 / self.ramp)
            self.loss_ema = f_w if fresh else (1 - 1 / self.ramp) * self.loss_ema + f_w / self.ramp
            self.loss_min = min(self.loss_min, self.loss_ema)
            # the edge: its eta / sigma, held
            if self.loss_ema > 1.02 * self.loss_min or eta >= self.eta_max:
                eta = min(comp['eta'] / self.ramp_sigma, self.eta_max)
                self.ramping, self.hold_left = False, self.ramp_hold
            comp['eta'] = eta
            update(list(group_of), eta)
            return f_w

        if self.pending_split is not None and self.t > self.warmup_steps + 1:
            base = self.comps[0]
            self.comps = [dict(params=s, eta=base['eta'], D=base['D'], G=base['G'], exhausted=False)
                          for s in self.pending_split]
            self.pending_split = None
        k = self.cursor % len(self.comps)
        self.cursor = (k + 1) % len(self.comps)
        comp = self.comps[k]
        mine = [p for p in comp['params'] if p in group_of]
        # after the range test: its eta; in the last ema_warmup_steps
        if self.hold_left > 0:
            self.hold_left -= 1                       # a trial warms the EMAs (every trial accepted)
            if self.hold_left >= self.ema_warmup_steps or not self.smooth:
                update(mine, comp['eta'])
            else:
                self._search(comp, mine, closure, f_w, slope(mine), put, update, d_trial, always=True)
            return f_w
        comp['eta'] = min(comp['eta'] * 2.0 ** (1.0 / self.b), self.eta_max)          # [A] Eq. 2
        if mine and self.skip_left > 0:
            self.skip_left -= 1
            update(mine, comp['eta'])
        elif mine:
            self._search(comp, mine, closure, f_w, slope(mine), put, update, d_trial)
        for j, other in enumerate(self.comps):
            if j != k:
                update([p for p in other['params'] if p in group_of], other['eta'])
        self._merge()
        return f_w

    def _search(self, comp, params, closure, f_w, f_a, put, update, d_trial, always=False):
        bs = self.beta_s
        if self.smooth and comp['D'] < 0:            # no eta can pass the smoothed test: restart the EMAs
            comp['D'] = comp['G'] = 0.0
        G_new = bs * comp['G'] + (1 - bs) * f_a if self.smooth else f_a
        c_h = self.c if G_new > 0 else 1.0 / self.c                                  # [A] Eq. 8
        eta_start = eta = comp['eta']
        backtracks = 0
        f_t = math.nan
        while True:
            put(params, eta, d_trial)
            f_t = float(closure())
            self.last['forwards'] += 1
            D_new = bs * comp['D'] + (1 - bs) * (f_w - f_t) if self.smooth else f_w - f_t
            if math.isfinite(f_t) and (always or D_new >= c_h * eta * G_new):         # [A] Eq. 9
                accepted = True
                break
            if backtracks >= self.max_backtracks or eta <= self.eta_min:
                accepted = False
                break
            eta = max(eta * self.backtrack, self.eta_min)
            backtracks += 1
        self.last['backtracks'] = backtracks
        if accepted:
            comp.update(eta=eta, D=D_new, G=G_new, exhausted=False)
            update(params, eta)
            self.skip_left = self.skip_stable if backtracks == 0 else 0
        else:
            self.last.update(accepted=False, exhausted=True)
            put(params, 0.0, d_trial)                                                # back to w
            if self.smooth:
                comp['D'] = comp['G'] = 0.0
            # the test failed down to the smallest eta at a finite loss: eta is too large, keep cutting; after
            # non-finite trials, cut only once
            comp['eta'] = eta if math.isfinite(f_t) or not comp['exhausted'] else eta_start
            comp['exhausted'] = True
            self.skip_left = 0

    def _merge(self):
        """[F] Algorithm 1: the component of smallest eta, once at or below the threshold, joins the one of
        next-smallest eta; both take the mean of their etas and EMAs."""
        if not self.merges or len(self.comps) < 2:
            return
        by_eta = sorted(self.comps, key=lambda comp: comp['eta'])
        low, next_low = by_eta[0], by_eta[1]
        if low['eta'] > self.merge_threshold:
            return
        keep_first = self.comps.index(low) < self.comps.index(next_low)
        pair = (low, next_low) if keep_first else (next_low, low)
        merged = dict(params=pair[0]['params'] + pair[1]['params'],
                      eta=(low['eta'] + next_low['eta']) / 2, D=(low['D'] + next_low['D']) / 2,
                      G=(low['G'] + next_low['G']) / 2, exhausted=False)
        position = min(self.comps.index(low), self.comps.index(next_low))
        self.comps = [comp for comp in self.comps if comp is not low and comp is not next_low]
        self.comps.insert(position, merged)
