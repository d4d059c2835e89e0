"""What every loader shares: the ``flow`` check and the validated build with the source named in errors."""

from __future__ import annotations

import os
from typing import Optional, Union

import torch

from lpm.errors import ConfigError, GraphFormatError, ResourceError
from lpm.graph.core import Graph

PathLike = Union[str, "os.PathLike[str]"]
_FLOWS = ("source_to_target", "target_to_source")


def _check_flow(flow: object) -> None:
    if flow not in _FLOWS:
        raise ConfigError(f"Expected flow in {_FLOWS} (got {flow!r})")


def _build(
    src: torch.Tensor,
    dst: torch.Tensor,
    num_nodes: Optional[int],
    weight: Optional[torch.Tensor],
    flow: str,
    where: str,
    remove_self_loops: bool,
    dedupe: bool,
) -> Graph:
    """``Graph.from_edge_index`` with the flow applied and errors prefixed by ``where``."""
    if flow == "target_to_source":
        src, dst = dst, src
    try:
        return Graph.from_edge_index(
            torch.stack([src, dst]), num_nodes, weight, remove_self_loops=remove_self_loops, dedupe=dedupe
        )
    except GraphFormatError as err:
        raise GraphFormatError(f"{where}: {err}") from err
    except ResourceError as err:
        raise ResourceError(f"{where}: {err}") from err

