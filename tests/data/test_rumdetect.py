"""load_rumdetect: hand-computed trees from folders and zips, every quirk counted, malformed input,
and the published statistics of the real Twitter15 zip."""

from __future__ import annotations

import functools
import time
import zipfile
from pathlib import Path

import pytest
import torch

from lpm.data import CascadeTable, LoadReport, load_rumdetect
from lpm.errors import ConfigError, DataFormatError


def edge(parent: tuple, child: tuple) -> str:
    p = ", ".join(f"'{v}'" for v in parent)
    c = ", ".join(f"'{v}'" for v in child)
    return f"[{p}]->[{c}]"


ROOT = ("ROOT", "ROOT", "0.0")

TREES = {
    # ids sort numerically: "20" before "100"
    "20": [edge(ROOT, ("7", "20", "0.0")), edge(("7", "20", "0.0"), ("8", "20", "6.0"))],
    "100": [
        edge(ROOT, ("1", "100", "0.0")),
        edge(("1", "100", "0.0"), ("2", "100", "30.0")),
        edge(("1", "100", "0.0"), ("3", "100", "90.0")),
        edge(("2", "100", "30.0"), ("4", "101", "60.0")),
        edge(("4", "101", "60.0"), ("5", "102", "120.0")),
        edge(("3", "100", "90.0"), ("4", "103", "150.0")),  # user 4 again, later: not a new node
    ],
}
LABELS = {"20": "true", "100": "non-rumor"}

QUIRKS = [
    edge(ROOT, ("1", "300", "0.0")),
    edge(("1", "300", "0.0"), ("2", "300", "6.0")),
    edge(("1", "300", "0.0"), ("2", "300", "6.0")),         # exact duplicate
    edge(("1", "300", "0.0"), ("3", "301", "-1.5")),        # negative delay (and below its parent's)
    edge(("3", "301", "12.0"), ("4", "302", "3.0")),        # child before parent
    edge(("9", "309", "5.0"), ("5", "305", "24.0")),        # parent user 9 is never a node: orphan
    edge(("6", "306", "30.0"), ("6", "307", "36.0")),       # self-loop
    edge(("1", "300", "0.0"), ("7", "300", "6000.0")),      # 100 h
    edge(("7", "300", "6000.0"), ("8", "300", "3000.0")),   # 50 h, child of a later node
]
CYCLE = [
    edge(ROOT, ("1", "400", "0.0")),
    edge(("3", "403", "5.0"), ("2", "402", "6.0")),
    edge(("2", "402", "6.0"), ("3", "403", "12.0")),        # 2 <- 3 <- 2
    edge(("3", "403", "12.0"), ("4", "404", "18.0")),       # below the cycle
]
LATE_ROOT = [
    edge(("3", "500", "-2.0"), ("4", "504", "1.0")),        # the ROOT line need not come first
    edge(ROOT, ("3", "499", "-3.0")),                       # ROOT's child is an earlier tweet
    edge(("3", "499", "-3.0"), ("5", "500", "0.0")),
]


def write_dataset(folder: Path, trees: dict[str, list[str]], labels: dict[str, str] | None) -> Path:
    (folder / "tree").mkdir(parents=True)
    for tree_id, lines in trees.items():
        (folder / "tree" / f"{tree_id}.txt").write_text("\n".join(lines) + "\n")
    if labels is not None:
        (folder / "label.txt").write_text("".join(f"{v}:{k}\n" for k, v in labels.items()))
    return folder


def zip_folder(folder: Path, path: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                archive.write(file, prefix + file.relative_to(folder).as_posix())
    return path


def tables_equal(a: CascadeTable, b: CascadeTable) -> bool:
    return (list(a.ids) == list(b.ids) and a.labels == b.labels and torch.equal(a.cascade, b.cascade)
            and torch.equal(a.time_h, b.time_h) and torch.equal(a.parent, b.parent) and torch.equal(a.depth, b.depth))


def test_loads_hand_computed_trees(tmp_path):
    table, report = load_rumdetect(write_dataset(tmp_path / "d", TREES, LABELS))
    assert list(table.ids) == ["20", "100"] and list(table.labels) == ["true", "non-rumor"]
    assert table.cascade.tolist() == [0, 0, 1, 1, 1, 1, 1]
    # cascade 100 rows by time: root user 1, user 2 (0.5 h), 4 (1 h), 3 (1.5 h), 5 (2 h)
    assert table.time_h.tolist() == [0.0, 0.1, 0.0, 0.5, 1.0, 1.5, 2.0]
    assert table.parent.tolist() == [-1, 0, -1, 2, 3, 2, 4]
    assert table.depth.tolist() == [0, 1, 0, 1, 2, 1, 3]
    assert (report.cascades, report.lines, report.nodes) == (2, 8, 7)
    assert report.duplicates == report.malformed == report.orphans == report.cycles == 0


def test_folder_and_zip_forms_agree(tmp_path):
    trees = {**TREES, "300": QUIRKS, "400": CYCLE}
    labels = {**LABELS, "300": "false", "400": "unverified"}
    folder = write_dataset(tmp_path / "twitter15", trees, labels)
    expected, expected_report = load_rumdetect(folder, window_h=72)
    for prefix in ("", "rumdetect2017/twitter15/"):
        table, report = load_rumdetect(zip_folder(folder, tmp_path / f"z{len(prefix)}.zip", prefix), window_h=72)
        assert tables_equal(table, expected)
        assert report.summary() == expected_report.summary()


def test_zip_with_several_datasets_needs_member(tmp_path):
    a = write_dataset(tmp_path / "a", TREES, LABELS)
    path = tmp_path / "both.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name, folder in (("rumdetect2017/twitter15/", a), ("rumdetect2017/twitter16/", a)):
            for file in sorted(folder.rglob("*")):
                if file.is_file():
                    archive.write(file, name + file.relative_to(folder).as_posix())
    with pytest.raises(DataFormatError, match="member"):
        load_rumdetect(path)
    table, _ = load_rumdetect(path, member="twitter16")
    assert list(table.ids) == ["20", "100"]
    assert load_rumdetect(path, member="rumdetect2017/twitter15/")[0].num_cascades == 2
    with pytest.raises(DataFormatError, match="twitter17"):
        load_rumdetect(path, member="twitter17")


def test_undecodable_file_is_a_format_error(tmp_path):
    folder = write_dataset(tmp_path / "d", TREES, LABELS)
    (folder / "tree" / "20.txt").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DataFormatError, match=r"20\.txt"):
        load_rumdetect(folder)


def test_quirks_are_repaired_and_counted(tmp_path):
    table, report = load_rumdetect(write_dataset(tmp_path / "d", {"300": QUIRKS}, None), labels=False)
    assert table.labels is None
    # rows: root 1, user 3 (0 h, clamped), 4 (0.05 h), 2 (0.1 h), 5 (0.4 h), 6 (0.6 h), 8 (50 h), 7 (100 h)
    assert table.time_h.tolist() == [0.0, 0.0, 0.05, 0.1, 0.4, 0.6, 50.0, 100.0]
    assert table.parent.tolist() == [-1, 0, 1, 0, 0, 0, 7, 0]
    assert table.depth.tolist() == [0, 1, 2, 1, 1, 1, 2, 1]
    assert (report.lines, report.duplicates, report.negative_delays) == (9, 1, 1)
    assert report.child_before_parent == 3  # lines 4, 5 and 9
    assert (report.orphans, report.cycles, report.nonzero_root_delay) == (1, 1, 0)
    assert report.nodes == 8 and report.dropped_after_window == 0


def test_window_drops_late_nodes_and_reattaches_their_children(tmp_path):
    table, report = load_rumdetect(write_dataset(tmp_path / "d", {"300": QUIRKS}, None), labels=False, window_h=72)
    assert table.time_h.tolist() == [0.0, 0.0, 0.05, 0.1, 0.4, 0.6, 50.0]
    assert table.parent.tolist() == [-1, 0, 1, 0, 0, 0, 0]  # user 8's parent (7, at 100 h) is gone
    assert table.depth.tolist() == [0, 1, 2, 1, 1, 1, 1]
    assert (report.dropped_after_window, report.orphans, report.nodes) == (1, 2, 7)


def test_cycles_are_broken_at_their_earliest_node(tmp_path):
    table, report = load_rumdetect(write_dataset(tmp_path / "d", {"400": CYCLE}, None), labels=False)
    # rows: root 1, user 2 (0.1 h), 3 (0.2 h), 4 (0.3 h); 2 <-> 3 broken at user 2
    assert table.parent.tolist() == [-1, 0, 1, 2]
    assert table.depth.tolist() == [0, 1, 2, 3]
    assert report.cycles == 1 and report.orphans == 0


def test_nonzero_root_delay_and_late_root_line(tmp_path):
    table, report = load_rumdetect(write_dataset(tmp_path / "d", {"500": LATE_ROOT}, None), labels=False)
    assert report.nonzero_root_delay == 1
    # root user 3 at 0; user 5 at 0 h and user 4 at 1 min keep their delays relative to the file's source
    assert table.time_h.tolist() == [0.0, 0.0, 1 / 60]
    assert table.parent.tolist() == [-1, 0, 0]
    assert report.negative_delays == 0 and report.child_before_parent == 0


@pytest.mark.parametrize("bad, line_no", [
    ("['1', '600', '0.0']->['2', '600', 'x']", 2),
    ("['1', '600', '0.0'] ['2', '600', '1.0']", 2),
    ("['1', '600', '0.0']->['ROOT', 'ROOT', '1.0']", 2),
    ("['ROOT', '600', '0.0']->['2', '600', '1.0']", 2),
    ("__import__('os')", 2),
])
def test_malformed_line_raises_with_file_and_line(tmp_path, bad, line_no):
    lines = [edge(ROOT, ("1", "600", "0.0")), bad, edge(("1", "600", "0.0"), ("3", "600", "2.0"))]
    folder = write_dataset(tmp_path / "d", {"600": lines}, {"600": "true"})
    with pytest.raises(DataFormatError, match=rf"600\.txt, line {line_no}: Expected"):
        load_rumdetect(folder)
    table, report = load_rumdetect(folder, errors="skip")
    assert report.malformed == 1
    file, number, text = report.malformed_examples[0]
    assert file.endswith("600.txt") and number == line_no and text == bad
    assert table.sizes.tolist() == [2]


def test_malformed_line_in_zip_names_the_member(tmp_path):
    lines = [edge(ROOT, ("1", "600", "0.0")), "", "garbage"]
    folder = write_dataset(tmp_path / "d", {"600": lines}, {"600": "true"})
    with pytest.raises(DataFormatError, match=r"d\.zip:tree/600\.txt, line 3"):
        load_rumdetect(zip_folder(folder, tmp_path / "d.zip"))


def test_root_lines_missing_or_repeated(tmp_path):
    trees = {"700": [edge(("1", "700", "0.0"), ("2", "700", "1.0"))],
             "800": [edge(ROOT, ("1", "800", "0.0")), edge(ROOT, ("2", "801", "0.0")),
                     edge(("1", "800", "0.0"), ("3", "800", "1.0"))]}
    folder = write_dataset(tmp_path / "d", trees, None)
    with pytest.raises(DataFormatError, match=r"700\.txt: Expected one \['ROOT'"):
        load_rumdetect(folder, labels=False)
    table, report = load_rumdetect(folder, labels=False, errors="skip")
    assert list(table.ids) == ["800"] and report.skipped_cascades == 1
    assert report.malformed == 1 and report.malformed_examples[0][1] == 2  # the second ROOT line
    assert table.sizes.tolist() == [2]


def test_labels_are_checked(tmp_path):
    folder = write_dataset(tmp_path / "d", TREES, {"100": "true"})
    with pytest.raises(DataFormatError, match="label for tree 20"):
        load_rumdetect(folder)
    table, report = load_rumdetect(folder, errors="skip")
    assert list(table.ids) == ["100"] and report.unlabeled == 1
    (folder / "label.txt").write_text("true:100\nnot a label\n")
    with pytest.raises(DataFormatError, match=r"label\.txt, line 2"):
        load_rumdetect(folder)
    (folder / "label.txt").unlink()
    with pytest.raises(DataFormatError, match="label.txt"):
        load_rumdetect(folder)
    assert load_rumdetect(folder, labels=False)[0].num_cascades == 2


def test_bad_arguments(tmp_path):
    folder = write_dataset(tmp_path / "d", TREES, LABELS)
    with pytest.raises(ConfigError, match="errors"):
        load_rumdetect(folder, errors="ignore")
    with pytest.raises(ConfigError, match="window_h"):
        load_rumdetect(folder, window_h=-1)
    with pytest.raises(DataFormatError, match="Expected a rumdetect folder or zip"):
        load_rumdetect(tmp_path / "missing.zip")


def test_report_summary():
    report = LoadReport(cascades=2, lines=10, nodes=8, duplicates=1)
    report.malformed_examples.append(("f.txt", 3, "bad"))
    text = report.summary()
    assert "cascades: 2" in text and "duplicates: 1" in text and "f.txt:3: bad" in text and "cycles" not in text


# ------------------------------------------------------------------------------ the real data
@functools.lru_cache(maxsize=None)
def load_real(path: Path) -> tuple[CascadeTable, LoadReport, float]:
    start = time.perf_counter()
    table, report = load_rumdetect(path)
    return table, report, time.perf_counter() - start


@pytest.fixture
def twitter15(shared_data):
    path = shared_data / "twitter15.zip"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return load_real(path)


def test_real_twitter15_sizes_and_labels(twitter15):
    table, report, seconds = twitter15
    assert report.cascades == table.num_cascades == 1490
    sizes = table.sizes
    # sizes are unique users: the README's median 260, min 56, max 2,990 exactly
    assert (int(sizes.median()), int(sizes.min()), int(sizes.max())) == (260, 56, 2990)
    assert sorted(set(table.labels)) == ["false", "non-rumor", "true", "unverified"]
    assert list(table.ids) == sorted(table.ids, key=int)


def test_real_twitter15_timing_and_shape(twitter15):
    table, _, _ = twitter15
    reshare = table.parent >= 0
    hours = table.time_h[reshare]
    # README: 48% within 1 h, 90% within 24 h (whole percents; measured 47.7% and 90.2%)
    assert abs(float((hours <= 1).double().mean()) - 0.48) < 0.01
    assert abs(float((hours <= 24).double().mean()) - 0.90) < 0.01
    # README: 75% of edges hang off the root. That is the share of unique edge *lines* whose parent is
    # the source user (75.2%); per unique user (node), as this table counts, it is 76.0%.
    assert abs(float((table.depth[reshare] == 1).double().mean()) - 0.760) < 0.005
    # README's "median depth 3" is the median over cascades of the maximum depth; the median node is at depth 1
    max_depth = torch.zeros(table.num_cascades, dtype=torch.int64).scatter_reduce(0, table.cascade, table.depth, "amax")
    assert int(max_depth.median()) == 3
    assert int(table.depth[reshare].median()) == 1


def test_real_twitter15_quirk_counts(twitter15):
    _, report, seconds = twitter15
    # README: ~607k edge lines, ~17k duplicates, ~600 negative delays, ~3.6k children before parents
    # (per line), "a handful" of non-zero root delays. Measured: 624,458 lines of which 17,169
    # duplicates (607,289 unique), 598, 3,651, 8.
    assert report.lines - report.duplicates == 607_289
    assert 16_500 <= report.duplicates <= 17_500
    assert 550 <= report.negative_delays <= 650
    assert 3_500 <= report.child_before_parent <= 3_800
    assert 1 <= report.nonzero_root_delay <= 20
    # none of the repairable structural faults occur in Twitter15
    assert report.orphans == report.cycles == report.malformed == 0
    assert seconds < 60  # ~3-5 s on a busy 2-core machine; generous so load does not flake
