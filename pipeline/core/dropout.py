"""`model.fast_dropout`: dropout with a cheaper random mask, in training only (docs/performance.md, "Dropout").

PyTorch's dropout draws one 32-bit random number per element (`bernoulli_`) and multiplies in a second pass; under
SDPA, a dropout on the attention probabilities also sends a CPU to its unfused maths kernel. Here one 64-bit draw
gives four 16-bit numbers, an element is kept when its number is at least p · 65536 (of 65536), and the kept ones
are scaled by 1 / (1 − p), the scaled mask built in the tensor's own precision and kept for the backward. In
distribution this is dropout with p rounded to a multiple of 1/65536 (0.1 → 0.1000061); the random stream is not
PyTorch's, so a run with it is another run of the same model, not the same numbers. The attention probabilities get
the same mask, attention being written out (QKᵀ · scale + the additive padding mask, softmax, mask, · V) when
training with dropout (softmax in fp32, as SDPA's maths kernel computes it); otherwise, and always in evaluation
and prediction, it is SDPA as before.

For CPUs: on a GPU, PyTorch's dropout and SDPA's kernels are fused (dropout inside the attention kernel), and writing
attention out there would cost memory and time. Measured on a CPU only (bench/dropout.py).

Every `nn.Dropout` of a model (the encoder's and the heads') becomes a `FastDropout`; attention modules read their
rate from their dropout module's `p`, which `FastDropout` keeps unrounded.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, eager_mask

ATTENTION = "bam_fast_dropout"  # the attention implementation's name in transformers' registry
LEVELS = 65536  # 16-bit draws


def threshold(p: float) -> int:
    """The signed 16-bit number under which an element is dropped: p rounded to a multiple of 1/65536."""
    return round(p * LEVELS) - LEVELS // 2


def rounded(p: float) -> float:
    """The dropout rate applied for `p`."""
    return round(p * LEVELS) / LEVELS


class _ScaledMask(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        n = x.numel()
        words = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64, device=x.device)
        bits = words.view(torch.int16)[:n].view(x.shape)
        mask = (bits >= threshold(p)).to(x.dtype).mul_(1.0 / (1.0 - rounded(p)))
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (mask,) = ctx.saved_tensors
        return grad * mask, None


def fast_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """`F.dropout(x, p, training)` with the 16-bit mask (a rate that rounds to 0 drops nothing, to 1 everything)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout rate {p}: expected 0 <= p <= 1")
    if not training or rounded(p) == 0.0:
        return x
    if rounded(p) == 1.0:
        return x * 0.0
    return _ScaledMask.apply(x, p)


class FastDropout(nn.Module):
    """`nn.Dropout(p)` with the 16-bit mask; `p` as given (the rate applied is `rounded(p)`)."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def fast_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers' attention interface: written out with the 16-bit mask on the probabilities when training
    with dropout, SDPA otherwise. query/key/value [B, H, L, D]; `attention_mask` additive (`eager_mask`'s)."""
    if not (module.training and dropout > 0):
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
    weights = torch.matmul(query, key.transpose(2, 3)) * (query.size(-1) ** -0.5 if scaling is None else scaling)
    if attention_mask is not None:
        weights = weights + attention_mask
    # softmax in fp32 whatever the autocast precision, as SDPA's maths kernel computes it
    weights = fast_dropout(torch.softmax(weights, dim=-1, dtype=torch.float32), dropout).to(value.dtype)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), None


AttentionInterface.register(ATTENTION, fast_attention)
AttentionMaskInterface.register(ATTENTION, eager_mask)  # additive: the written-out sum needs it, SDPA takes it


def use_fast_dropout(model: nn.Module) -> nn.Module:
    """Every `nn.Dropout` in `model` replaced by a `FastDropout` of the same rate, and each transformers encoder in
    it set to `fast_attention` (an encoder that cannot choose its attention keeps its own, with its dropout modules
    replaced). Returns `model`, changed in place."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.Dropout:
                setattr(module, name, FastDropout(child.p))
    for module in model.modules():
        if isinstance(module, PreTrainedModel) and module.config._attn_implementation in ("sdpa", "eager"):
            module.set_attn_implementation(ATTENTION)  # a model that cannot switch keeps its own (with a warning)
    return model
