"""Snapshots: corrupted bytes, out-of-range values and another run's snapshot are refused on resume."""

from __future__ import annotations

import pytest
import torch

import lpm
from lpm.dynamics import BoundedConfidence, EmotionContagion, Hawkes
from lpm.errors import ConfigError, StateError
from lpm.simulate import _payload_checksum
from lpm.testing import small_graph
from tests.helpers import make_state


def _model(eps: float = 0.5) -> lpm.Model:
    return lpm.Model(opinion=BoundedConfidence(eps=eps, rate=0.6, tau=0.1), emotion=EmotionContagion(0.8, 0.2),
                     activity=Hawkes(mu=0.6, alpha=0.8, beta=1.5), dt=0.25).double()


def _snapshot(tmp_path, model=None, graph=None, state=None):
    graph = graph if graph is not None else small_graph(30, 3.0, seed=1)
    state = state if state is not None else make_state(30, batch=2, seed=1)
    path = tmp_path / "run.pt"
    with torch.no_grad():
        lpm.simulate(model or _model(), state, graph, steps=4, seed=3, save_path=path, save_every=4)
    return path, graph, state


def _resume(path, model=None, graph=None, state=None):
    with torch.no_grad():
        return lpm.simulate(model or _model(), state, graph, steps=8, seed=3, save_path=path, save_every=4,
                            resume=True)


def test_exact_resume_still_bit_for_bit(tmp_path):
    path, graph, state = _snapshot(tmp_path)
    with torch.no_grad():
        reference = lpm.simulate(_model(), state, graph, steps=8, seed=3)
    resumed = _resume(path, graph=graph, state=state)
    for name in reference.values:
        torch.testing.assert_close(resumed[name], reference[name], atol=0, rtol=0)


def test_flipped_byte_in_tensor_data_is_refused(tmp_path):
    path, graph, state = _snapshot(tmp_path)
    payload = torch.load(path, weights_only=True)
    opinion = payload["state"][0]
    opinion.view(torch.uint8).reshape(-1)[5] ^= 0xFF  # one byte of the payload, as a disk error would
    torch.save(payload, path)
    with pytest.raises(StateError, match=f"{path}.*checksum.*corrupted"):
        _resume(path, graph=graph, state=state)


def test_out_of_range_opinion_is_refused_even_with_a_matching_checksum(tmp_path):
    path, graph, state = _snapshot(tmp_path)
    payload = torch.load(path, weights_only=True)
    payload["state"][0][0, 0, 0] = 7.0
    payload["checksum"] = _payload_checksum(payload)
    torch.save(payload, path)
    with pytest.raises(StateError, match=r"valid state in the snapshot.*'opinion' in \[-1.0, 1.0\].*7"):
        _resume(path, graph=graph, state=state)


def test_other_model_is_refused(tmp_path):
    path, graph, state = _snapshot(tmp_path)
    with pytest.raises(ConfigError, match=f"{path}.*different model"):
        _resume(path, model=_model(eps=0.3), graph=graph, state=state)


def test_other_graph_is_refused(tmp_path):
    path, graph, state = _snapshot(tmp_path)
    with pytest.raises(ConfigError, match="different graph"):
        _resume(path, graph=small_graph(30, 3.0, seed=2), state=state)


def test_other_initial_state_is_refused(tmp_path):
    path, graph, state = _snapshot(tmp_path)
    with pytest.raises(ConfigError, match="different initial state"):
        _resume(path, graph=graph, state=make_state(30, batch=2, seed=2))


def test_old_format_is_refused(tmp_path):
    path, graph, state = _snapshot(tmp_path)
    payload = torch.load(path, weights_only=True)
    payload["format"] = 1
    torch.save(payload, path)
    with pytest.raises(StateError, match="snapshot format 2.*got 1"):
        _resume(path, graph=graph, state=state)
