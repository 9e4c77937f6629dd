"""train.py's log line: tokens/s and the ETA to max_iters, on the console and in the JSON log."""
import json

import pytest

import trainutil as tu


def test_tokens_per_second_and_eta(tiny_dataset, tmp_path):
    """tok_per_s = the iteration's training tokens / its wall time (dt_ms); eta_s = the iterations left to
    max_iters times the mean dt of this process's iterations after its first: falls to 0 at the last
    iteration."""
    log = tmp_path / 'log.jsonl'
    r = tu.check_ok(tu.train(dataset=tiny_dataset, out_dir=str(tmp_path / 'o'), max_iters=12,
                             eval_interval=100, log_file=str(log), optimizer='alsals', ls_range_test=True))
    recs = [x for x in map(json.loads, log.read_text().splitlines()) if 'loss' in x]
    assert [x['iter'] for x in recs] == list(range(13))
    tokens = tu.TINY['batch_size'] * tu.TINY['block_size'] # per iteration, one rank, one micro-batch
    dts = [x['dt_ms'] / 1000 for x in recs]
    for i, x in enumerate(recs):
        assert x['tok_per_s'] == pytest.approx(tokens / dts[i], rel=1e-6)
        mean_dt = sum(dts[1:i + 1]) / i if i else dts[0]
        assert x['eta_s'] == pytest.approx((12 - i) * mean_dt, rel=1e-6)
    assert recs[-1]['eta_s'] == 0 and recs[-2]['eta_s'] > 0
    assert 'eta 0:00:00' in r.stdout.splitlines()[-1] and 'tok/s ' in r.stdout
