"""Archetype decisions in the stance model: exact reductions to the plain model, gradients reaching
the head, the fit loop, the paired bootstrap and the comparison end to end on a synthetic posts file."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from lpm.calibration import stance_archetypes as sa
from lpm.calibration.fit_stance import load_posts
from lpm.calibration.stance_memory import ThreadReplies
from lpm.calibration.stance_model import StanceConfig, StanceModel, VERACITIES
from lpm.errors import ConfigError
from lpm.targets_series import STANCES, stance_kl, stance_shares

CONFIG = StanceConfig(agents=24, dt=0.5, edges_h=(0.0, 0.5, 1.0, 2.0, 4.0))
PARAMS = {"support_bias": -1.2, "deny_bias": -2.0, "query_bias": -1.8, "belief_slope": 1.3, "arousal_slope": 0.9,
          "arousal_decay": 0.4, "coupling": 0.2, "initial_belief": 0.25, "evidence_rate_true": 0.2,
          "evidence_rate_false": 0.3, "evidence_rate_unverified": 0.1}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _decisions(stance: torch.Tensor, arousal: torch.Tensor, k: int = 3, seed: int = 0) -> sa.StanceDecisions:
    gen = torch.Generator().manual_seed(seed)
    archetype = torch.randint(k, (CONFIG.agents,), generator=gen)
    embeddings = torch.randn(k, len(sa.CONTEXTS), 8, generator=gen, dtype=torch.float64)
    return sa.StanceDecisions(archetype, stance.double(), arousal.double(), embeddings)


def _counts(model: StanceModel) -> torch.Tensor:
    with torch.no_grad():
        return model.simulate_counts()


def test_zero_gains_reproduce_the_plain_model_exactly():
    gen = torch.Generator().manual_seed(3)
    decisions = _decisions(torch.rand(3, 4, generator=gen) * 2 - 1, torch.rand(3, 4, generator=gen) * 2 - 1)
    plain = _counts(StanceModel(CONFIG, PARAMS))
    extended = _counts(sa.ArchetypeStanceModel(CONFIG, decisions, PARAMS))
    assert torch.equal(plain, extended)
    assert float(plain.sum()) > 0


def test_constant_decisions_equal_shifted_plain_parameters():
    """With one stance shift ``s`` for every archetype, the belief gain is a shift of atanh(initial_belief)
    and the evidence gain multiplies every evidence rate by exp(g s): the plain model with those values."""
    s, g_belief, g_evidence = 0.4, 0.7, 1.5
    decisions = _decisions(torch.full((3, 4), s), torch.zeros(3, 4))
    extended = sa.ArchetypeStanceModel(CONFIG, decisions, {**PARAMS, "belief_gain": g_belief,
                                                           "evidence_gain": g_evidence})
    shifted = {**PARAMS, "initial_belief": math.tanh(math.atanh(PARAMS["initial_belief"]) + g_belief * s),
               **{f"evidence_rate_{v}": PARAMS[f"evidence_rate_{v}"] * math.exp(g_evidence * s) for v in VERACITIES}}
    assert torch.allclose(_counts(extended), _counts(StanceModel(CONFIG, shifted)), rtol=1e-5, atol=1e-6)
    assert sa.ArchetypeStanceModel(CONFIG, decisions, PARAMS).evidence.agent_scale is None  # cleared after a run


def test_arousal_gain_scales_reached_users_by_archetype():
    arousal = torch.tensor([[0.5, 0, 0, 0], [-1.0, 0, 0, 0], [0.0, 0, 0, 0]])
    decisions = _decisions(torch.zeros(3, 4), arousal)
    model = sa.ArchetypeStanceModel(CONFIG, decisions, {**PARAMS, "arousal_gain": 2.0})
    with torch.no_grad():
        emotion = model.initial_state().emotion[..., 0]  # (3, N)
    expected = model.reached.float() * torch.exp(2.0 * arousal[decisions.archetype, 0])
    assert torch.allclose(emotion, expected.expand(3, -1), atol=1e-6)


def test_head_gets_gradients_once_a_gain_is_nonzero():
    gen = torch.Generator().manual_seed(5)
    decisions = _decisions(torch.rand(3, 4, generator=gen) - 0.5, torch.rand(3, 4, generator=gen) - 0.5)
    observed = torch.rand(3, CONFIG.bins, 4, generator=gen) * 20 + 1
    for gains, moves in (({}, False), ({"belief_gain": 0.5, "arousal_gain": 0.5, "evidence_gain": 0.5}, True)):
        model = sa.ArchetypeStanceModel(CONFIG, decisions, {**PARAMS, **gains})
        stance_kl(stance_shares(model.simulate_counts()), observed.double()).backward()
        grad = model.head.linear.weight.grad
        assert (grad.abs().sum() > 0) == moves
        assert model.gains.grad.abs().sum() > 0  # the gains always see the decisions


def test_bad_decisions_raise():
    archetype = torch.zeros(CONFIG.agents, dtype=torch.int64)
    with pytest.raises(ConfigError, match="K, 4"):
        sa.StanceDecisions(archetype, torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3, 8))
    with pytest.raises(ConfigError, match=r"archetypes in \[0, 2\)"):
        sa.StanceDecisions(archetype + 2, torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(2, 4, 8))
    with pytest.raises(ConfigError, match="integer"):
        sa.StanceDecisions(archetype.double(), torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(2, 4, 8))
    short = sa.StanceDecisions.random(archetype[:5], 2, 8)
    with pytest.raises(ConfigError, match=f"decisions for {CONFIG.agents} agents"):
        sa.ArchetypeStanceModel(CONFIG, short)


def test_random_decisions_are_in_range_and_seeded():
    archetype = torch.arange(CONFIG.agents) % 4
    a, b = sa.StanceDecisions.random(archetype, 4, 16, seed=1), sa.StanceDecisions.random(archetype, 4, 16, seed=1)
    assert torch.equal(a.stance_shift, b.stance_shift) and a.stance_shift.abs().max() <= 0.3
    assert a.arousal.abs().max() <= 1.0
    assert torch.allclose(a.reaction_embeddings.norm(dim=-1), torch.ones(4, 4, dtype=torch.float64))
    assert not torch.equal(a.stance_shift, sa.StanceDecisions.random(archetype, 4, 16, seed=2).stance_shift)


def test_fit_shares_lowers_the_loss_and_keeps_the_best():
    planted = {**PARAMS, "support_bias": -0.5, "evidence_rate_false": 0.8}
    observed = stance_shares(_counts(StanceModel(CONFIG, planted))) * 500
    model = StanceModel(CONFIG, PARAMS)
    found = sa.fit_shares(model, observed, steps=15, learning_rate=0.1)
    assert found["steps"] == 15 and found["loss"] < 0.5 * found["initial_loss"]
    again = stance_kl(stance_shares(_counts(model)), observed.double())
    assert float(again) == pytest.approx(found["loss"], rel=1e-6)  # left at the best parameters
    with pytest.raises(ConfigError):
        sa.fit_shares(model, observed, steps=-1)


def test_paired_bootstrap_signs_and_identity():
    gen = torch.Generator().manual_seed(2)
    t, k = 30, 3
    veracity = torch.arange(t) % 3
    truth = torch.tensor([0.1, 0.1, 0.1, 0.7], dtype=torch.float64)
    drawn = torch.multinomial(truth, 20 * t * k, replacement=True, generator=gen).reshape(t, k, 20)
    every = torch.zeros(t, k, 4, dtype=torch.float64).scatter_add_(-1, drawn, torch.ones(t, k, 20, dtype=torch.float64))
    replies = ThreadReplies(veracity, torch.zeros(t, 4, dtype=torch.float64), every, every)
    good = truth.expand(3, k, 4)
    bad = torch.full((3, k, 4), 0.25, dtype=torch.float64)
    assert sa.paired_bootstrap(good, good, replies, draws=50) == (0.0, 0.0, 0.0)
    diff, low, high = sa.paired_bootstrap(bad, good, replies, draws=200)
    assert low <= diff <= high and low > 0  # uniform shares are clearly worse than the generating ones
    with pytest.raises(ConfigError):
        sa.paired_bootstrap(bad, good, replies, level=1.0)


def _write_threads(path: Path, threads: int = 30) -> Path:
    gen = torch.Generator().manual_seed(7)
    lines = ["thread_id,veracity,post_id,parent_id,depth,time_utc_snowflake,stance,delay_min"]
    for t in range(threads):
        thread, veracity = 1000 + t, VERACITIES[t % 3]
        lines.append(f"{thread},{veracity},{thread},,0,1400000000.0,support,0.0")
        for k in range(8):
            stance = STANCES[int(torch.randint(4, (1,), generator=gen))]
            delay = float(torch.rand(1, generator=gen)) * 200
            lines.append(f"{thread},{veracity},{thread * 100 + k},{thread},1,{1400000000.0 + 60 * delay},{stance},{delay}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_compare_end_to_end(tmp_path: Path):
    posts = load_posts([_write_threads(tmp_path / "posts.csv")])
    archetype = torch.arange(CONFIG.agents) % 3
    rows = sa.compare(posts, {"random": sa.StanceDecisions.random(archetype, 3, 8)}, CONFIG, steps=3,
                      extra_steps=2, draws=20)
    names = [r["arm"] for r in rows]
    assert names == [sa.BASELINE, "random", "train_veracity_bin", "train_bin", "train_constant"]
    base = rows[0]
    assert (base["diff"], base["diff_low"], base["diff_high"]) == (0.0, 0.0, 0.0)
    for row in rows:
        assert 0.0 <= row["mae_stance"] <= 1.0 and row["diff_low"] <= row["diff"] <= row["diff_high"]
    assert rows[1]["steps"] == 5 and set(sa.GAINS) <= set(rows[1])
    with pytest.raises(ConfigError, match="arm names"):
        sa.compare(posts, {sa.BASELINE: sa.StanceDecisions.random(archetype, 3, 8)}, CONFIG, steps=0, extra_steps=0)


def test_script_writes_the_table(tmp_path: Path, capsys):
    """``scripts/stance_archetypes.py`` with the random control only (no backend, no model load beyond
    the persona embedder): a row per arm and reference, the results file, the held-out thread count."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location(
        "stance_archetypes_script", Path(__file__).resolve().parents[2] / "scripts" / "stance_archetypes.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    data = _write_threads(tmp_path / "posts.csv")
    out = tmp_path / "out"
    assert script.main(["--data", str(data), "--backends", "random", "--k", "3", "--agents", "24", "--steps", "1",
                        "--extra-steps", "1", "--draws", "10", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| no archetypes |" in printed and "| random |" in printed and "| train_bin |" in printed
    saved = json.loads((out / "results.json").read_text())
    assert [r["arm"] for r in saved["rows"]][:2] == [sa.BASELINE, "random"]
    assert saved["test"]["threads"] == len(_test_index(30)) > 0


def _test_index(threads: int) -> list[int]:
    from lpm.calibration.common import split_index

    return split_index([str(1000 + t) for t in range(threads)], "test")
