"""Metrics of a fitted sentiment model against observed events, and :func:`evaluate`."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence

import torch

from lpm.calibration.common import config_from_meta, load_params
from lpm.calibration.sentiment_data import _select, forecast_split, load_events
from lpm.calibration.sentiment_model import KIND, SentimentConfig, SentimentModel
from lpm.errors import DataFormatError
from lpm.targets_series import SeriesTargets, mae, nrmse, pearson


def _config_from(meta: Mapping[str, object]) -> SentimentConfig:
    return config_from_meta(meta, SentimentConfig)


def metrics(sim: SeriesTargets, observed: Mapping[str, SeriesTargets]) -> dict[str, float]:
    """``pearson_volume``, ``mae_negative_share`` and ``nrmse_volume``: means over events, and per
    event under ``<metric>/<event>``.

    Shapes: ``sim`` fields ``(D,)`` (one prediction for every event) or ``(E, D)`` (row ``e`` for the
    ``e``-th event of ``observed``, in its order); each observed field ``(D,)``.
    """
    names = list(observed)
    if sim.volume.dim() == 2 and sim.volume.size(0) != len(names):
        raise DataFormatError(f"Expected one simulated row per event ({len(names)}) (got {sim.volume.size(0)})")
    out: dict[str, float] = {}
    for i, name in enumerate(names):
        obs = observed[name]
        vol, neg = (sim.volume[i], sim.negative_share[i]) if sim.volume.dim() == 2 else (sim.volume, sim.negative_share)
        out[f"pearson_volume/{name}"] = float(pearson(vol.double(), obs.volume.double()))
        out[f"nrmse_volume/{name}"] = float(nrmse(vol.double(), obs.volume.double()))
        out[f"mae_negative_share/{name}"] = float(mae(neg.double(), obs.negative_share.double()))
    for metric in ("pearson_volume", "nrmse_volume", "mae_negative_share"):
        values = [out[f"{metric}/{name}"] for name in names]
        out[metric] = float(sum(values) / len(values))
    return out


def _prepare(params: Path, data: list[Path], split: str, device: str, seed: int,
             only: Optional[Sequence[str]] = None):
    """Fitted model, config, meta, loaded events and the forecast split of the ``split`` events
    (or of the events named in ``only``)."""
    values, meta = load_params(params, KIND)
    config = _config_from(meta)
    events = load_events(data)
    names = _select(events, split) if only is None else list(only)
    unknown = sorted(set(names) - set(events))
    if unknown:
        raise DataFormatError(f"Expected events among {sorted(events)} (got {unknown})")
    pairs = {name: forecast_split(events[name], config) for name in names}
    model = SentimentModel(config, values, seed=int(meta.get("seed", seed))).to(device)
    return model, config, meta, events, pairs


def evaluate(params: Path, data: list[Path], *, device: str = "cpu", seed: int = 0, split: str = "all") -> dict[str, float]:
    """Simulate the fitted model once and compare it with every event of ``split`` in ``data``.

    The negative share is forecast: each event's label level is conditioned on its first
    ``observe_days`` valid days (from the fitted file's config) and only later days are scored.

    Returns:
        ``pearson_volume`` (mean Pearson correlation of the normalised daily volume),
        ``mae_negative_share`` (mean absolute error of the daily negative share, scored days with at
        least ``min_posts`` posts), ``nrmse_volume``, each also per event as ``<metric>/<event>``.
    """
    model, _, _, _, pairs = _prepare(params, data, split, device, seed)
    evidence = torch.stack([pair[0] for pair in pairs.values()])
    with torch.no_grad():
        sim = model.simulate_targets(seed, evidence=evidence)
    return metrics(sim, {name: pair[1] for name, pair in pairs.items()})
