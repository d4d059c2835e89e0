"""Disaster sentiment series as the fit's targets: events, their daily targets and the forecast split."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import Tensor

from lpm.calibration.common import split_index
from lpm.calibration.sentiment_model import SentimentConfig
from lpm.errors import DataFormatError
from lpm.targets_series import SeriesTargets, sentiment_targets


def _csv_files(data: Sequence[Path | str]) -> list[Path]:
    files: list[Path] = []
    for item in data:
        path = Path(item)
        if path.is_dir():
            found = sorted(path.glob("*.csv"))
            if not found:
                raise DataFormatError(f"Expected event CSV files in {path} (got none)")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise DataFormatError(f"Expected an event CSV file or a folder of them (got {path}, which does not exist)")
    names = [f.stem for f in files]
    if len(set(names)) != len(names):
        raise DataFormatError(f"Expected distinct event names (got {sorted(names)})")
    return files


def load_events(data: Sequence[Path | str]) -> dict[str, object]:
    """``{event name: DisasterSeries}`` for the CSV files (or folders of CSV files) in ``data``."""
    from lpm.data.disaster import load_disaster

    return {f.stem: load_disaster(f) for f in _csv_files(data)}


def observed_targets(series, config: SentimentConfig) -> SeriesTargets:
    """Targets of one observed event (a ``DisasterSeries``) on the config's aligned window."""
    volume, share = series.aligned(config.days_before, config.days_after)
    posts = torch.as_tensor(volume, dtype=torch.float64)
    negative = posts * torch.as_tensor(share, dtype=torch.float64)
    return sentiment_targets(posts, negative, anchor=config.days_before, min_posts=config.min_posts)


def forecast_split(series, config: SentimentConfig) -> tuple[Tensor, SeriesTargets]:
    """Split one observed event into what a forecaster has seen and what it is scored on.

    The observed part is the aligned window up to and including the event's
    ``config.observe_days``-th day with at least ``min_posts`` posts (all its posts, also those of
    thinner earlier days); at most ``valid days - 1`` such days, so at least one day is scored.

    Args:
        series: a ``DisasterSeries``.
        config: the window, ``min_posts`` and ``observe_days``.

    Returns:
        ``(evidence, targets)``: ``evidence`` ``(2,)`` = (posts, negative posts) of the observed
        days (zeros with ``observe_days = 0``); ``targets`` as :func:`observed_targets` with the
        negative share of the observed days set to NaN (volume untouched: it is not conditioned on).

    Raises:
        DataFormatError: the event has no day with at least ``min_posts`` posts in the window.
    """
    targets = observed_targets(series, config)
    volume, share = series.aligned(config.days_before, config.days_after)
    valid = torch.nonzero(torch.isfinite(targets.negative_share)).flatten()
    if valid.numel() == 0:
        raise DataFormatError(f"Expected at least one day with >= {config.min_posts} posts in the window of "
                              f"{getattr(series, 'event', '?')} (got none)")
    seen = min(config.observe_days, valid.numel() - 1)
    stop = int(valid[seen - 1]) + 1 if seen > 0 else 0  # observed days: [0, stop)
    posts = torch.nan_to_num(volume[:stop], nan=0.0)
    negative = torch.nan_to_num(volume[:stop] * share[:stop], nan=0.0)
    evidence = torch.stack([posts.sum(), negative.sum()]).to(torch.float64)
    scored = targets.negative_share.clone()
    scored[:stop] = float("nan")
    return evidence, SeriesTargets(volume=targets.volume, negative_share=scored, posts=targets.posts)


def _select(events: Mapping[str, object], split: str) -> list[str]:
    names = sorted(events)
    keep = [names[i] for i in split_index(names, split)]
    if not keep:
        raise DataFormatError(f"Expected at least one event in split {split!r} of {names} (got none)")
    return keep
