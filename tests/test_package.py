"""`pip install .` as a user outside this trainer gets it: build the wheel from a copy of the repository (no
build isolation, no index: offline), install it with --no-deps into a temp target, and use the optimizer from
there in a fresh interpreter whose cwd is outside the repository, so that nothing of the trainer (model.py,
trainer, ...) is importable."""
import os
import shutil
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# left out of the copy: outputs, data, the venv; the build must need none of them
IGNORE = shutil.ignore_patterns(".git", ".venv", "out*", "*.bin", "*.pkl", "input.txt", "build", "*.egg-info",
                                "__pycache__", ".pytest_cache", "results", "wandb")

USE = r"""
import os, sys
import torch
import alsals
from alsals import ALSALS, AdamSLS, SGDSLS, PLASLS, MuonAdamW, MuonSLS, LineSearchReference
site = os.path.realpath(sys.argv[1])
assert os.path.realpath(alsals.__file__).startswith(site + os.sep), alsals.__file__
assert MuonSLS.__module__ == 'alsals.muon' and LineSearchReference.__module__ == 'alsals.alsals_reference'
# the trainer stays out of the package, and no top-level `muon` shadows PyPI's distributions of that name
for name in ('model', 'trainer', 'train', 'muon', 'alsals_reference'):
    try:
        __import__(name)
    except ImportError:
        pass
    else:
        raise AssertionError(name + ' is importable')
# one ALSALS step on f(w) = |w|^2 from w = 1: the contract's fast path (loss from the training forward)
w = torch.nn.Parameter(torch.ones(4))
opt = ALSALS([w], lr=0.1)
def f():
    with torch.no_grad():
        return (w * w).sum()
loss = (w * w).sum()
loss.backward()
opt.step(closure=f, loss=loss)
assert float(f()) < 4.0, w
print('OK', alsals.__file__)
"""


def pip(*args, cwd):
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    p = subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]


def test_wheel_installs_and_imports(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=IGNORE)
    pip("wheel", str(src), "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), cwd=tmp_path)
    wheels = list((tmp_path / "dist").glob("alsals-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as z:
        top = {n.split("/")[0] for n in z.namelist() if not n.split("/")[0].endswith(".dist-info")}
        files = {n for n in z.namelist() if n.startswith("alsals/")}
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    assert top == {"alsals"}, top  # one package: the optimizers, nothing of the trainer, no top-level muon
    assert {"alsals/__init__.py", "alsals/alsals.py", "alsals/muon.py",
            "alsals/alsals_reference.py"} <= files, files
    requires = [line for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    assert len(requires) == 1 and requires[0].split(":", 1)[1].strip().startswith("torch"), requires
    assert "License-Expression: MIT" in meta

    site = tmp_path / "site"
    pip("install", "--no-deps", "--target", str(site), str(wheels[0]), cwd=tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    p = subprocess.run([sys.executable, "-c", USE, str(site)], cwd=work, env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.startswith("OK")
