"""CSV and Parquet edge lists (see :mod:`lpm.graph.io` for ids and direction)."""

from __future__ import annotations

import os
import re
from typing import Any, Optional

import numpy as np
import torch

from lpm.errors import ConfigError, GraphFormatError
from lpm.graph.core import Graph
from lpm.graph.io._build import PathLike, _build, _check_flow

__all__ = ["read_edge_table", "from_csv", "from_parquet"]


def _read_table(path: PathLike, kind: str, columns: list[str], sep: str) -> "Any":
    """Read ``columns`` of a CSV or Parquet file into a pandas DataFrame, or raise GraphFormatError."""
    import pandas as pd

    try:
        handle = open(path, "rb")
    except OSError as err:
        raise GraphFormatError(f"Expected a readable {kind} file at {os.fspath(path)!r} (got {err})") from err
    with handle:
        if kind == "CSV":
            try:
                header = pd.read_csv(handle, sep=sep, nrows=0)
            except pd.errors.EmptyDataError as err:
                raise GraphFormatError(f"Expected a CSV header line in {os.fspath(path)!r} (got an empty file)") from err
            except Exception as err:  # parser errors of any kind are format errors at this boundary
                raise GraphFormatError(f"Expected a readable CSV file at {os.fspath(path)!r} (got {err})") from err
            found = [str(c) for c in header.columns]
        else:
            import pyarrow.parquet as pq

            try:
                parquet = pq.ParquetFile(handle)
            except Exception as err:
                raise GraphFormatError(f"Expected a Parquet file at {os.fspath(path)!r} (got {err})") from err
            found = list(parquet.schema_arrow.names)
        missing = [c for c in columns if c not in found]
        if missing:
            raise GraphFormatError(
                f"Expected column(s) {missing} in {os.fspath(path)!r} (got columns {found})"
            )
        if kind == "CSV":
            return _read_csv_rows(handle, path, sep, found, columns)
        try:
            return parquet.read(columns=columns).to_pandas()
        except Exception as err:
            raise GraphFormatError(f"Expected a readable {kind} file at {os.fspath(path)!r} (got {err})") from err


_RAGGED = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def _read_csv_rows(handle, path: PathLike, sep: str, header: list[str], columns: list[str]) -> "Any":
    """The rows of a CSV edge list under ``header``, every row checked to have the header's fields.

    pandas' ``usecols`` (and its implicit index for rows one field longer than the header) would
    silently truncate or shift a ragged row, so all fields are parsed and counted.
    """
    import pandas as pd

    handle.seek(0)
    where = os.fspath(path)
    try:
        frame = pd.read_csv(handle, sep=sep, header=None, skiprows=1)
    except pd.errors.EmptyDataError:
        return pd.DataFrame({c: pd.Series([], dtype="int64") for c in columns})
    except pd.errors.ParserError as err:
        ragged = _RAGGED.search(str(err))
        if ragged is not None:
            raise GraphFormatError(f"{where}: Expected {len(header)} fields per line like the header "
                                   f"(got {ragged.group(3)} on line {ragged.group(2)})") from None
        raise GraphFormatError(f"Expected a readable CSV file at {where!r} (got {str(err).strip()})") from err
    except Exception as err:  # parser errors of any kind are format errors at this boundary
        raise GraphFormatError(f"Expected a readable CSV file at {where!r} (got {str(err).strip()})") from err
    if frame.shape[1] != len(header):
        raise GraphFormatError(f"{where}: Expected {len(header)} fields per line like the header "
                               f"(got {frame.shape[1]} on line 2)")
    frame.columns = header
    return frame[columns]


def _id_column(values: np.ndarray, name: str, where: str) -> np.ndarray:
    """Reject missing ids; return the column as is (int or object)."""
    import pandas as pd

    if pd.isna(values).any():
        row = int(np.flatnonzero(pd.isna(values))[0])
        raise GraphFormatError(f"{where}: Expected a node id in every row of column {name!r} (got a missing value in row {row})")
    return values


def _ids_to_tensors(
    src: np.ndarray, dst: np.ndarray, relabel: bool, where: str
) -> tuple[torch.Tensor, torch.Tensor, Optional[np.ndarray]]:
    """Integer ids as int64 tensors, or relabelled to ``0..N-1`` (sorted unique ids)."""
    integer = np.issubdtype(src.dtype, np.integer) and np.issubdtype(dst.dtype, np.integer)
    if integer and not relabel:
        return torch.from_numpy(src.astype(np.int64)), torch.from_numpy(dst.astype(np.int64)), None
    if (src.dtype == object) != (dst.dtype == object):
        # One text and one numeric column: compare all ids as strings.
        src, dst = src.astype(str), dst.astype(str)
    both = np.concatenate([src, dst])
    try:
        node_ids, inverse = np.unique(both, return_inverse=True)
    except TypeError as err:
        raise GraphFormatError(f"{where}: Expected sortable node ids (got {err})") from err
    inverse = torch.from_numpy(inverse.reshape(-1).astype(np.int64))
    return inverse[: len(src)], inverse[len(src):], node_ids


# ------------------------------------------------------------------------------- edge tables
def read_edge_table(
    path: PathLike,
    *,
    source: str = "source",
    target: str = "target",
    weight: Optional[str] = None,
    relabel: bool = False,
    flow: str = "source_to_target",
    sep: str = ",",
    num_nodes: Optional[int] = None,
    format: Optional[str] = None,
    remove_self_loops: bool = True,
    dedupe: bool = True,
) -> tuple[Graph, Optional[np.ndarray]]:
    """Read an edge list from a CSV or Parquet file.

    Args:
        path: the file.
        source, target: names of the id columns (see the module docstring for ``flow``).
        weight: name of a numeric, finite, non-negative weight column, or ``None`` (unweighted).
        relabel: map ids to ``0..N-1`` even when they are integers (always done otherwise).
        flow: ``"source_to_target"`` or ``"target_to_source"``.
        sep: CSV field separator (ignored for Parquet).
        num_nodes: number of agents when ids are used as they are (to include isolated agents
            with ids above the largest one in the file); ``None`` means ``max id + 1``. Not allowed
            with relabelling.
        format: ``"csv"`` or ``"parquet"``; ``None`` infers it from the suffix (``.parquet``/``.pq``
            is Parquet, anything else CSV).
        remove_self_loops, dedupe: passed to :meth:`Graph.from_edge_index`.

    Returns:
        ``(graph, node_ids)``: ``node_ids`` is ``None`` when ids were used as they are, else the
        ``(N,)`` array of original ids, ``node_ids[i]`` being agent ``i``'s.

    Raises:
        GraphFormatError: missing/unreadable file, missing column, missing ids, non-numeric
            weights, or anything :meth:`Graph.from_edge_index` rejects (negative ids, NaN or
            negative weights, no edges), with the path in the message.
        ConfigError: a bad ``flow`` or ``format``, or ``num_nodes`` given with relabelling.
    """
    _check_flow(flow)
    if format is None:
        format = "parquet" if str(path).lower().endswith((".parquet", ".pq")) else "csv"
    if format not in ("csv", "parquet"):
        raise ConfigError(f"Expected format in ('csv', 'parquet') (got {format!r})")
    kind = "CSV" if format == "csv" else "Parquet"
    where = os.fspath(path)
    columns = [source, target] + ([weight] if weight is not None else [])
    frame = _read_table(path, kind, list(dict.fromkeys(columns)), sep)

    src = _id_column(frame[source].to_numpy(), source, where)
    dst = _id_column(frame[target].to_numpy(), target, where)
    src_t, dst_t, node_ids = _ids_to_tensors(src, dst, relabel, where)
    if node_ids is not None:
        if num_nodes is not None:
            raise ConfigError(f"Expected num_nodes=None when ids are relabelled (got num_nodes={num_nodes})")
        num_nodes = len(node_ids)

    weight_t = None
    if weight is not None:
        import pandas as pd

        column = frame[weight]
        if (
            not pd.api.types.is_numeric_dtype(column)
            or pd.api.types.is_bool_dtype(column)
            or pd.api.types.is_complex_dtype(column)
        ):
            raise GraphFormatError(f"{where}: Expected a numeric weight column {weight!r} (got dtype {column.dtype})")
        # Missing values become NaN, which Graph.from_edge_index rejects.
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        weight_t = torch.from_numpy(values.astype(np.float32))  # astype copies: writable
    graph = _build(src_t, dst_t, num_nodes, weight_t, flow, where, remove_self_loops, dedupe)
    return graph, node_ids


def from_csv(
    path: PathLike,
    *,
    source: str = "source",
    target: str = "target",
    weight: Optional[str] = None,
    relabel: bool = False,
    flow: str = "source_to_target",
    sep: str = ",",
    num_nodes: Optional[int] = None,
    remove_self_loops: bool = True,
    dedupe: bool = True,
) -> Graph:
    """The graph of a CSV edge list; see :func:`read_edge_table` (use it to get relabelled ids)."""
    graph, _ = read_edge_table(
        path, source=source, target=target, weight=weight, relabel=relabel, flow=flow, sep=sep,
        num_nodes=num_nodes, format="csv", remove_self_loops=remove_self_loops, dedupe=dedupe,
    )
    return graph


def from_parquet(
    path: PathLike,
    *,
    source: str = "source",
    target: str = "target",
    weight: Optional[str] = None,
    relabel: bool = False,
    flow: str = "source_to_target",
    num_nodes: Optional[int] = None,
    remove_self_loops: bool = True,
    dedupe: bool = True,
) -> Graph:
    """The graph of a Parquet edge list; see :func:`read_edge_table`."""
    graph, _ = read_edge_table(
        path, source=source, target=target, weight=weight, relabel=relabel, flow=flow,
        num_nodes=num_nodes, format="parquet", remove_self_loops=remove_self_loops, dedupe=dedupe,
    )
    return graph

