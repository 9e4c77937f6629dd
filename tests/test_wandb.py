"""train.py's wandb run, offline (WANDB_MODE=offline writes the run to WANDB_DIR): every record at
step=iter_num, the schedule's lr and the search's eta under their own keys, and --init_from=resume continuing
the same run."""
import glob
import json
import os
import struct

import pytest

import trainutil as tu

wandb_pb = pytest.importorskip('wandb.proto.wandb_internal_pb2')


def records(path):
    """The protobuf Records of a .wandb file: a 7-byte header, then LevelDB-log framing (32 KiB blocks, each
    record in chunks with a 7-byte header: crc, length, type FULL=1 / FIRST=2 / MIDDLE=3 / LAST=4)."""
    with open(path, 'rb') as f:
        data = f.read()
    assert data[:4] == b':W&B', path
    pos, chunks = 7, b''
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:                     # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack('<IHB', data[pos:pos + 7])
        chunks += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_pb.Record()
            record.ParseFromString(chunks)
            chunks = b''
            yield record


def history(path):
    """(run id, [(step, {key: value})]) of one offline run file."""
    run_id, rows = None, []
    for r in records(path):
        kind = r.WhichOneof('record_type')
        if kind == 'run':
            run_id = r.run.run_id
        elif kind == 'history':
            rows.append((r.history.step.num, {i.key or '/'.join(i.nested_key): json.loads(i.value_json)
                                              for i in r.history.item}))
    return run_id, rows


def test_wandb_steps_keys_and_resume(tiny_dataset, tmp_path):
    """A run of 10 iterations (checkpoint at 10), then --init_from=resume to 20: both offline files hold one
    run id; each run's steps are the iterations it logged (every 2nd, and the evals every 5th), increasing,
    and the resumed run starts at the checkpoint's iteration; 'lr' is the schedule's lr and 'ls/eta' the
    search's step size (the JSON log's lr after warmup)."""
    out, wdir = tmp_path / 'out', tmp_path / 'wandb'
    common = dict(dataset=tiny_dataset, out_dir=str(out), wandb_log=True, optimizer='alsals', warmup_iters=3,
                  eval_interval=5, log_interval=2, learning_rate=1e-2, log_file=str(tmp_path / 'log.jsonl'))
    env = tu.env_of(WANDB_MODE='offline', WANDB_DIR=str(wdir), WANDB_SILENT='true')
    for extra in (dict(max_iters=10), dict(max_iters=20, init_from='resume')):
        r = tu.run_script('train.py', *tu.args_of(**common, **extra), env=env)
        tu.check_ok(r)
    runs = sorted(glob.glob(str(wdir / 'wandb' / 'offline-run-*' / '*.wandb')))
    assert len(runs) == 2, runs
    (id1, rows1), (id2, rows2) = history(runs[0]), history(runs[1])
    assert id1 == id2 and id1
    steps1, steps2 = [s for s, _ in rows1], [s for s, _ in rows2]
    logged = lambda a, b: sorted({i for i in range(a, b + 1) if i % 2 == 0 or i % 5 == 0})  # iters and evals
    assert steps1 == logged(0, 10) and steps2 == logged(10, 20)
    log = {r['iter']: r for r in map(json.loads, open(tmp_path / 'log.jsonl')) if 'loss' in r}
    for step, row in rows1 + rows2:
        assert (step % 2 == 0) == ({'train/loss_step', 'lr', 'ls/eta', 'ls/forwards'} <= set(row)), (step,
                                                                                                     row)
        assert (step % 5 == 0) == ({'train/loss', 'val/loss'} <= set(row)), (step, row)
        # after the warmup: the schedule's lr, the search's eta
        if step >= 3 and step % 2 == 0:
            assert row['lr'] == pytest.approx(1e-2) and row['ls/eta'] == pytest.approx(log[step]['lr'])
