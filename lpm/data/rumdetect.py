"""Retweet cascades of the rumdetect2017 Twitter15/16 data (Ma, Gao & Wong, ACL 2017; built on
Liu et al., CIKM 2015 and Ma et al., IJCAI 2016).

The data comes as a folder holding ``label.txt`` (``label:source_tweet_id``) and
``tree/<source_tweet_id>.txt``, or as a zip holding that folder at any depth (read in place, never
extracted), one edge per line::

    ['parent_uid', 'parent_tweet_id', 'parent_delay_min']->['child_uid', 'child_tweet_id', 'child_delay_min']

with one ``['ROOT', 'ROOT', '0.0']->[source]`` line, usually the first. Delays are minutes since the
source tweet (the file's id); retweet parents are the collectors' inference.

:func:`load_rumdetect` turns each file into one cascade of a :class:`~lpm.data.CascadeTable` whose nodes
are the *unique users* of the tree:

* the root is the ROOT line's child user, at time 0;
* every other user is a node at its earliest appearance as a child (ties: the earlier line), and
  its parent is that line's parent user;
* rows are ordered root first, then by time, then by line.

The real files have quirks, each handled and counted in :class:`LoadReport`:

* exact duplicate lines are dropped (``duplicates``);
* negative child delays are clamped to 0 (``negative_delays``, counted per line);
* lines whose child delay is below its parent's (``child_before_parent``, counted per line) are kept
  with their times as given: a node's time is its own earliest appearance, whatever its parent's;
* a ROOT line whose child delay (or ROOT delay) is not 0 (``nonzero_root_delay``): the ROOT child is
  then an earlier tweet than the file's source, yet the other delays stay relative to the file's
  source, so they are kept as they are and the root is put at 0;
* a node whose parent user is never a node is attached to the root (``orphans``); so is a node whose
  parent falls outside ``window_h``;
* a self-loop (a user whose earliest appearance is a reply to itself) or a cycle of parent pointers
  is broken by attaching, per cycle, its earliest node to the root (``cycles``);
* ``window_h`` drops nodes later than ``window_h`` hours (``dropped_after_window``): the real trees
  have multi-year tails.

Depths are computed from the parent pointers of all cascades at once, by pointer jumping.
"""

from __future__ import annotations

import os
import re
import zipfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import pandas as pd
import torch

from lpm.data.cascades import CascadeTable
from lpm.metrics.trees import forest_depths
from lpm.data.report import MalformedLog, check_errors
from lpm.errors import ConfigError, DataFormatError

__all__ = ["LoadReport", "load_rumdetect", "write_rumdetect"]

PathLike = Union[str, "os.PathLike[str]"]

_NUM = r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"
_ID = r"(?!ROOT')\w+"
# groups: ROOT marker, parent uid, parent delay, child uid, child delay (tweet ids are not needed);
# ROOT may only be a whole parent node, ['ROOT', 'ROOT', delay]
_LINE_BODY = (rf"\[(?:'(ROOT)', 'ROOT'|'({_ID})', '{_ID}'), '({_NUM})'\][ \t]*->[ \t]*"
              rf"\['({_ID})', '{_ID}', '({_NUM})'\]")
_LINE = re.compile(_LINE_BODY)
_LINES = re.compile(rf"^{_LINE_BODY}$", re.MULTILINE)
_LINE_FORMAT = "\"['uid', 'tweet_id', 'delay_min']->['uid', 'tweet_id', 'delay_min']\""
_LABEL = re.compile(r"([\w-]+):(\w+)")


@dataclass
class LoadReport(MalformedLog):
    """What a loader read, dropped and repaired (see the module docstring for each counter).

    ``lines`` counts non-blank lines read; ``nodes`` the rows of the returned table. Quirk counters
    count lines (``duplicates``, ``negative_delays``, ``child_before_parent``, ``malformed``),
    cascades (``nonzero_root_delay``, ``skipped_cascades``, ``unlabeled``) or nodes (``orphans``,
    ``cycles``, ``dropped_after_window``). ``malformed_examples`` keeps the first few
    ``(file, line_no, text)`` (line numbers from 1).
    """

    cascades: int = 0
    lines: int = 0
    nodes: int = 0
    duplicates: int = 0
    negative_delays: int = 0
    child_before_parent: int = 0
    nonzero_root_delay: int = 0
    orphans: int = 0
    cycles: int = 0
    dropped_after_window: int = 0
    skipped_cascades: int = 0
    unlabeled: int = 0

    def summary(self) -> str:
        """One line per counter that is not zero, for logs."""
        names = ["cascades", "lines", "nodes", "duplicates", "negative_delays", "child_before_parent",
                 "nonzero_root_delay", "orphans", "cycles", "dropped_after_window", "malformed",
                 "skipped_cascades", "unlabeled"]
        out = [f"{name}: {getattr(self, name):,}" for name in names if getattr(self, name) or name in names[:3]]
        out += self._example_lines()
        return "\n".join(out)


# ------------------------------------------------------------------------------------- sources
_Reader = tuple[str, Callable[[], str]]  # (name for messages, read the text)


def _checked(name: str, read: Callable[[], bytes]) -> Callable[[], str]:
    """``read`` decoded as UTF-8, with I/O and decoding failures turned into DataFormatError."""

    def text() -> str:
        try:
            return read().decode("utf-8")
        except (OSError, UnicodeDecodeError, zipfile.BadZipFile) as err:
            raise DataFormatError(f"Expected a readable UTF-8 text file at {name!r} (got {err})") from err

    return text


def _open(path: PathLike, member: Optional[str], stack: ExitStack) -> tuple[dict[str, _Reader], Optional[_Reader], str]:
    """``(trees, label, where)``: tree id -> reader, the label file's reader, and a name for
    messages; from a folder or a zip (read in place, closed with ``stack``)."""
    path = Path(path)
    if path.is_dir():
        root = path / member if member else path
        if not (root / "tree").is_dir():
            raise DataFormatError(f"Expected a rumdetect folder with a tree/ sub-folder at {os.fspath(root)!r} (got none)")
        trees = {p.stem: (os.fspath(p), _checked(os.fspath(p), p.read_bytes))
                 for p in (root / "tree").iterdir() if p.suffix == ".txt" and p.is_file()}
        label_path = root / "label.txt"
        label = (os.fspath(label_path), _checked(os.fspath(label_path), label_path.read_bytes)) if label_path.is_file() else None
        return trees, label, os.fspath(root)
    try:
        archive = stack.enter_context(zipfile.ZipFile(path))
    except (OSError, zipfile.BadZipFile) as err:
        raise DataFormatError(f"Expected a rumdetect folder or zip at {os.fspath(path)!r} (got {err})") from err
    names = archive.namelist()
    # the dataset folder sits at any depth inside the zip (the original nests twitter15/ and twitter16/)
    prefixes = sorted({n[: n.index("tree/")] for n in names
                       if "tree/" in n and (n.index("tree/") == 0 or n[n.index("tree/") - 1] == "/")})
    if member is not None:
        want = member.strip("/") + "/"
        prefixes = [p for p in prefixes if p == want or p.endswith("/" + want)]
    if len(prefixes) != 1:
        raise DataFormatError(f"Expected one tree/ folder in {os.fspath(path)!r}"
                              f"{'' if member is None else f' under {member!r}'} (got {len(prefixes)}: {prefixes}); "
                              "pick one with member=")
    prefix = prefixes[0]

    def reader(name: str) -> Callable[[], str]:
        return _checked(f"{os.fspath(path)}:{name}", lambda: archive.read(name))

    tree_dir = prefix + "tree/"
    trees = {n[len(tree_dir):-4]: (f"{os.fspath(path)}:{n}", reader(n)) for n in names
             if n.startswith(tree_dir) and n.endswith(".txt") and "/" not in n[len(tree_dir):]}
    label = (f"{os.fspath(path)}:{prefix}label.txt", reader(prefix + "label.txt")) if prefix + "label.txt" in names else None
    return trees, label, f"{os.fspath(path)}:{prefix}"


def _read_labels(label: Optional[_Reader], where: str, errors: str,
                 report: LoadReport) -> dict[str, str]:
    if label is None:
        raise DataFormatError(f"Expected a label.txt in {where!r} (got none); pass labels=False to load without it")
    name, read = label
    out: dict[str, str] = {}
    for line_no, line in enumerate(read().splitlines(), 1):
        text = line.strip()
        if not text:
            continue
        match = _LABEL.fullmatch(text)
        if match is None:
            report._bad(errors, name, line_no, text, "'label:source_tweet_id'")
            continue
        value, key = match.groups()
        if out.setdefault(key, value) != value:
            report._bad(errors, name, line_no, text, f"one label per tree (tree {key} was labelled {out[key]!r})")
    return out


# ------------------------------------------------------------------------------------ one file
def _parse_tree(name: str, text: str, errors: str, report: LoadReport) -> Optional[list[tuple[str, ...]]]:
    """The well-formed unique lines of one tree file as regex groups, in file order; ``None`` when
    the file is skipped (``errors="skip"`` only)."""
    lines = [line.strip() for line in text.splitlines()]
    unique = [line for line in dict.fromkeys(lines) if line]
    read = len(lines) - lines.count("")
    report.lines += read
    report.duplicates += read - len(unique)
    # one regex pass over the whole file; only a file with a bad line is walked line by line
    joined = "\n".join(unique)
    groups = _LINES.findall(joined)
    if len(groups) == len(unique):
        good = unique
        # well-formed lines hold ROOT only as a whole parent node
        num_roots = joined.count("['ROOT', 'ROOT', ")
    else:
        good, groups = [], []
        for line in unique:
            match = _LINE.fullmatch(line)
            if match is None:
                report._bad(errors, name, lines.index(line) + 1, line, _LINE_FORMAT)
            else:
                good.append(line)
                groups.append(match.groups())
        num_roots = sum(1 for g in groups if g[0])
    if num_roots != 1:
        if num_roots == 0 or errors == "raise":
            if errors == "raise":
                raise DataFormatError(f"{name}: Expected one ['ROOT', 'ROOT', ...] line (got {num_roots or 'none'})")
            report.skipped_cascades += 1
            return None
        extra = [i for i, g in enumerate(groups) if g[0]][1:]  # errors == "skip": keep the first ROOT line
        for i in extra:
            report._bad(errors, name, lines.index(good[i]) + 1, good[i], "a single ROOT line per file")
        drop = set(extra)
        groups = [g for i, g in enumerate(groups) if i not in drop]
    return groups


# --------------------------------------------------------------------------------- all files
def _build(columns: list[list[str]], counts: list[int], window_h: Optional[float],
           report: LoadReport) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(cascade, time_h, parent)`` of every node of every cascade, vectorised over all lines.

    ``columns`` holds the five regex groups of the lines of all cascades in file order, ``counts[k]``
    lines for cascade ``k``, each cascade with exactly one ROOT line.
    """
    num = len(counts)
    cascade = np.repeat(np.arange(num, dtype=np.int64), counts)
    is_root_marker, parent_uid, parent_delay, child_uid, child_delay = columns
    num_lines = len(parent_uid)
    codes, users = pd.factorize(np.array(parent_uid + child_uid, dtype=object))
    parent_code, child_code = codes[:num_lines].astype(np.int64), codes[num_lines:].astype(np.int64)
    parent_delay = np.array(parent_delay, dtype=np.float64)
    child_delay = np.array(child_delay, dtype=np.float64)
    root_line = np.fromiter(map(bool, is_root_marker), dtype=bool, count=num_lines)
    num_users = len(users) + 1
    edge = ~root_line

    report.nonzero_root_delay += int(((child_delay[root_line] != 0) | (parent_delay[root_line] != 0)).sum())
    report.negative_delays += int((edge & (child_delay < 0)).sum())
    report.child_before_parent += int((edge & (child_delay < parent_delay)).sum())

    root_code = np.empty(num, dtype=np.int64)
    root_code[cascade[root_line]] = child_code[root_line]
    time_h = np.maximum(child_delay, 0.0) / 60.0
    # users are per cascade: key = cascade * U + user code
    child_key = cascade * num_users + child_code
    parent_key = cascade * num_users + parent_code
    candidate = np.flatnonzero(edge & (child_code != root_code[cascade]))
    position = np.arange(num_lines)  # file order: the earlier line wins ties
    by_user = candidate[np.lexsort((position[candidate], time_h[candidate], child_key[candidate]))]
    first = np.ones(by_user.size, dtype=bool)
    first[1:] = child_key[by_user[1:]] != child_key[by_user[:-1]]
    node = by_user[first]

    # rows: every cascade's root, then its nodes by time and line
    row_cascade = np.concatenate([np.arange(num), cascade[node]])
    row_time = np.concatenate([np.zeros(num), time_h[node]])
    row_position = np.concatenate([np.full(num, -1), position[node]])
    row_key = np.concatenate([np.arange(num) * num_users + root_code, child_key[node]])
    row_parent_key = np.concatenate([np.full(num, -1), parent_key[node]])
    order = np.lexsort((row_position, row_time, row_cascade))
    row_cascade, row_time, row_key, row_parent_key = (x[order] for x in (row_cascade, row_time, row_key, row_parent_key))
    is_root = row_parent_key < 0
    root_row = np.flatnonzero(is_root)  # one per cascade, in cascade order
    by_key = np.argsort(row_key)
    found = np.searchsorted(row_key, row_parent_key, sorter=by_key).clip(max=row_key.size - 1)
    parent = by_key[found]
    self_loop = row_parent_key == row_key
    orphan = ~is_root & ~self_loop & (row_key[parent] != row_parent_key)
    report.cycles += int(self_loop.sum())
    report.orphans += int(orphan.sum())
    parent = np.where(self_loop | orphan, root_row[row_cascade], parent)
    parent[is_root] = -1

    if window_h is not None:
        keep = is_root | (row_time <= window_h)
        report.dropped_after_window += int((~keep).sum())
        new_row = np.cumsum(keep) - 1
        lost = keep & ~is_root & ~keep[parent.clip(min=0)]
        report.orphans += int(lost.sum())
        parent = np.where(lost, root_row[row_cascade], parent)
        parent = np.where(parent >= 0, new_row[parent.clip(min=0)], -1)[keep]
        row_cascade, row_time = row_cascade[keep], row_time[keep]
    return torch.from_numpy(row_cascade), torch.from_numpy(row_time), torch.from_numpy(parent)


def _break_cycles(parent: torch.Tensor, time_h: torch.Tensor, on_cycle: torch.Tensor, root_of: torch.Tensor) -> int:
    """Attach the earliest node of each parent-pointer cycle to its cascade's root (in place).

    Only rows flagged ``on_cycle`` are walked, one by one: cycles are rare in real data.
    """
    parent_list = parent.tolist()
    flagged = on_cycle.tolist()
    times = time_h.tolist()
    state: dict[int, int] = {}  # 1: on the current walk, 2: settled
    broken = 0
    for start in torch.nonzero(on_cycle).squeeze(1).tolist():
        walk, node = [], start
        while node >= 0 and flagged[node] and node not in state:
            state[node] = 1
            walk.append(node)
            node = parent_list[node]
        if node >= 0 and state.get(node) == 1:
            cycle = walk[walk.index(node):]
            earliest = min(cycle, key=lambda r: (times[r], r))
            parent_list[earliest] = int(root_of[earliest])
            broken += 1
        for r in walk:
            state[r] = 2
    parent.copy_(torch.tensor(parent_list, dtype=torch.int64))
    return broken


def _sort_key(tree_id: str) -> tuple[int, int, str]:
    # numeric ids in numeric order (tweet ids vary in length), any others after them
    return (0, int(tree_id), "") if tree_id.isdigit() else (1, 0, tree_id)


# ------------------------------------------------------------------------------------ loader
def load_rumdetect(
    path: PathLike,
    *,
    window_h: Optional[float] = None,
    errors: str = "raise",
    labels: bool = True,
    member: Optional[str] = None,
) -> tuple[CascadeTable, LoadReport]:
    """Load rumdetect2017 Twitter15/16 trees as a cascade table (see the module docstring).

    Args:
        path: the dataset folder (holding ``label.txt`` and ``tree/``) or a zip of it.
        window_h: keep only nodes at most this many hours after the source (``None``: all).
        errors: ``"raise"`` raises on the first malformed line; ``"skip"`` drops and counts it
            (and skips, counting, a tree with no ROOT line or no label).
        labels: read ``label.txt`` into ``labels``.
        member: the dataset folder inside a zip that holds several (e.g. ``"twitter16"``).

    Returns:
        ``(table, report)``: cascades sorted by id (the source tweet id, numerically), and the
        counts of what was read, dropped and repaired.

    Raises:
        DataFormatError: an unreadable path, a malformed line (naming the file and line number),
            a tree without exactly one ROOT line or without a label (unless ``errors="skip"``).
        ConfigError: a bad ``errors`` or ``window_h``.

    Shapes:
        table rows ``R`` = ``report.nodes``; ``M`` = ``report.cascades``.
    """
    check_errors(errors)
    if window_h is not None and not window_h >= 0:
        raise ConfigError(f"Expected window_h >= 0 or None (got {window_h})")
    report = LoadReport()
    ids: list[str] = []
    columns: list[list[str]] = [[], [], [], [], []]
    counts: list[int] = []
    with ExitStack() as stack:
        trees, label_file, where = _open(path, member, stack)
        if not trees:
            raise DataFormatError(f"Expected tree/<id>.txt files in {where!r} (got none)")
        label_of = _read_labels(label_file, where, errors, report) if labels else {}
        for tree_id in sorted(trees, key=_sort_key):
            name, read = trees[tree_id]
            if labels and tree_id not in label_of:
                if errors == "raise":
                    raise DataFormatError(f"{name}: Expected a label for tree {tree_id} in label.txt (got none)")
                report.unlabeled += 1
                continue
            found = _parse_tree(name, read(), errors, report)
            if found is None:
                continue
            ids.append(tree_id)
            for column, values in zip(columns, zip(*found)):  # per file: transposing all lines at once is slow
                column.extend(values)
            counts.append(len(found))

    if ids:
        cascade, time_h, parent = _build(columns, counts, window_h, report)
    else:
        cascade, time_h, parent = (torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.float64),
                                   torch.zeros(0, dtype=torch.int64))
    depth, on_cycle = forest_depths(parent)
    if bool(on_cycle.any()):
        root_of = torch.nonzero(parent < 0).squeeze(1)[cascade]
        report.cycles += _break_cycles(parent, time_h, on_cycle, root_of)
        depth, on_cycle = forest_depths(parent)
    report.cascades = len(ids)
    report.nodes = int(cascade.numel())
    table = CascadeTable(cascade, time_h, parent, depth, ids, [label_of[i] for i in ids] if labels else None)
    return table, report


def write_rumdetect(table: CascadeTable, folder: PathLike, *, label: str = "unverified") -> Path:
    """Write ``table`` in the rumdetect2017 folder format (``label.txt``, ``tree/<id>.txt``).

    Simulated cascades can then be shared, or fitted back by the same loader as real ones. Node
    ``r`` of a cascade becomes user ``u<r>`` with tweet id ``<id>_<r>``; delays are minutes;
    characters of ids other than letters, digits, ``-`` and ``_`` become ``_``.
    """
    folder = Path(folder)
    ids = [re.sub(r"[^0-9A-Za-z_-]", "_", str(i)) for i in table.ids]
    (folder / "tree").mkdir(parents=True, exist_ok=True)
    labels = table.labels if table.labels is not None else [label] * table.num_cascades
    time_min = (table.time_h * 60.0).tolist()
    parent, cascade = table.parent.tolist(), table.cascade.tolist()
    lines: list[list[str]] = [[] for _ in range(table.num_cascades)]
    for row in range(len(cascade)):
        c, p = cascade[row], parent[row]
        tid = ids[c]
        me = f"['u{row}', '{tid}_{row}', '{time_min[row]:.2f}']"
        if p < 0:
            lines[c].insert(0, f"['ROOT', 'ROOT', '0.0']->{me}")
        else:
            lines[c].append(f"['u{p}', '{tid}_{p}', '{time_min[p]:.2f}']->{me}")
    for c, tid in enumerate(ids):
        if int(table.sizes[c]) == 0:
            continue
        (folder / "tree" / f"{tid}.txt").write_text("\n".join(lines[c]) + "\n")
    (folder / "label.txt").write_text("".join(f"{labels[c]}:{tid}\n" for c, tid in enumerate(ids)
                                              if int(table.sizes[c]) > 0))
    return folder
