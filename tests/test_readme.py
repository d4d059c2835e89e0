"""The README's example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_examples_run(capsys):
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 2, "README has lost its examples"
    for block in blocks[1:]:  # the counterfactual example
        scope: dict = {}
        exec(compile(block, str(README), "exec"), scope)  # noqa: S102 - our own README
        summary = scope["result"].summary().set_index("arm")
        assert summary.loc["label@1h", "final_reach"] <= summary.loc["none", "final_reach"]
    namespace: dict = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)  # noqa: S102 - our own README
    model = namespace["model"]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters()
               if p.requires_grad and p.grad is not None)
    assert namespace["model"].opinion.raw_eps.grad is not None
    assert "polarization" in capsys.readouterr().out
