"""load_rumoureval: parsing, vocabularies, stance shares by hand, malformed input, the real posts."""

from __future__ import annotations

import math

import pytest
import torch

from lpm.data import STANCES, VERACITIES, load_rumoureval
from lpm.errors import ConfigError, DataFormatError

HEADER = "thread_id,veracity,post_id,parent_id,depth,time_utc_snowflake,stance,delay_min"
ROWS = [
    HEADER,
    "20,false,20,,0,1000.0,support,0.0",
    "20,false,21,20,1,1030.0,deny,0.5",
    "20,false,22,21,2,1060.0,query,1.0",
    "20,false,23,20,1,8200.0,comment,120.0",
    "10,true,10,,0,500.0,support,0.0",
    "10,true,11,10,1,530.0,support,0.5",
    "10,true,12,10,1,7700.0,,120.0",       # unannotated
    "10,true,13,10,1,9000.0,deny,2000.0",  # beyond 24 h
]


def write(tmp_path, rows):
    path = tmp_path / "posts.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_parses_posts(tmp_path):
    posts = load_rumoureval(write(tmp_path, ROWS))
    assert list(posts.thread_ids) == ["10", "20"] and posts.num_threads == 2
    assert posts.veracity.tolist() == [VERACITIES.index("true"), VERACITIES.index("false")]
    assert posts.thread.tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    assert posts.post_id.tolist() == [20, 21, 22, 23, 10, 11, 12, 13]
    assert posts.parent_id.tolist() == [-1, 20, 21, 20, -1, 10, 10, 10]
    assert posts.depth.tolist() == [0, 1, 2, 1, 0, 1, 1, 1]
    assert posts.stance.tolist() == [0, 1, 2, 3, 0, 0, -1, 1]
    assert STANCES == ("support", "deny", "query", "comment")
    assert posts.delay_min.dtype == posts.time_utc.dtype == torch.float64
    assert posts.time_utc[3].item() == 8200.0
    assert (posts.report.rows, posts.report.malformed) == (8, 0)
    assert "posts=8" in repr(posts)


def test_stance_shares_by_hand(tmp_path):
    posts = load_rumoureval(write(tmp_path, ROWS))
    bins = [0.0, 1.0, 24.0, math.inf]
    counts = posts.counts(bins)
    # replies only (depth > 0), annotated only: 21 deny, 22 query, 11 support in [0, 1) h; 23 comment in [1, 24) h;
    # 13 deny after 24 h
    assert counts["all"].tolist() == [[1, 1, 1, 0], [0, 0, 0, 1], [0, 1, 0, 0]]
    assert counts["false"].tolist() == [[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]]
    assert counts["true"].tolist() == [[1, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0]]
    assert counts["unverified"].sum() == 0
    shares = posts.shares(bins)
    assert torch.allclose(shares["all"][0], torch.full((4,), 1 / 3, dtype=torch.float64).index_fill(0, torch.tensor([3]), 0))
    assert torch.isnan(shares["false"][2]).all() and torch.isnan(shares["unverified"]).all()
    assert set(posts.shares(bins, by_veracity=False)) == {"all"}
    assert posts.shares([0.0, 1.0])["all"].shape == (1, 4)
    with pytest.raises(ConfigError):
        posts.shares([1.0, 1.0])
    with pytest.raises(ConfigError):
        posts.shares([0.0])


@pytest.mark.parametrize("bad, message", [
    ("20,false,24,20,1,1.0,agree,3.0", "stance"),
    ("20,mostly,24,20,1,1.0,deny,3.0", "veracity"),
    ("20,true,24,20,1,1.0,deny,3.0", "one veracity per thread"),
    ("20,false,24x,20,1,1.0,deny,3.0", "integer ids"),
    ("20,false,24,20,1,1.0,deny", "8 fields"),
    ("20,false,24,20,-1,1.0,deny,3.0", "depth >= 0"),
    ("20,false,24,20,1,1.0,deny,-3.0", "delay_min >= 0"),
])
def test_malformed_rows(tmp_path, bad, message):
    path = write(tmp_path, ROWS[:3] + [bad] + ROWS[3:])
    with pytest.raises(DataFormatError, match=rf"posts\.csv, line 4: Expected .*{message}"):
        load_rumoureval(path)
    posts = load_rumoureval(path, errors="skip")
    assert posts.report.malformed == 1 and posts.report.malformed_examples[0][1] == 4
    assert posts.post_id.numel() == 8


def test_header_and_arguments(tmp_path):
    with pytest.raises(DataFormatError, match="columns"):
        load_rumoureval(write(tmp_path, ["thread_id,post_id"] + ROWS[1:]))
    with pytest.raises(DataFormatError, match="readable"):
        load_rumoureval(tmp_path / "missing.csv")
    with pytest.raises(ConfigError):
        load_rumoureval(write(tmp_path, ROWS), errors="warn")


def test_real_posts(shared_data):
    path = shared_data / "rumoureval2017" / "posts.csv"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    posts = load_rumoureval(path)
    assert posts.post_id.numel() == 4860 and posts.report.malformed == 0
    # README says ~270 threads; the file has 297 (272 train + 25 dev threads of RumourEval 2017)
    assert posts.num_threads == 297
    # 341 posts carry no stance annotation (4,519 annotated, the task's train + dev size)
    assert int((posts.stance < 0).sum()) == 341
    shares = posts.shares([0.0, 1.0, 24.0, math.inf])
    support = shares["all"][:, STANCES.index("support")]
    # README: support ~15% of replies in the first hour, ~6% after 24 h. Measured over annotated
    # replies: 16.1% of 3,105 (s.e. 0.7 pp) and 6.3% of 95 (s.e. 2.5 pp)
    assert abs(float(support[0]) - 0.15) < 0.02
    assert abs(float(support[2]) - 0.06) < 0.02
    assert float(support[0]) > float(support[1]) > float(support[2])
    # README: replies to false rumours carry about twice the deny share of true ones (measured 12.1% vs 6.3%)
    overall = posts.shares([0.0, math.inf])
    deny = STANCES.index("deny")
    ratio = float(overall["false"][0, deny] / overall["true"][0, deny])
    assert 1.6 < ratio < 2.4
