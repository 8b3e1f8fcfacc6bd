"""A shallower student from a deeper pretrained encoder: keep some of its transformer layers (`student.layers`), as
DistilBERT's initialisation does, so that a 3-layer student starts from the 6-layer model its teachers started from.

The kept layers are the encoder's own modules, in order; their weights are copied exactly, the embeddings and the
pooler stay, and the encoder's config says the new depth (`num_hidden_layers`), which is what layer-wise learning
rates and every later load read. Families whose layers share weights (ALBERT) have no layers to drop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

ALL, EVERY_OTHER = "all", "every_other"
# Where an encoder keeps its layer stack: BERT, RoBERTa, ELECTRA, DeBERTa (encoder.layer); DistilBERT
# (transformer.layer).
LAYER_STACKS = ("encoder.layer", "transformer.layer")


def kept_layers(layers: str | Sequence[int], depth: int | None, key: str = "student.layers") -> list[int]:
    """The indices (0 = the bottom layer) `layers` keeps of an encoder of `depth` layers: all of them; every other
    one counted from the top, so the top layer, whose outputs the pooler was trained on, stays (6 → 1, 3, 5); or
    the explicit list. An index out of range or out of order is a ValueError naming `key`; with `depth` None (not
    known yet) only a list is checked, for everything but its range."""
    if layers == ALL or layers == EVERY_OTHER:
        if depth is None:
            return []
        return list(range(depth)) if layers == ALL else list(range(depth - 1, -1, -2))[::-1]
    indices = list(layers)
    top = math.inf if depth is None else depth
    if not indices or any(not 0 <= i < top for i in indices) or indices != sorted(set(indices)):
        which = "" if depth is None else f" of the {depth}-layer encoder (0 to {depth - 1})"
        raise ValueError(
            f"'{key}' {indices}: expected layer indices{which}, from 0 (the bottom layer), at least one, each "
            "once, in increasing order"
        )
    return indices


def layer_stack(encoder: nn.Module, key: str = "student.layers") -> tuple[nn.Module, str, nn.ModuleList]:
    """(the module holding the layer list, the list's attribute name, the list) of a BERT-family encoder."""
    for path in LAYER_STACKS:
        parent_path, name = path.rsplit(".", 1)
        parent = encoder.get_submodule(parent_path) if _has(encoder, parent_path) else None
        stack = getattr(parent, name, None)
        if isinstance(stack, nn.ModuleList):
            return parent, name, stack
    kind = getattr(encoder.config, "model_type", type(encoder).__name__)
    raise ValueError(f"'{key}': a {kind} encoder has no separate layers to keep (e.g. ALBERT shares them)")


def keep_layers(encoder: nn.Module, layers: str | Sequence[int], key: str = "student.layers") -> nn.Module:
    """`encoder` with only the layers `layers` (the config's `key`) names (`kept_layers`), in place; its config's
    depth follows."""
    if layers == ALL:
        return encoder
    parent, name, stack = layer_stack(encoder, key)
    keep = kept_layers(layers, len(stack), key)
    if keep == list(range(len(stack))):
        return encoder
    setattr(parent, name, nn.ModuleList(stack[i] for i in keep))
    for new_index, layer in enumerate(getattr(parent, name)):
        for module in layer.modules():  # attention caches are indexed by layer: keep the numbering dense
            if isinstance(getattr(module, "layer_idx", None), int):
                module.layer_idx = new_index
    encoder.config.num_hidden_layers = len(keep)
    return encoder


def _has(module: nn.Module, path: str) -> bool:
    try:
        module.get_submodule(path)
    except AttributeError:
        return False
    return True
