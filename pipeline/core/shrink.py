"""A shallower student from a deeper pretrained encoder: keep some of its transformer layers (`student.layers`), as
DistilBERT's initialisation does, so that a 3-layer student starts from the 6-layer model its teachers started from.

The kept layers are the encoder's own modules, in order; their weights are copied exactly, the embeddings and the
pooler stay, and the encoder's config says the new depth (`num_hidden_layers`), which is what layer-wise learning
rates and every later load read. Families whose layers share weights (ALBERT) have no layers to drop.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from pipeline.core.config_checks import ALL, kept_layers

# Where an encoder keeps its layer stack: BERT, RoBERTa, ELECTRA, DeBERTa (encoder.layer); DistilBERT
# (transformer.layer).
LAYER_STACKS = ("encoder.layer", "transformer.layer")


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
