"""RumourEval replies as the fit's targets: stance counts per veracity, time bin and stance."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from lpm.calibration.common import split_index
from lpm.calibration.stance_model import StanceConfig, VERACITIES
from lpm.errors import DataFormatError
from lpm.targets_series import STANCES, binned_counts


def load_posts(data: Sequence[Path | str]):
    """The RumourEval posts of ``data`` (one ``posts.csv`` file, or a folder holding one)."""
    from lpm.data.rumoureval import load_rumoureval

    if len(data) != 1:
        raise DataFormatError(f"Expected one RumourEval posts.csv (or its folder) (got {len(data)} paths)")
    path = Path(data[0])
    if path.is_dir():
        path = path / "posts.csv"
    return load_rumoureval(path)


def observed_counts(posts, config: StanceConfig, split: str = "all") -> tuple[Tensor, int]:
    """Observed replies per veracity, time bin and stance for the threads of ``split``.

    Only annotated replies count: sources (depth 0) and posts without a stance label are left out,
    and so are replies after the last bin edge.

    Args:
        posts: a :class:`lpm.data.rumoureval.StancePosts`.

    Returns:
        ``(counts (3, K, 4) float64, number of threads in the split)``.
    """
    from lpm.data.rumoureval import STANCES as DATA_STANCES, VERACITIES as DATA_VERACITIES

    if tuple(DATA_STANCES) != STANCES or tuple(DATA_VERACITIES) != VERACITIES:
        raise DataFormatError(f"Expected stance and veracity codes {STANCES}, {VERACITIES} "
                              f"(got {DATA_STANCES}, {DATA_VERACITIES})")
    threads = [str(t) for t in posts.thread_ids]
    keep = torch.zeros(len(threads), dtype=torch.bool)
    keep[split_index(threads, split)] = True
    chosen = keep[posts.thread] & (posts.depth > 0) & (posts.stance >= 0)
    onehot = torch.nn.functional.one_hot(posts.stance[chosen], len(STANCES)).double()
    veracity = posts.veracity[posts.thread[chosen]]
    delay_h = posts.delay_min[chosen].double() / 60.0
    counts = binned_counts(delay_h, onehot, config.edges_h, groups=veracity, num_groups=len(VERACITIES))
    return counts, int(keep.sum())
