"""experiments/range_test.py in its quick mode: AdamW's LR range test on train.py's training step; the edge it
reports is alsals.py's 'range' rule applied to the recorded losses (recomputed here)."""
import json
import math
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_range_test_records_the_ramp_and_its_edge(tmp_path):
    p = subprocess.run([sys.executable, 'experiments/range_test.py', '--corpus', 'char', '--size', 'quick',
                        '--steps', '60', '--rate', '1.25', '--out', str(tmp_path)], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    rec = json.load(open(tmp_path / 'char_quick.json'))
    lr, loss = rec['lr'], rec['loss']
    assert all(b == lr[0] * 1.25 ** t for t, b in enumerate(lr[:5])) and len(loss) == len(lr) > 10
    k, ema, best, found = math.log(2) / math.log(1.25), None, math.inf, None
    for t, f in enumerate(loss):
        ema = f if ema is None else (1 - 1 / k) * ema + f / k
        if ema > 1.02 * best:
            found = t
            break
        best = min(best, ema)
    assert rec['edge_step'] == found and (found is None or rec['edge_lr'] == lr[found])
