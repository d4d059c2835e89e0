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
    for block in blocks[1:]:
        scope: dict = {}
        exec(compile(block, str(README), "exec"), scope)  # noqa: S102 - our own README
        if "result" in scope:  # the counterfactual example
            summary = scope["result"].summary().set_index("arm")
            assert summary.loc["label@1h", "final_reach"] <= summary.loc["none", "final_reach"]
        if "Fatigue" in scope:  # the architecture section's new dynamics module
            import lpm

            graph = lpm.Graph.holme_kim(200, 3, 0.3, seed=0)
            tired = lpm.simulate(scope["model"], lpm.PopulationState.sample(200, seed=1), graph, steps=6, seed=0)
            rested = lpm.simulate(lpm.Model(activity=scope["model"].activity), lpm.PopulationState.sample(200, seed=1),
                                  graph, steps=6, seed=0)
            assert float(tired.final.activity.sum()) < float(rested.final.activity.sum())
    namespace: dict = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)  # noqa: S102 - our own README
    model = namespace["model"]
    # polarization depends on the opinion model and, through who posts, on the activity model
    for module in (model.opinion, model.activity):
        for name, param in module.named_parameters():
            assert param.grad is not None and torch.isfinite(param.grad).all() and param.grad.abs() > 0, name
    assert "polarization" in capsys.readouterr().out
