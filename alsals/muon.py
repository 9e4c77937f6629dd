"""
Muon on the hidden matrices, and the Armijo line search on Muon's direction.

  MuonAdamW  torch.optim.Muon on the param groups with use_muon=True (2-D weights inside the transformer
             blocks), torch.optim.AdamW on the others (embeddings, the tied head, norms, biases), as ONE
             optimizer: one state_dict, one set of param groups for lr schedules, checkpoints, resume and DDP.
             Each part runs torch's own implementation (torch.optim._muon and torch.optim.adam), so its
             numbers are torch's.
  MuonSLS    ALSALS's search ([A] Eq. 2, 8-9, smoothing, growth, skip_stable, annealing by lr/lr_0, DDP
             reductions, non-finite guard; see alsals.py) on Muon's direction: d = -r * NS(nesterov momentum)
             for the use_muon groups, d = -m^/(sqrt(v^)+eps) (Adam's) for the others. f_a = -g.d exactly.
             separate_eta=False: one eta for all groups, each group's trial scaled by its lr at the hand-off
             relative to the first group's (Muon's lr : AdamW's lr, as in the warmup); True: one eta for the
             Muon groups and one for the others, searched in turn (round robin).

Muon: K. Jordan et al., "Muon: An optimizer for hidden layers in neural networks", 2024; torch.optim.Muon.
NS is torch's quintic Newton-Schulz iteration (run in bfloat16, as torch does), r = torch's shape adjustment
(adjust_lr_fn; 'original': sqrt(max(1, rows/cols))).

FSDP2 (a Muon matrix is a DTensor, each rank holding a shard): the momentum is kept on the local shard, the
    Nesterov update is gathered into the whole matrix (one all-gather per matrix per step), every rank runs
    Newton-Schulz on that same matrix and keeps its own shard of the result; r is the whole matrix's. So each
    rank moves its shard exactly as one process moves that part of the matrix (as torchtitan's DistMuon and
    the PyPI muon-fsdp2 package do). MuonSLS's slope f_a = -g.d is then this rank's part of a sum over shards,
    reduced in the search's one collective with the trial loss, as for ALSALS's shards.
"""
from typing import Optional

import torch
from torch.optim._muon import _adjust_lr, _zeropower_via_newtonschulz
from torch.optim.adam import adam as _adam
from torch.optim.optimizer import _get_scalar_dtype

from ._functional import is_dtensor, local, require
from .alsals import ALSALS, Params

_MUON_DEFAULTS = dict(momentum=0.95, nesterov=True, ns_coefficients=(3.4445, -4.775, 2.0315), ns_eps=1e-7,
                      ns_steps=5, adjust_lr_fn=None)


def _check_muon_groups(name: str, groups: list) -> None:
    for group in groups:
        for p in group['params']:
            require(not group['use_muon'] or p.ndim == 2,
                     f"{name}: a use_muon group holds a {p.ndim}-D parameter; Muon takes 2-D matrices only")


def _muon_direction(group: dict, state: dict, grad: torch.Tensor, clip_coef: float = 1.0):
    """torch.optim.Muon's update before its lr: momentum buffer (lerp), Nesterov, Newton-Schulz; and its shape
    factor r (the update is p -= lr * r * NS(...)). grad: the gradient, or under FSDP2 its local shard; the
    momentum buffer is then a DTensor, whose placements say how the matrix is sharded (module docstring)."""
    buf, momentum = state['momentum_buffer'], group['momentum']
    local_buf = local(buf)
    g = grad if clip_coef == 1.0 else grad * clip_coef
    local_buf.lerp_(g, 1 - momentum)
    update = g.lerp(local_buf, momentum) if group['nesterov'] else local_buf
    sharded = is_dtensor(buf)
    # Newton-Schulz casts to bfloat16 first: gathering the bfloat16 shards is the same, at half the bytes
    if sharded:
        from torch.distributed.tensor import DTensor, Replicate   # loaded: FSDP2 made buf a DTensor
        update = DTensor.from_local(update.bfloat16(), buf.device_mesh, buf.placements, shape=buf.shape,
                                    stride=buf.stride()).full_tensor()
    ortho = _zeropower_via_newtonschulz(update, group['ns_coefficients'], group['ns_steps'], group['ns_eps'])
    # this rank's shard of the whole result: Replicate -> the buffer's placements is a local slice
    if sharded:
        replicated = DTensor.from_local(ortho, buf.device_mesh, [Replicate()] * buf.device_mesh.ndim)
        ortho = replicated.redistribute(buf.device_mesh, buf.placements).to_local()
    return ortho, _adjust_lr(1.0, group['adjust_lr_fn'], buf.shape)   # the whole matrix's shape


class MuonAdamW(torch.optim.Optimizer):
    """torch.optim.Muon on the groups with use_muon=True, torch.optim.AdamW on the others, as one optimizer.

    Args:
        params (iterable): param groups; each sets use_muon (default False) and may set its own lr (train.py
            gives the AdamW groups muon_adamw_lr), weight_decay, betas, eps.
        lr (float, optional): the learning rate (default: 0.02, Muon's in torch's example)
        weight_decay (float, optional): decoupled weight decay, lr * weight_decay per step (default: 0.1)
        momentum (float, optional): Muon's momentum (default: 0.95)
        nesterov (bool, optional): Muon's Nesterov momentum (default: True)
        ns_coefficients (tuple, optional), ns_eps (float, optional), ns_steps (int, optional), adjust_lr_fn
            (str, optional): torch.optim.Muon's coefficients (3.4445, -4.775, 2.0315), eps (1e-7), steps (5)
            and shape adjustment (None = 'original')
        betas (Tuple[float, float], optional): AdamW's (default: (0.9, 0.999))
        eps (float, optional): AdamW's (default: 1e-8)
        fused (bool, optional): torch's fused AdamW for the AdamW groups (CUDA) (default: None)
    """

    def __init__(self, params: Params, lr: float = 0.02, weight_decay: float = 0.1, momentum: float = 0.95,
                 nesterov: bool = True, ns_coefficients: tuple = (3.4445, -4.775,
                                                                  2.0315), ns_eps: float = 1e-7,
                 ns_steps: int = 5, adjust_lr_fn: Optional[str] = None, betas: tuple = (0.9, 0.999),
                 eps: float = 1e-8, fused: Optional[bool] = None):
        require(lr >= 0, f"MuonAdamW: lr must be >= 0, got {lr}")
        require(weight_decay >= 0, f"MuonAdamW: weight_decay must be >= 0, got {weight_decay}")
        require(0 <= momentum < 1, f"MuonAdamW: momentum must be in [0, 1), got {momentum}")
        require(adjust_lr_fn in (None, 'original', 'match_rms_adamw'),
                f"MuonAdamW: adjust_lr_fn must be None, 'original' or 'match_rms_adamw', "
                f"got {adjust_lr_fn!r}")
        require(0 <= betas[0] < 1 and 0 <= betas[1] < 1, f"MuonAdamW: betas must be in [0, 1), got {betas}")
        require(eps >= 0, f"MuonAdamW: eps must be >= 0, got {eps}")
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                        ns_coefficients=ns_coefficients, ns_eps=ns_eps, ns_steps=ns_steps,
                        adjust_lr_fn=adjust_lr_fn, betas=betas, eps=eps, fused=fused, use_muon=False)
        super().__init__(params, defaults)
        _check_muon_groups('MuonAdamW', self.param_groups)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group['params'] if p.grad is not None]
            if not params:
                continue
            states = [self.state[p] for p in params]
            if group['use_muon']:                                # torch.optim.Muon's _single_tensor_muon
                for p, state in zip(params, states):
                    if not state:
                        state['momentum_buffer'] = torch.zeros_like(p.grad,
                                                                    memory_format=torch.preserve_format)
                    ortho, ratio = _muon_direction(group, state, local(p.grad))
                    p_local = local(p)                          # FSDP2: this rank's shard moves
                    p_local.mul_(1 - group['lr'] * group['weight_decay'])
                    p_local.add_(ortho, alpha=-group['lr'] * ratio)
                continue
            fused = bool(group['fused'])                          # torch.optim.AdamW
            for p, state in zip(params, states):
                if not state:
                    state['step'] = torch.tensor(0.0, dtype=_get_scalar_dtype(is_fused=fused),
                                                 device=p.device if fused else None)
                    state['exp_avg'] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state['exp_avg_sq'] = torch.zeros_like(p, memory_format=torch.preserve_format)
            beta1, beta2 = group['betas']
            _adam(params, [p.grad for p in params], [s['exp_avg'] for s in states],
                  [s['exp_avg_sq'] for s in states], [], [s['step'] for s in states],
                  foreach=None if not fused else False, fused=fused or None,
                  amsgrad=False, beta1=beta1, beta2=beta2, lr=group['lr'], weight_decay=group['weight_decay'],
                  eps=group['eps'], maximize=False, decoupled_weight_decay=True)
        return loss


class MuonSLS(ALSALS):
    """ALSALS's Armijo search on Muon's direction (module docstring).

    Args:
        params (iterable): param groups with use_muon (default False), as for MuonAdamW.
        lr (float, optional): the warmup lr (Muon's; train.py gives the AdamW groups muon_adamw_lr), and the
            first eta without warmup (default: 0.02) momentum, nesterov, ns_coefficients, ns_eps, ns_steps,
            adjust_lr_fn: Muon's, as for MuonAdamW
        separate_eta (bool, optional): one eta for the Muon groups and one for the others, searched in turn;
            False: one eta for all (default: False)
        **kwargs: ALSALS's (betas, eps, weight_decay for every group; c, smooth, b, warmup_steps, ...).
    """

    def __init__(self, params: Params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True,
                 ns_coefficients: tuple = (3.4445, -4.775, 2.0315), ns_eps: float = 1e-7, ns_steps: int = 5,
                 adjust_lr_fn: Optional[str] = None, separate_eta: bool = False, **kwargs):
        require(0 <= momentum < 1, f"MuonSLS: momentum must be in [0, 1), got {momentum}")
        require(adjust_lr_fn in (None, 'original', 'match_rms_adamw'),
                 f"MuonSLS: adjust_lr_fn must be None, 'original' or 'match_rms_adamw', got {adjust_lr_fn!r}")
        self._muon_defaults = dict(momentum=momentum, nesterov=nesterov, ns_coefficients=ns_coefficients,
                                   ns_eps=ns_eps, ns_steps=ns_steps, adjust_lr_fn=adjust_lr_fn,
                                   use_muon=False, separate_eta=separate_eta)
        super().__init__(params, lr=lr, **kwargs)
        self.defaults.update(self._muon_defaults)
        _check_muon_groups('MuonSLS', self.param_groups)

    def add_param_group(self, param_group: dict) -> None:
        for key, value in self._muon_defaults.items():
            param_group.setdefault(key, value)
        if param_group['separate_eta']:                           # component 0: Muon's matrices, 1: the rest
            param_group['component'] = 0 if param_group['use_muon'] else 1
        super().add_param_group(param_group)

    def _init_state(self, p: torch.Tensor, state: dict, group: dict) -> None:
        if group['use_muon']:
            state['momentum_buffer'] = torch.zeros_like(p, memory_format=torch.preserve_format)
        else:
            super()._init_state(p, state, group)

    def _directions(self, part, clip_coef: float) -> None:
        if not part.group['use_muon']:
            return super()._directions(part, clip_coef)
        part.clip_coef = clip_coef
        nums, scales = [], []
        for p, grad, state in zip(part.params, part.grads, part.states):
            ortho, ratio = _muon_direction(part.group, state, grad, clip_coef)
            nums.append(ortho.to(p.dtype))
            scales.append(-ratio)
        part.final_num = part.trial_num = nums
        part.final_scale = part.trial_scale = scales
