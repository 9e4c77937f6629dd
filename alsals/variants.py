"""
The variants of ALSALS, each a thin subclass (the papers' names; alsals.py's module docstring gives their
directions, slopes and constants):

  AdamSLS  ADAM+SLS, [F] Eq. 5: the trial along Adam without momentum, the update along the momentum
  SGDSLS   SGD+SLS, [F] Eq. 1-2: the plain gradient
  PLASLS   [F] Sec. III-C: ADAM+SLS with one step size per component of the network, merged when one collapses

  [F] P. Kenneweg, L. Galli, T. Kenneweg, B. Hammer, "Faster Convergence for Transformer Fine-tuning with Line
      Search Methods", 2023.
"""
from typing import Optional

from ._functional import require
from .alsals import ALSALS, Params


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
        require(components is not None, "PLASLS: components= (a list of lists of parameters) is required")
        require(merge_threshold >= 0, f"PLASLS: merge_threshold must be >= 0, got {merge_threshold}")
        groups = list(params)
        groups = [dict(g, params=list(g['params'])) for g in groups] if groups and isinstance(groups[0],
                                                                                              dict) \
            else [{'params': groups}]
        flat = [p for g in groups for p in g['params']]
        owner = {}
        for k, comp in enumerate(components):
            for p in comp:
                owner.setdefault(id(p), []).append(k)
        require(sorted(map(id, flat)) == sorted(owner) and all(len(v) == 1 for v in owner.values()),
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
        require(getattr(self, '_building', False), "PLASLS: add_param_group is not supported (the components "
                 "partition the parameters)")
        super().add_param_group(param_group)

    def _search_whole(self) -> bool:
        first = self.param_groups[0]
        # the first search covers the whole network
        return first['step'] == first['warmup_steps'] + 1

    def _after_step(self) -> None:
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
