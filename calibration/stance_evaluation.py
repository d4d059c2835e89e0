"""Metrics of fitted stance shares against observed replies, and :func:`evaluate`."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor

from lpm.calibration.common import config_from_meta, load_params
from lpm.calibration.stance_data import load_posts, observed_counts
from lpm.calibration.stance_model import KIND, MEMORY, StanceConfig, StanceModel, VERACITIES
from lpm.targets_series import stance_kl, stance_mae, stance_shares


def _config_from(meta: Mapping[str, object]) -> StanceConfig:
    return config_from_meta(meta, StanceConfig, {"edges_h": tuple})


def metrics(sim_shares: Tensor, obs_counts: Tensor) -> dict[str, float]:
    """``mae_stance``: mean absolute error of the four stance shares, averaged over stances and the
    non-empty (veracity, bin) cells; ``mae_stance/<veracity>`` within each veracity; ``kl_stance``:
    the count-weighted KL of the loss.

    Shapes: ``(3, K, 4)`` both.
    """
    sim, obs = sim_shares.double(), obs_counts.double()
    out = {"kl_stance": float(stance_kl(sim, obs))}
    filled = obs.sum(-1) > 0  # (3, K)
    err = (sim - torch.nan_to_num(stance_shares(obs))).abs().mean(-1)  # (3, K)
    out["mae_stance"] = float(err[filled].mean()) if bool(filled.any()) else float("nan")
    per = stance_mae(sim, obs)
    for i, name in enumerate(VERACITIES):
        out[f"mae_stance/{name}"] = float(per[i]) if bool(filled[i].any()) else float("nan")
    return out


def evaluate(params: Path, data: list[Path], *, device: str = "cpu", seed: int = 0, split: str = "all") -> dict[str, float]:
    """Simulate the fitted model and compare its stance shares with the threads of ``split``.

    Returns:
        ``mae_stance``, ``mae_stance/<veracity>`` and ``kl_stance`` (see :func:`metrics`).
    """
    values, meta = load_params(params, KIND)
    values.pop(MEMORY, None)  # pooled shares of all replies: nothing to condition the memory on
    config = _config_from(meta)
    posts = load_posts(data)
    counts, _ = observed_counts(posts, config, split)
    model = StanceModel(config, values, seed=int(meta.get("seed", seed))).to(device)
    with torch.no_grad():
        sim = model.simulate_counts(seed)
    return metrics(stance_shares(sim).cpu(), counts)
