"""A ragged edge-list row is an error naming file and line, never silently truncated or shifted."""

from __future__ import annotations

import pytest

import lpm
from lpm.errors import GraphFormatError


@pytest.mark.parametrize("body, line, fields", [
    ("0,1\n1,2,3,4\n2,3\n", 3, 4),   # a long row in the middle
    ("0,1,9\n1,2,9\n", 2, 3),        # every row one longer: pandas would take the first field as an index
    ("0,1\n1,2\n1,2,3\n", 4, 3),     # the last row
])
def test_ragged_row_names_file_and_line(tmp_path, body, line, fields):
    path = tmp_path / "edges.csv"
    path.write_text("source,target\n" + body)
    with pytest.raises(GraphFormatError, match=rf"{path}: Expected 2 fields per line like the header "
                                               rf"\(got {fields} on line {line}\)"):
        lpm.Graph.from_csv(path)


def test_extra_columns_declared_in_the_header_still_load(tmp_path):
    path = tmp_path / "edges.csv"
    path.write_text("source,target,weight,note\n0,1,2.0,a\n1,2,0.5,b\n")
    graph = lpm.Graph.from_csv(path, weight="weight")
    assert graph.num_edges == 2 and sorted(graph.weight.tolist()) == [0.5, 2.0]


def test_short_row_is_a_missing_id(tmp_path):
    path = tmp_path / "edges.csv"
    path.write_text("source,target\n0,1\n2\n")
    with pytest.raises(GraphFormatError, match="missing value in row 1"):
        lpm.Graph.from_csv(path)
