"""experiments/range_test.py in its quick mode: AdamW's LR range test on train.py's training step; the edge it
reports is the one the optimizer's own start (alsals/start.py) finds on the same losses, replayed here."""
import json
import math
import os
import subprocess
import sys

from alsals import start

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_edge(lrs, losses, k):
    """The step at which alsals/start.py's range test, fed these losses with eta doubling every k steps from
    lrs[0], declares the edge (mode 'edge'), or None."""
    state = dict(start.STATE, ramp=k, ramp_sigma=2.0, ramp_hold=0, ramp_from=lrs[0], eta_max=math.inf,
                 smooth=True, ema_warmup_steps=0)
    eta = lrs[0]
    for t, f in enumerate(losses):
        eta, mode = start.step([state], eta, f)
        if mode == 'edge':
            return t
        assert abs(eta - lrs[t]) <= 1e-9 * lrs[t], (t, eta, lrs[t])   # the start's ramp is the recorded one
    return None


def test_range_test_records_the_ramp_and_its_edge(tmp_path):
    p = subprocess.run([sys.executable, 'experiments/range_test.py', '--corpus', 'char', '--size', 'quick',
                        '--steps', '60', '--rate', '1.25', '--out', str(tmp_path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    rec = json.load(open(tmp_path / 'char_quick.json'))
    lr, loss = rec['lr'], rec['loss']
    assert all(b == lr[0] * 1.25 ** t for t, b in enumerate(lr[:5])) and len(loss) == len(lr) > 10
    found = start_edge(lr, loss, math.log(2) / math.log(1.25))
    assert found is not None and rec['edge_step'] == found and rec['edge_lr'] == lr[found]
