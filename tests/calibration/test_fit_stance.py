"""Stance calibration: planted-parameter recovery, exact loss gradients, resume, metrics, CSV end to end."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from lpm.calibration import fit_stance as fst
from lpm.calibration.common import fit, load_params
from lpm.errors import ConfigError, DataFormatError
from lpm.targets_series import stance_shares
from tests.helpers import assert_gradients_match_finite_differences

TRUTH = {"support_bias": -1.5, "deny_bias": -2.5, "query_bias": -2.0, "belief_slope": 1.5, "arousal_slope": 1.5,
         "arousal_decay": 0.3, "coupling": 0.3, "initial_belief": 0.3, "evidence_rate_true": 0.15,
         "evidence_rate_false": 0.25, "evidence_rate_unverified": 0.08}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # these tensors are tiny: on a shared 2-core machine, intra-op threads cost more than they give
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _planted_counts(config: fst.StanceConfig, replies: float = 10_000.0) -> torch.Tensor:
    with torch.no_grad():
        return stance_shares(fst.StanceModel(config, TRUTH).simulate_counts()) * replies


def test_recovers_planted_parameters():
    """Every parameter but ``coupling`` comes back within 10% from a start 20% off.

    ``coupling`` stays at its planted value: arousal contagion redistributes arousal over the graph
    but barely changes its mean, which is what the pooled shares see.
    """
    config = fst.StanceConfig(agents=40, dt=0.5, edges_h=(0, 0.5, 1, 2, 4, 8, 16))
    init = {k: v * (1.2 if i % 2 else 0.8) for i, (k, v) in enumerate(TRUTH.items())}
    init["coupling"] = TRUTH["coupling"]
    learn = [k for k in fst.LEARNABLE if k != "coupling"]
    module = fst.StanceCalibration(_planted_counts(config), config, init=init, learn=learn, learning_rate=0.1)
    result = fit(module, kind="stance", max_steps=70, logger="none", progress=False)
    fitted = module.fitted_params()
    assert result["loss"] < 1e-3
    for name in learn:
        assert fitted[name] == pytest.approx(TRUTH[name], rel=0.1), (name, fitted[name])
    assert fitted["coupling"] == pytest.approx(TRUTH["coupling"], rel=1e-6)  # not fitted


def test_loss_gradient_matches_finite_differences():
    config = fst.StanceConfig(agents=10, dt=1.0, edges_h=(0, 1, 2, 4))
    counts = _planted_counts(config, 100.0)
    counts = counts * torch.tensor([1.0, 1.3, 0.7, 1.0])  # distorted, so the loss is away from zero
    init = {k: v * 1.1 for k, v in TRUTH.items()}
    module = fst.StanceCalibration(counts, config, init=init).double()
    view = nn.Module()
    seen: set[int] = set()
    for name, param in module.sim.raw_parameters().items():
        if id(param) not in seen:  # the biases and the evidence rates are one tensor each
            seen.add(id(param))
            view.register_parameter(name, param)
    checked = assert_gradients_match_finite_differences(view, lambda: module.loss())
    assert checked == len(fst.LEARNABLE)


def test_resume_equals_an_uninterrupted_fit(tmp_path: Path):
    config = fst.StanceConfig(agents=16, dt=1.0, edges_h=(0, 1, 2, 4, 8))
    counts = _planted_counts(config, 500.0)

    def module():
        return fst.StanceCalibration(counts, config, seed=2)

    straight = module()
    fit(straight, kind="stance", max_steps=20, work_dir=tmp_path / "straight", logger="none", progress=False)
    first = module()
    fit(first, kind="stance", max_steps=10, work_dir=tmp_path / "split", logger="none", progress=False)
    resumed = module()
    result = fit(resumed, kind="stance", max_steps=20, work_dir=tmp_path / "split", resume=True, logger="none",
                 progress=False)
    assert result["steps"] == 20
    expected, got = straight.fitted_params(), resumed.fitted_params()
    assert first.fitted_params() != expected
    for name in fst.LEARNABLE:
        assert got[name] == pytest.approx(expected[name], rel=1e-5, abs=1e-7), name


def test_metrics_hand_computed():
    obs = torch.zeros(3, 2, 4, dtype=torch.float64)
    obs[0, 0] = torch.tensor([1.0, 0.0, 0.0, 3.0])  # true, bin 0: shares (.25, 0, 0, .75); bin 1 empty
    obs[1, 0] = torch.tensor([0.0, 2.0, 0.0, 2.0])  # false: (0, .5, 0, .5) and (0, 0, .5, .5)
    obs[1, 1] = torch.tensor([0.0, 0.0, 1.0, 1.0])  # unverified: no replies at all
    sim = torch.full((3, 2, 4), 0.25, dtype=torch.float64)
    sim[0, 0] = torch.tensor([0.25, 0.25, 0.0, 0.5])
    sim[1, 0] = torch.tensor([0.0, 0.5, 0.0, 0.5])
    sim[1, 1] = torch.tensor([0.1, 0.1, 0.3, 0.5])
    out = fst.metrics(sim, obs)
    assert out["mae_stance/true"] == pytest.approx(0.125)  # (0 + .25 + 0 + .25) / 4
    assert out["mae_stance/false"] == pytest.approx(0.05)  # (0 + (.1 + .1 + .2 + 0) / 4) / 2
    assert math.isnan(out["mae_stance/unverified"])
    assert out["mae_stance"] == pytest.approx((0.125 + 0.0 + 0.1) / 3)  # over the three non-empty cells
    assert out["kl_stance"] == pytest.approx((3 * math.log(1.5) + math.log(0.5 / 0.3)) / 10)


def _write_posts(path: Path, threads: int = 12) -> Path:
    lines = ["thread_id,veracity,post_id,parent_id,depth,time_utc_snowflake,stance,delay_min"]
    stances = ("support", "comment", "deny", "comment", "query", "comment")
    delays = (2.0, 10.0, 45.0, 150.0, 600.0, 20.0)
    for t in range(threads):
        thread, veracity = 1000 + t, ("true", "false", "unverified")[t % 3]
        lines.append(f"{thread},{veracity},{thread},,0,1400000000.0,support,0.0")
        for k, (stance, delay) in enumerate(zip(stances, delays)):
            post = thread * 100 + k
            label = "" if (k == 5 and t == 0) else stance  # one unannotated reply
            lines.append(f"{thread},{veracity},{post},{thread},1,{1400000000.0 + 60 * delay},{label},{delay}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_calibrate_and_evaluate_on_a_posts_file(tmp_path: Path):
    posts = _write_posts(tmp_path / "posts.csv")
    config = fst.StanceConfig(agents=12, dt=0.5, edges_h=(0, 0.5, 1, 4, 8), observe_replies=2)  # 5 replies a thread
    out = tmp_path / "fitted.json"
    result = fst.calibrate([posts], out, max_steps=2, split="train", logger="none", progress=False, config=config,
                           work_dir=tmp_path / "work")
    params, meta = load_params(out, "stance")
    assert set(params) == set(fst.LEARNABLE) | {fst.MEMORY} and result["steps"] == 2
    assert meta["threads"] == 11 and meta["config"]["edges_h"] == [0.0, 0.5, 1.0, 4.0, 8.0]  # thread 1001 held out
    counts, threads = fst.observed_counts(fst.load_posts([tmp_path]), config, "all")
    # 12 threads x 5 replies inside 8 h, less the unannotated one; the 600-min reply is past the last edge
    assert threads == 12 and float(counts.sum()) == 12 * 5 - 1
    metrics = fst.evaluate(out, [tmp_path], split="test")
    assert set(metrics) == {"mae_stance", "kl_stance", "mae_stance/true", "mae_stance/false", "mae_stance/unverified"}
    assert math.isfinite(metrics["mae_stance"]) and math.isfinite(metrics["mae_stance/false"])
    assert math.isnan(metrics["mae_stance/true"])  # the held-out thread is a false rumour
    sim = stance_shares(fst.StanceModel(config, params).simulate_counts()).detach()
    test_counts, _ = fst.observed_counts(fst.load_posts([posts]), config, "test")
    assert metrics["mae_stance"] == pytest.approx(fst.metrics(sim, test_counts)["mae_stance"], rel=1e-5)


def test_bad_inputs_raise_typed_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match="multiples of dt"):
        fst.StanceConfig(dt=0.4, edges_h=(0, 1))
    with pytest.raises(ConfigError, match="increasing"):
        fst.StanceConfig(edges_h=(0, 1, 1))
    with pytest.raises(ConfigError, match="initial_belief"):
        fst.StanceModel(fst.StanceConfig(agents=4, dt=1.0, edges_h=(0, 1)), {"initial_belief": 1.0})
    with pytest.raises(DataFormatError, match="shape"):
        fst.StanceCalibration(torch.zeros(3, 2, 4), fst.StanceConfig(agents=4, dt=1.0, edges_h=(0, 1)))
    with pytest.raises(DataFormatError, match="one RumourEval"):
        fst.load_posts([tmp_path, tmp_path])


@pytest.mark.data
def test_real_counts_match_the_loader(shared_data: Path):
    config = fst.StanceConfig()
    posts = fst.load_posts([shared_data / "rumoureval2017"])
    counts, threads = fst.observed_counts(posts, config)
    reference = posts.counts(config.edges_h)
    for i, name in enumerate(fst.VERACITIES):
        assert torch.equal(counts[i], reference[name])
    train, held = fst.observed_counts(posts, config, "train"), fst.observed_counts(posts, config, "test")
    assert train[1] + held[1] == threads and torch.equal(train[0] + held[0], counts)


# ---------------------------------------------------------------------------- thread memory and check


def test_thread_memory_gradient_float64():
    base = torch.softmax(torch.randn(3, 2, 4, dtype=torch.float64), -1)
    early = torch.tensor([[2.0, 0, 1, 2], [0, 0, 0, 5], [1, 1, 1, 2]], dtype=torch.float64)
    memory = fst.ThreadMemory(4.0)

    def forecast(raw: torch.Tensor, shares: torch.Tensor) -> torch.Tensor:
        memory.raw_concentration.data = raw.detach()
        c = torch.nn.functional.softplus(raw)
        return (c * shares + early[:, None, :]) / (c + early.sum(-1))[:, None, None]

    raw = memory.raw_concentration.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(forecast, (raw, base.clone().requires_grad_(True)))
    # the module agrees with that closed form, and forecasts are shares
    out = memory(base, early)
    assert torch.allclose(out, forecast(raw.detach(), base)) and torch.allclose(out.sum(-1), torch.ones(3, 2, dtype=torch.float64))
    later = torch.tensor([[[1.0, 0, 0, 3], [0, 1, 0, 0]]]).double().expand(3, 2, 4)
    view = nn.Module()
    view.register_parameter("raw", memory.raw_concentration)
    assert assert_gradients_match_finite_differences(view, lambda: fst.stance_kl(memory(base, early), later)) == 1


def test_thread_memory_recovers_planted_concentration():
    """Threads draw a propensity from Dirichlet(c p); the fit of ``c`` from 5 early and 20 later replies
    per thread comes back within 25% (c = 8, 600 threads), from starts far on either side."""
    truth, threads = 8.0, 600
    base = torch.tensor([[0.15, 0.08, 0.09, 0.68]], dtype=torch.float64)  # one bin
    with torch.random.fork_rng():
        torch.manual_seed(3)
        theta = torch.distributions.Dirichlet(truth * base[0]).sample((threads,))
        early = torch.distributions.Multinomial(5, theta).sample()
        later = torch.distributions.Multinomial(20, theta).sample()[:, None, :]
    replies = fst.ThreadReplies(torch.zeros(threads, dtype=torch.int64), early, later, later.clone())
    for init in (1.0, 100.0):
        fitted = fst.fit_thread_memory(base.expand(threads, 1, 4), replies, init=init)
        assert fitted == pytest.approx(truth, rel=0.25), (init, fitted)
    # no thread effect (every thread has the base shares): the fitted concentration runs off large
    with torch.random.fork_rng():
        torch.manual_seed(4)
        flat = fst.ThreadReplies(torch.zeros(threads, dtype=torch.int64),
                                 torch.distributions.Multinomial(5, base[0]).sample((threads,)),
                                 torch.distributions.Multinomial(20, base[0]).sample((threads,))[:, None, :],
                                 torch.zeros(threads, 1, 4))
    assert fst.fit_thread_memory(base.expand(threads, 1, 4), flat) > 5 * truth


def test_thread_replies_early_and_later(tmp_path: Path):
    config = fst.StanceConfig(agents=4, dt=0.5, edges_h=(0, 0.5, 1, 4, 8), observe_replies=2)
    posts = fst.load_posts([_write_posts(tmp_path / "posts.csv")])
    replies = fst.thread_replies(posts, config, "all")
    # replies by delay: support (2 min), comment (10), comment (20; unannotated in thread 1000),
    # deny (45), comment (150); the 600-min query is past the last edge
    assert torch.equal(replies.early[1], torch.tensor([1.0, 0, 0, 1]))
    assert torch.equal(replies.later[1], torch.tensor([[0.0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]]))
    assert torch.equal(replies.early[0], torch.tensor([1.0, 0, 0, 1]))  # its unannotated reply is skipped
    assert float(replies.later[0].sum()) == 2
    counts, _ = fst.observed_counts(posts, config, "all")
    assert torch.equal(replies.pooled(replies.every), counts)
    assert torch.equal(replies.every.sum(1), replies.early + replies.later.sum(1))
    with pytest.raises(ConfigError, match="observe_replies"):
        fst.StanceConfig(observe_replies=-1)


def _write_threads(path: Path, stances_of, threads: int = 20) -> Path:
    """Threads 1000.. with veracity cycling true/false/unverified; ``stances_of(t, veracity)`` gives
    each thread's replies as ``[(stance, delay_min)]``."""
    lines = ["thread_id,veracity,post_id,parent_id,depth,time_utc_snowflake,stance,delay_min"]
    for t in range(threads):
        thread, veracity = 1000 + t, fst.VERACITIES[t % 3]
        lines.append(f"{thread},{veracity},{thread},,0,1400000000.0,support,0.0")
        for k, (stance, delay) in enumerate(stances_of(t, veracity)):
            lines.append(f"{thread},{veracity},{thread * 100 + k},{thread},1,{1400000000.0 + 60 * delay},{stance},{delay}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _test_threads(threads: int = 20) -> list[int]:
    from lpm.calibration.common import split_index

    return [i for i in split_index([str(1000 + t) for t in range(threads)], "test")]


def test_check_references_hand_computed(tmp_path: Path):
    """Replies: a veracity-specific first reply then a comment (bin 0), two denies (bin 1). Per
    (veracity, bin), test shares equal the training shares (0 error); pooled per bin, bin 0 is the
    training threads' veracity mix; one share vector misses both bins."""
    first = {"true": "support", "false": "deny", "unverified": "query"}
    posts = _write_threads(tmp_path / "posts.csv",
                           lambda t, v: [(first[v], 1.0), ("comment", 2.0), ("deny", 40.0), ("deny", 50.0)])
    test = _test_threads()
    assert len(test) >= 2 and len({t % 3 for t in test}) >= 2  # the split is deterministic in the ids
    config = fst.StanceConfig(agents=8, dt=0.5, edges_h=(0, 0.5, 1, 4), observe_replies=1)
    out = tmp_path / "fitted.json"
    fst.calibrate([posts], out, max_steps=1, split="train", logger="none", progress=False, config=config,
                  work_dir=tmp_path / "work")
    params, _ = load_params(out, "stance")
    assert fst.MEMORY in params and params[fst.MEMORY] > 0
    report = fst.check(out, [posts], split="test")
    assert list(report.rows) == list(fst.CHECK_METRICS)
    for row in report.rows.values():
        assert set(row) == {"model", "model_noise", "train_veracity_bin", "train_bin", "train_constant", "reference_noise"}
    train = [t for t in range(20) if t not in test]
    n = [sum(1 for t in train if t % 3 == v) for v in range(3)]
    bin0 = torch.tensor([n[0], n[1], n[2], sum(n)], dtype=torch.float64) / (2 * sum(n))  # pooled training bin 0
    constant = torch.tensor([n[0], n[1] + 2 * sum(n), n[2], sum(n)], dtype=torch.float64) / (4 * sum(n))
    cells_bin0 = {t % 3 for t in test}
    err_bin0 = {v: float((bin0 - torch.tensor([v == 0, v == 1, v == 2, 1.0]).double() / 2).abs().mean()) for v in cells_bin0}
    deny = torch.tensor([0.0, 1, 0, 0], dtype=torch.float64)
    err_constant = {v: float((constant - torch.tensor([v == 0, v == 1, v == 2, 1.0]).double() / 2).abs().mean())
                    for v in cells_bin0}
    mae = report.rows["mae_stance"]
    assert mae["train_veracity_bin"] == pytest.approx(0.0, abs=1e-12)
    assert mae["train_bin"] == pytest.approx(sum(err_bin0.values()) / (2 * len(cells_bin0)))  # bin 1 cells: 0
    assert mae["train_constant"] == pytest.approx(
        (sum(err_constant.values()) + len(cells_bin0) * float((constant - deny).abs().mean())) / (2 * len(cells_bin0)))
    # later replies (after the first): a comment in bin 0 and two denies in bin 1, in every thread
    later_constant = torch.tensor([0.0, 2, 0, 1], dtype=torch.float64) / 3
    forecast = report.rows["mae_stance_forecast"]
    assert forecast["train_veracity_bin"] == pytest.approx(0.0, abs=1e-12)
    assert forecast["train_bin"] == pytest.approx(0.0, abs=1e-12)
    assert forecast["train_constant"] == pytest.approx(
        0.5 * float((later_constant - torch.tensor([0.0, 0, 0, 1])).abs().mean() + (later_constant - deny).abs().mean()))
    assert report.rows["mae_stance_thread"]["train_constant"] == pytest.approx(float(
        (later_constant * 3 - torch.tensor([0.0, 2, 0, 1])).abs().sum() / 4 / 3))
    assert mae["model_noise"] == 0.0 and mae["reference_noise"] == pytest.approx(0.0, abs=1e-12)
    assert mae["model"] > 0.01 and report.verdict("mae_stance") == "worse"  # an unfitted model vs exact references
    assert set(report.figures) == {"shares", "forecast"}
    assert report.meta["noise_floor"]["mae_stance_forecast"] == pytest.approx(0.0, abs=1e-12)  # one-hot shares


def test_check_thread_memory_beats_references_on_persistent_threads(tmp_path: Path):
    """Each thread repeats one stance (cycling over threads, independently of veracity): no constant
    share can predict a thread, the thread memory can from its first reply."""
    posts = _write_threads(tmp_path / "posts.csv", lambda t, v: [(fst.STANCES[(t // 3) % 4], d) for d in (1, 2, 40, 50)],
                           threads=40)
    config = fst.StanceConfig(agents=8, dt=0.5, edges_h=(0, 0.5, 1, 4), observe_replies=1)
    out = tmp_path / "fitted.json"
    fst.calibrate([posts], out, max_steps=1, split="train", logger="none", progress=False, config=config,
                  work_dir=tmp_path / "work")
    report = fst.check(out, [posts], split="test")
    row = report.rows["mae_stance_thread"]
    assert load_params(out, "stance")[0][fst.MEMORY] < 0.05  # threads follow their first reply
    assert row["model"] < 0.02 < report.best_reference("mae_stance_thread")[1]
    assert report.verdict("mae_stance_thread") == "better"
    assert report.verdict("kl_stance_thread") == "better"


@pytest.mark.data
def test_real_thread_replies_add_up(shared_data: Path, tmp_path: Path):
    posts = fst.load_posts([shared_data / "rumoureval2017"])
    config = fst.StanceConfig()
    train, test = fst.thread_replies(posts, config, "train"), fst.thread_replies(posts, config, "test")
    counts = fst.observed_counts(posts, config, "all")[0]
    assert torch.equal(train.pooled(train.every) + test.pooled(test.every), counts)
    assert float(test.early.sum(-1).max()) == config.observe_replies
