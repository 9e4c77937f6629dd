"""
What gpu_check.py and gpu_study.py share: their parts (checks, runs) run one after another, each recorded with
its result or its error, and the report is written after every part (JSON, and its markdown summary beside
it), so a run cut short on a lent GPU keeps what it measured.
"""
import json
import os
import sys
import time


def save(out, report, markdown):
    """Writes report to out (JSON) and markdown to out's name with .md."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, 'w') as f:
        json.dump(report, f, indent=1)
    with open(os.path.splitext(out)[0] + '.md', 'w') as f:
        f.write(markdown)


def run_parts(parts, results, save_all, tag):
    """parts: [(name, fn)]; results[name] = fn() (a dict) or its error, with the seconds it took; save_all()
        after each. An error is recorded and the next part runs: the others still tell something."""
    for name, fn in parts:
        t0 = time.time()
        print(f"{tag}: {name} ...", flush=True)
        try:
            results[name] = fn()
        except (Exception, SystemExit) as e:
            results[name] = dict(error=f"{type(e).__name__}: {e}")
        results[name]['seconds'] = round(time.time() - t0, 1)
        save_all()


def finish(out, report, markdown):
    """Prints the summary and exits 0 if the report is ok, else 1."""
    print(markdown, end='')
    print(f"wrote {out} and {os.path.splitext(out)[0] + '.md'}")
    sys.exit(0 if report['ok'] else 1)
