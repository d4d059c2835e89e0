"""Daily tweet volume and negative share around natural disasters (Meng & Dong 2020, arXiv:2004.14456).

One CSV per event, ``num,datetime,label``: a row id, the post's time at minute resolution
(``YYYY-MM-DD HH:MM[:SS]``, time zone unstated, so day boundaries are those of the file's clock)
and a binary label. The label's polarity is undocumented; a keyword check on the original text
gives ``1 ~ negative`` (precision 0.91 on tweets with negative words), so ``label == 1`` is read
as negative here. The posts were collected by keyword queries: a topic-filtered stream, not a
population sample.

:func:`load_disaster` aggregates one file into a :class:`DisasterSeries` on a gap-free daily grid
from the first to the last day with posts; exact duplicate rows (present in the Matthew file) are
dropped and counted in a :class:`RowReport`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch
from torch import Tensor

from lpm.data.report import MalformedLog, check_errors
from lpm.errors import ConfigError, DataFormatError

__all__ = ["RowReport", "DisasterSeries", "load_disaster", "load_disaster_events"]

PathLike = Union[str, "os.PathLike[str]"]

_HEADER = "num,datetime,label"
_ROW = re.compile(r"(\d+),(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}(?::\d{2})?),([01])")


@dataclass
class RowReport(MalformedLog):
    """What a row-per-line loader read and dropped.

    ``rows`` counts the non-blank data lines read (header excluded), ``duplicates`` the exact
    repeats dropped, ``malformed`` the bad lines skipped with ``errors="skip"``;
    ``malformed_examples`` keeps the first few ``(file, line_no, text)`` (line numbers from 1).
    """

    files: int = 0
    rows: int = 0
    duplicates: int = 0

    def summary(self) -> str:
        """One line per counter, then the malformed examples."""
        out = [f"{name}: {getattr(self, name):,}" for name in ("files", "rows", "duplicates", "malformed")]
        out += self._example_lines()
        return "\n".join(out)




@dataclass(frozen=True, eq=False)
class DisasterSeries:
    """One event's posts and their daily aggregates.

    Shapes:
        day: ``(D,)`` numpy ``datetime64[D]``, every day from the first to the last with posts.
        volume: ``(D,)`` float64 posts per day (0 on days without posts).
        negative_share: ``(D,)`` float64 share of the day's posts with ``label == 1`` (read as
            negative), NaN on days without posts.
        time: ``(P,)`` numpy ``datetime64[s]`` each post's time (duplicates dropped, file order).
        label: ``(P,)`` int64 each post's label (1 ~ negative).
    """

    event: str
    day: np.ndarray
    volume: Tensor
    negative_share: Tensor
    time: np.ndarray
    label: Tensor
    report: RowReport

    @property
    def peak_index(self) -> int:
        """Index of the day with the most posts (the first such day on ties)."""
        return int(torch.argmax(self.volume)) if self.volume.numel() else -1

    @property
    def peak_day(self) -> np.datetime64:
        return self.day[self.peak_index]

    def aligned(self, days_before: int, days_after: int) -> tuple[Tensor, Tensor]:
        """``(volume, negative_share)`` from ``days_before`` days before the peak-volume day to
        ``days_after`` days after it, NaN outside the data.

        Returns:
            Two ``(days_before + 1 + days_after,)`` float64 tensors; index ``days_before`` is the peak.
        """
        if days_before < 0 or days_after < 0:
            raise ConfigError(f"Expected days_before, days_after >= 0 (got {days_before}, {days_after})")
        width = days_before + 1 + days_after
        out = torch.full((2, width), float("nan"), dtype=torch.float64)
        first = self.peak_index - days_before
        lo, hi = max(first, 0), min(first + width, self.volume.numel())
        if hi > lo:
            out[0, lo - first: hi - first] = self.volume[lo:hi]
            out[1, lo - first: hi - first] = self.negative_share[lo:hi]
        return out[0], out[1]

    def __repr__(self) -> str:
        if not self.volume.numel():
            return f"DisasterSeries({self.event!r}, no posts)"
        return (f"DisasterSeries({self.event!r}, posts={self.label.numel()}, days={self.day[0]}..{self.day[-1]}, "
                f"peak={self.peak_day} ({int(self.volume[self.peak_index])} posts))")


def load_disaster(path: PathLike, *, errors: str = "raise", event: str | None = None) -> DisasterSeries:
    """Load one natural-hazards CSV (``num,datetime,label``) into daily series.

    Args:
        path: the CSV file.
        errors: ``"raise"`` on the first malformed line, or ``"skip"`` to drop and count it.
        event: the event's name; default the file stem (e.g. ``"2012Sandy"``).

    Returns:
        The :class:`DisasterSeries`; ``series.report`` counts rows, duplicates and malformed lines.

    Raises:
        DataFormatError: an unreadable file, a wrong header, or (with ``errors="raise"``) a
            malformed line, naming the file and line number.
    """
    check_errors(errors)
    name = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise DataFormatError(f"Expected a readable UTF-8 CSV file at {name!r} (got {err})") from err
    lines = text.splitlines()
    if not lines or lines[0].strip() != _HEADER:
        found = lines[0].strip() if lines else "an empty file"
        raise DataFormatError(f"{name}, line 1: Expected the header {_HEADER!r} (got {found!r})")
    report = RowReport(files=1)
    seen: set[str] = set()
    times: list[str] = []
    labels: list[int] = []
    for line_no, line in enumerate(lines[1:], 2):
        line = line.strip()
        if not line:
            continue
        report.rows += 1
        if line in seen:
            report.duplicates += 1
            continue
        match = _ROW.fullmatch(line)
        if match is None:
            report._bad(errors, name, line_no, line, "'num,YYYY-MM-DD HH:MM[:SS],label' with label 0 or 1")
            continue
        _, date, clock, label = match.groups()
        try:
            stamp = np.datetime64(f"{date}T{clock}", "s")
        except ValueError:
            report._bad(errors, name, line_no, line, "a valid calendar date and time")
            continue
        seen.add(line)
        times.append(stamp)
        labels.append(int(label))

    time = np.array(times, dtype="datetime64[s]")
    label_t = torch.tensor(labels, dtype=torch.int64)
    if time.size:
        days = time.astype("datetime64[D]")
        first = days.min()
        index = torch.from_numpy((days - first).astype(np.int64))
        num_days = int(index.max()) + 1
        day = first + np.arange(num_days)
        volume = torch.bincount(index, minlength=num_days).to(torch.float64)
        negative = torch.bincount(index, weights=label_t.to(torch.float64), minlength=num_days)
        negative_share = torch.where(volume > 0, negative / volume.clamp_min(1), torch.full_like(volume, float("nan")))
    else:
        day = np.array([], dtype="datetime64[D]")
        volume = negative_share = torch.zeros(0, dtype=torch.float64)
    return DisasterSeries(event if event is not None else Path(path).stem, day, volume, negative_share, time,
                          label_t, report)


def load_disaster_events(folder: PathLike, *, errors: str = "raise") -> list[DisasterSeries]:
    """Every ``*.csv`` in ``folder``, sorted by file name, loaded with :func:`load_disaster`."""
    check_errors(errors)
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFormatError(f"Expected a folder of natural-hazards CSV files at {os.fspath(folder)!r} (got none)")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".csv" and p.is_file())
    if not files:
        raise DataFormatError(f"Expected *.csv files in {os.fspath(folder)!r} (got none)")
    return [load_disaster(p, errors=errors) for p in files]
