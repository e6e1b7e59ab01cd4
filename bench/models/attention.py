"""Multi-head attention: full (fused `sdpa` or explicit `math`) and Linformer.

Both take a `linear` factory for their Q, K, V and output projections, so the attention kind and the
linear kind (dense or low-rank) stay independent choices.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

ATTENTION_IMPLS = ("sdpa", "math")
LINFORMER_SHARING = ("none", "headwise", "kv", "layerwise")

LinearFactory = Callable[[int, int], nn.Module]


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, impl: str, key_mask: torch.Tensor | None,
           dropout_p: float) -> torch.Tensor:
    """softmax(q·kᵀ/√d_head)·v over (batch, heads, len, d_head) tensors.

    `sdpa` is torch's fused kernel (O(n) memory on CPU, FACTS.md "What changes the crossover"); `math`
    materialises the n×n scores, as 2021 implementations did. key_mask: bool (batch, len_k), True = attend.
    """
    if impl == "sdpa":
        mask = None if key_mask is None else key_mask[:, None, None, :]
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    probs = scores.softmax(dim=-1)
    if dropout_p:
        probs = F.dropout(probs, p=dropout_p)
    return probs @ v


class _MultiHead(nn.Module):
    """The projections every attention kind shares: Q, K, V in, and the output projection."""

    def __init__(self, d_model: int, n_heads: int, impl: str, dropout: float, linear: LinearFactory) -> None:
        super().__init__()
        self.n_heads, self.d_head, self.impl, self.dropout = n_heads, d_model // n_heads, impl, dropout
        self.q_proj, self.k_proj, self.v_proj = linear(d_model, d_model), linear(d_model, d_model), linear(d_model, d_model)
        self.out_proj = linear(d_model, d_model)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.n_heads, self.d_head).transpose(1, 2)

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, length, _ = x.shape
        return self.out_proj(x.transpose(1, 2).reshape(batch, length, self.n_heads * self.d_head))

    @property
    def dropout_p(self) -> float:
        return self.dropout if self.training else 0.0


class FullAttention(_MultiHead):
    """Standard scaled dot-product attention (Vaswani et al. 2017); O(n²·d) FLOPs."""

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = (self.split_heads(proj(x)) for proj in (self.q_proj, self.k_proj, self.v_proj))
        return self.merge_heads(attend(q, k, v, self.impl, key_mask, self.dropout_p))


def linformer_projection(n_heads: int, k: int, max_seq_len: int, sharing: str) -> nn.Parameter:
    """One E (or F) of Linformer: (k × max_seq_len), or (heads × k × max_seq_len) when sharing='none'.

    Initialised U(−1/√k, 1/√k) like lucidrains' `linformer`.
    """
    shape = (n_heads, k, max_seq_len) if sharing == "none" else (k, max_seq_len)
    bound = 1.0 / math.sqrt(k)
    return nn.Parameter(torch.empty(shape).uniform_(-bound, bound))


class LinformerAttention(_MultiHead):
    """Linformer (Wang et al. 2020, arXiv 2006.04768): head_i = softmax(Q_i (E K_i)ᵀ/√d)(F V_i).

    E, F (k × max_seq_len) project the sequence axis and are sliced to the input length n, so the cost is
    O(n·k·d). Sharing (paper §4): `none` (E_i, F_i per head), `headwise` (one E, F per layer), `kv`
    (E = F per layer), `layerwise` (one E = F for all layers, passed in as `shared`). Padded positions are
    zeroed before the projection, so padding never leaks into the projected keys and values (the public
    implementations skip this).
    """

    def __init__(self, d_model: int, n_heads: int, impl: str, dropout: float, linear: LinearFactory,
                 max_seq_len: int, k: int, sharing: str, shared: nn.Parameter | None = None) -> None:
        super().__init__(d_model, n_heads, impl, dropout, linear)
        self.sharing, self.k = sharing, k
        if sharing == "layerwise":
            if shared is None:
                raise ValueError("linformer_sharing='layerwise' needs the encoder's shared projection")
            self.proj_e = shared
        else:
            self.proj_e = linformer_projection(n_heads, k, max_seq_len, sharing)
        self.proj_f = linformer_projection(n_heads, k, max_seq_len, sharing) if sharing in ("none", "headwise") else None

    def _project(self, x: torch.Tensor, proj: torch.Tensor) -> torch.Tensor:
        """(batch, n, d_model) → (batch, heads, k, d_head) through proj[..., :n]."""
        n = x.shape[1]
        if proj.dim() == 3:  # one projection per head
            return proj[:, :, :n] @ self.split_heads(x)
        return self.split_heads(proj[:, :n] @ x)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        q = self.split_heads(self.q_proj(x))
        keys, values = self.k_proj(x), self.v_proj(x)
        if key_mask is not None:
            keep = key_mask[:, :, None].to(keys.dtype)
            keys, values = keys * keep, values * keep
        proj_f = self.proj_e if self.proj_f is None else self.proj_f
        k, v = self._project(keys, self.proj_e), self._project(values, proj_f)
        return self.merge_heads(attend(q, k, v, self.impl, None, self.dropout_p))
