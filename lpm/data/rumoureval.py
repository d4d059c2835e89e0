"""Stance of replies on rumour threads: RumourEval 2017 (SemEval-2017 Task 8, subtask A; Kochkina,
Liakata & Zubiaga; a subset of PHEME; annotations CC-BY 4.0).

``posts.csv`` holds one post per line (train and dev splits) with the columns ``thread_id``,
``veracity`` (true/false/unverified, per thread), ``post_id``, ``parent_id`` (empty for a thread's
source), ``depth`` (0 for the source), ``time_utc_snowflake`` (UTC seconds decoded from the tweet
id), ``stance`` (support/deny/query/comment) and ``delay_min`` (minutes since the thread's source).

Not every post is annotated: the file holds 341 posts with an empty ``stance`` (thread members
outside the task's annotated set, 21 of them with no parent in the data and depth 0). They are
kept with stance code ``-1``; :meth:`StancePosts.shares` leaves them out.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import torch
from torch import Tensor

from lpm.data.disaster import RowReport
from lpm.data.report import check_errors
from lpm.errors import ConfigError, DataFormatError

__all__ = ["STANCES", "VERACITIES", "StancePosts", "load_rumoureval"]

PathLike = Union[str, "os.PathLike[str]"]

STANCES = ("support", "deny", "query", "comment")
VERACITIES = ("true", "false", "unverified")
_COLUMNS = ("thread_id", "veracity", "post_id", "parent_id", "depth", "time_utc_snowflake", "stance", "delay_min")
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True, eq=False)
class StancePosts:
    """``P`` posts in ``M`` threads, in file order.

    Shapes:
        thread_ids: ``M`` source tweet ids (threads sorted numerically by id).
        veracity: ``(M,)`` int64 index into :data:`VERACITIES`.
        thread: ``(P,)`` int64 thread index in ``[0, M)``.
        post_id: ``(P,)`` int64 tweet id.
        parent_id: ``(P,)`` int64 tweet id replied to, ``-1`` for none.
        depth: ``(P,)`` int64 hops from the thread's source (0 for the source).
        time_utc: ``(P,)`` float64 UTC seconds.
        delay_min: ``(P,)`` float64 minutes since the thread's source.
        stance: ``(P,)`` int64 index into :data:`STANCES`, ``-1`` where not annotated.
    """

    thread_ids: Sequence[str]
    veracity: Tensor
    thread: Tensor
    post_id: Tensor
    parent_id: Tensor
    depth: Tensor
    time_utc: Tensor
    delay_min: Tensor
    stance: Tensor
    report: RowReport

    @property
    def num_threads(self) -> int:
        return len(self.thread_ids)

    def counts(self, bins_h: Sequence[float], by_veracity: bool = True) -> dict[str, Tensor]:
        """Annotated replies (depth > 0) per time-since-source bin and stance.

        Args:
            bins_h: ``K + 1`` increasing bin edges in hours; bin ``k`` is ``[bins_h[k], bins_h[k+1])``
                (``inf`` allowed as the last edge); replies outside ``[bins_h[0], bins_h[-1])`` are left out.
            by_veracity: also count per thread veracity.

        Returns:
            ``{"all": (K, 4)}`` float64 counts, columns in :data:`STANCES` order, plus one entry per
            veracity (``"true"``, ``"false"``, ``"unverified"``) when ``by_veracity``.
        """
        edges = torch.as_tensor(list(bins_h), dtype=torch.float64)
        if edges.dim() != 1 or edges.numel() < 2 or bool(torch.isnan(edges).any()) or not bool((edges[1:] > edges[:-1]).all()):
            raise ConfigError(f"Expected at least two increasing bin edges in hours (got {list(bins_h)})")
        num_bins = edges.numel() - 1
        hours = self.delay_min / 60.0
        reply = (self.depth > 0) & (self.stance >= 0) & (hours >= edges[0]) & (hours < edges[-1])
        bin_index = torch.bucketize(hours, edges, right=True) - 1
        groups = {"all": reply}
        if by_veracity:
            post_veracity = self.veracity[self.thread]
            groups.update({name: reply & (post_veracity == v) for v, name in enumerate(VERACITIES)})
        width = len(STANCES)
        out = {}
        for name, mask in groups.items():
            flat = bin_index[mask] * width + self.stance[mask]
            out[name] = torch.bincount(flat, minlength=num_bins * width).to(torch.float64).reshape(num_bins, width)
        return out

    def shares(self, bins_h: Sequence[float], by_veracity: bool = True) -> dict[str, Tensor]:
        """Stance shares of annotated replies per time-since-source bin: :meth:`counts` normalised
        per bin (rows sum to 1; NaN rows for empty bins).

        Returns:
            ``{"all": (K, 4)}`` float64, plus one ``(K, 4)`` entry per veracity when ``by_veracity``.
        """
        out = {}
        for name, count in self.counts(bins_h, by_veracity).items():
            total = count.sum(1, keepdim=True)
            out[name] = torch.where(total > 0, count / total.clamp_min(1), torch.full_like(count, float("nan")))
        return out

    def __repr__(self) -> str:
        return f"StancePosts(posts={self.post_id.numel()}, threads={self.num_threads})"


def _tweet_id(text: str) -> int:
    if not text.isdigit() or int(text) > _INT64_MAX:
        raise ValueError
    return int(text)


def _read_text(path: PathLike, name: str) -> str:
    """The file's text; binary content and invalid UTF-8 are refused naming the line and byte offset,
    so a user can find the bad byte (a replacement character would silently change a post id)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise DataFormatError(f"Expected a readable CSV file at {name!r} (got {err})") from err
    nul = raw.find(b"\x00")
    if nul >= 0:  # no text file has NUL bytes; csv would fail later with a bare "line contains NUL"
        line = raw.count(b"\n", 0, nul) + 1
        raise DataFormatError(f"{name}, line {line}: Expected a UTF-8 CSV text file (got a binary or UTF-16 file: "
                              f"NUL byte at byte offset {nul}, starting {raw[:16]!r})")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        start = err.start + (3 if raw.startswith(b"\xef\xbb\xbf") else 0)  # offsets after the BOM -> in the file
        line = raw.count(b"\n", 0, start) + 1
        raise DataFormatError(f"{name}, line {line}: Expected UTF-8 text (got byte 0x{raw[start]:02x} at byte offset "
                              f"{start}: {err.reason})") from None


def load_rumoureval(path: PathLike, *, errors: str = "raise") -> StancePosts:
    """Load RumourEval 2017 ``posts.csv`` (see the module docstring).

    Args:
        path: the CSV file.
        errors: ``"raise"`` on the first malformed line, or ``"skip"`` to drop and count it.

    Returns:
        The posts; ``posts.report`` counts rows and malformed lines.

    Raises:
        DataFormatError: an unreadable file, missing columns, or (with ``errors="raise"``) a line
            with a bad value: an unknown stance or veracity, a thread whose veracity changes, a
            non-numeric id, depth or time, naming the file and line number.
    """
    check_errors(errors)
    name = os.fspath(path)
    content = _read_text(path, name)
    report = RowReport(files=1)
    rows: list[tuple[int, int, int, int, float, float, int]] = []
    thread_of_row: list[str] = []
    veracity_of: dict[str, int] = {}
    reader = csv.reader(io.StringIO(content, newline=""))
    try:
        header = next(reader, None)
        if header is None or any(c not in header for c in _COLUMNS):
            raise DataFormatError(f"{name}, line 1: Expected the columns {list(_COLUMNS)} (got {header})")
        col = [header.index(c) for c in _COLUMNS]
        for record in reader:
            line_no, text = reader.line_num, ",".join(record)
            if not record or all(not v.strip() for v in record):
                continue
            report.rows += 1
            if len(record) != len(header):
                report._bad(errors, name, line_no, text, f"{len(header)} fields")
                continue
            thread_id, veracity, post_id, parent_id, depth, time_utc, stance, delay = (record[i].strip() for i in col)
            if veracity not in VERACITIES:
                report._bad(errors, name, line_no, text, f"veracity in {VERACITIES}")
                continue
            if stance and stance not in STANCES:
                report._bad(errors, name, line_no, text, f"stance in {STANCES} or empty")
                continue
            try:
                values = (_tweet_id(post_id), _tweet_id(parent_id) if parent_id else -1, int(depth),
                          float(time_utc), float(delay))
                _tweet_id(thread_id)
            except ValueError:
                report._bad(errors, name, line_no, text, "integer ids and depth, numeric time_utc_snowflake and delay_min")
                continue
            if values[2] < 0 or not math.isfinite(values[3]) or not (math.isfinite(values[4]) and values[4] >= 0):
                report._bad(errors, name, line_no, text, "depth >= 0, finite time and delay_min >= 0")
                continue
            code = VERACITIES.index(veracity)
            if veracity_of.setdefault(thread_id, code) != code:
                report._bad(errors, name, line_no, text,
                            f"one veracity per thread (thread {thread_id} is {VERACITIES[veracity_of[thread_id]]!r})")
                continue
            rows.append((*values, STANCES.index(stance) if stance else -1))
            thread_of_row.append(thread_id)
    except csv.Error as err:  # an unterminated quote at the end, a field over csv's size limit
        raise DataFormatError(f"{name}, line {reader.line_num}: Expected a well-formed CSV record (got {err})") from None

    thread_ids = sorted(veracity_of, key=int)
    index_of = {t: i for i, t in enumerate(thread_ids)}
    columns = list(zip(*rows)) if rows else [()] * 6
    return StancePosts(
        thread_ids=thread_ids,
        veracity=torch.tensor([veracity_of[t] for t in thread_ids], dtype=torch.int64),
        thread=torch.tensor([index_of[t] for t in thread_of_row], dtype=torch.int64),
        post_id=torch.tensor(columns[0], dtype=torch.int64),
        parent_id=torch.tensor(columns[1], dtype=torch.int64),
        depth=torch.tensor(columns[2], dtype=torch.int64),
        time_utc=torch.tensor(columns[3], dtype=torch.float64),
        delay_min=torch.tensor(columns[4], dtype=torch.float64),
        stance=torch.tensor(columns[5], dtype=torch.int64),
        report=report,
    )
