"""
Checkpoints of the optimizer's earlier layouts load: each converter takes a state_dict one layout forward, and
upgrade_state_dict (ALSALS's load_state_dict pre-hook) chains them.

  1. 'line_search'/'line_search_hp' beside torch's keys, settings outside the param groups
  2. the search state as optimizer.state['search'], annealing factor 'step_scale' in the groups
  3. the search state in the param groups (today's), with the start candidates' keys ('ramp_rule', 'ref', 'ref_q';
     the 'polyak' and 'nonmonotone' rules left the code after commit e081c1d, which ran them)
Then settings and scalars that a checkpoint predates take the optimizer's defaults.
"""
from . import alsals as _core   # a circular import (alsals.py registers the hook): its names are read at load time


def upgrade_state_dict(optimizer, state_dict: dict) -> dict:
    """Any earlier layout to today's (lr_0 is then recorded at the next step; an earlier run's annealing factor
    step_scale is not carried over)."""
    name = type(optimizer).__name__
    if 'line_search' in state_dict:
        state_dict = _from_line_search_layout(optimizer, state_dict)
    if 'search' in state_dict['state']:
        state_dict = _from_search_layout(optimizer, state_dict)
    _core._require(all('eta' in g for g in state_dict['param_groups']),
                   f"{name}: state_dict has no line-search state (was it saved by another optimizer?)")
    return _complete(optimizer, _without_ramp_rules(optimizer, state_dict))


def _from_line_search_layout(optimizer, state_dict: dict) -> dict:
    """Layout 1 to layout 2."""
    current = optimizer.param_groups[0]
    state_dict = dict(state_dict)
    old, old_hp = state_dict.pop('line_search'), state_dict.pop('line_search_hp', {})
    state_dict['param_groups'] = [{**{k: old_hp.get(k, current[k]) for k in _core._SEARCH_KEYS}, **g}
                                  for g in state_dict['param_groups']]
    state = {k: (dict(v, step=old['step']) if 'exp_avg' in v else v) for k, v in state_dict['state'].items()}
    state['search'] = dict(
        step=old['step'], skip_left=old['skip_left'], split=old['split'],
        components=[dict(eta=c['eta'], D=c['D'], G=c['G']) for c in old['components']],
        totals=dict(forwards=old.get('total_forwards', 0), backtracks=old.get('total_backtracks', 0),
                    exhausted=old.get('total_exhausted', 0)))
    state_dict['state'] = state
    return state_dict


def _from_search_layout(optimizer, state_dict: dict) -> dict:
    """Layout 2 to layout 3: the search state moves into the param groups."""
    search = state_dict['state']['search']
    _core._require(len(search['components']) == 1 and search['split'] is None,
                   f"{type(optimizer).__name__}: a PLASLS checkpoint of the earlier layout (components as parameter "
                   f"indices) cannot be converted; start the run again, or resume it with the project's version of "
                   f"2026-11 (commit cdbdc2f)")
    comp, totals = search['components'][0], search['totals']
    scalars = dict(eta=comp['eta'], D=comp['D'], G=comp['G'], exhausted=comp.get('exhausted', False),
                   component=0, handoff_lr=None, step=search['step'], cursor=0, skip_left=search['skip_left'],
                   forwards=totals['forwards'], backtracks=totals['backtracks'], exhaustions=totals['exhausted'],
                   skipped=totals.get('skipped', 0))
    state_dict = dict(state_dict, state={k: v for k, v in state_dict['state'].items() if k != 'search'})
    state_dict['param_groups'] = [dict({k: v for k, v in g.items() if k != 'step_scale'}, **scalars)
                                  for g in state_dict['param_groups']]
    return state_dict


def _without_ramp_rules(optimizer, state_dict: dict) -> dict:
    """Layout 3's start candidates: their keys are dropped; a run in the middle of a removed rule's ramp is
    refused (the range test would restart its ramp from the wrong eta)."""
    groups = state_dict['param_groups']
    rule = groups[0].get('ramp_rule', 'range')
    _core._require(rule == 'range' or not groups[0].get('ramping'),
                   f"{type(optimizer).__name__}: the checkpoint is in the middle of the start ramp_rule={rule!r}, "
                   f"which left the code; resume it with commit e081c1d, or start the run again")
    return dict(state_dict, param_groups=[{k: v for k, v in g.items() if k not in ('ramp_rule', 'ref', 'ref_q')}
                                          for g in groups])


def _complete(optimizer, state_dict: dict) -> dict:
    """Settings and scalars that a checkpoint predates take this optimizer's defaults (a run saved after its
    warmup has no start left to make)."""
    groups = []
    for g in state_dict['param_groups']:
        missing = {k: v for k, v in {**optimizer.defaults, **_core._OPTIMIZER_STATE}.items() if k not in g}
        if 'ramping' in missing and g['step'] > g['warmup_steps']:
            missing['ramping'] = False
        groups.append(dict(g, **missing))
    return dict(state_dict, param_groups=groups)

