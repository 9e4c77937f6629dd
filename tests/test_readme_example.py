"""The README's plain-PyTorch example runs as printed: the ```python block after the marker comment is
executed, the loss must fall, and the search (not only the AdamW warmup) must have run. The same block with
`opt.step(closure)` alone (f(w) from one extra no-grad closure call instead of loss=) must follow the same
trajectory, and the f(w) it records must be the loss at the parameters before the step: on CPU in float32 the
closure's value equals the training forward's loss."""
import os
import re

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKER = "<!-- readme-example:"
FAST = "opt.step(closure, loss=loss)"


def example():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    assert text.count(MARKER) == 1, f"README.md needs exactly one {MARKER!r} line"
    m = re.search(r"```python\n(.*?)\n```", text[text.index(MARKER):], re.S)
    assert m, "no ```python block after the marker"
    return m.group(1)


def run(code):
    ns = {"__name__": "readme_example"}
    exec(compile(code, "README.md example", "exec"), ns)
    return ns


def test_readme_example_loss_falls():
    ns = run(example())
    opt, first, last = ns["opt"], ns["first"], ns["loss"].item()
    assert not opt.in_warmup and opt.last_stats["warmup"] is False  # the search ran
    assert last < 1e-2 * first, (first, last)
    assert opt.last_stats["f_w"] == last  # the loss= passed in


def test_readme_example_step_closure_alone():
    code = example()
    assert code.count(FAST) == 1
    fast = run(code)
    alone = run(code.replace(FAST, "opt.step(closure)"))
    assert not alone["opt"].in_warmup and alone["opt"].last_stats["warmup"] is False
    assert alone["opt"].last_stats["f_w"] == alone["loss"].item()  # f(w) from the extra closure call
    assert alone["loss"].item() < 1e-2 * alone["first"]
    for p, q in zip(fast["model"].parameters(), alone["model"].parameters()):
        assert torch.allclose(p, q, rtol=0, atol=1e-6), (p, q)
