"""The authors' state-dict layout: which torch module of theirs each Flax layer of ours is.

Each network states its layout (`torch_layout()`) beside its definition; `convert.py` turns
state dicts into variables and back from it.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class LayerMap:
  """One parameterised torch module and the Flax module it corresponds to."""
  torch_prefix: str           # e.g. "model.model.1.model.2"
  flax_path: tuple[str, ...]  # e.g. ("down_1_norm",)
  kind: str                   # conv | conv_transpose | batch_norm | instance_norm


def norm(norm_type: str, torch_prefix: str, flax_path: tuple[str, ...]) -> list[LayerMap]:
  """The entry of a norm layer; none for 'none', an Identity that keeps its index in the
  authors' Sequentials but holds no state."""
  kind = {"batch": "batch_norm", "instance": "instance_norm"}.get(norm_type)
  return [LayerMap(torch_prefix, flax_path, kind)] if kind else []
