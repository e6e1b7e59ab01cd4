"""The encoder: one stack, built from an attention kind × a linear kind; size presets; build_model().

The four models of the suite are two independent switches (../shared/DESIGN.md):
vanilla = full + dense, lrt = full + low-rank, linformer = Linformer + dense, lrt_linformer = both.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import nn

from bench.models.attention import ATTENTION_IMPLS, LINFORMER_SHARING, FullAttention, LinformerAttention, linformer_projection
from bench.models.lowrank import break_even_rank, check_rank, factorize, resolve_rank

MODELS: dict[str, tuple[str, str]] = {
    "vanilla": ("full", "dense"),
    "lrt": ("full", "lowrank"),
    "linformer": ("linformer", "dense"),
    "lrt_linformer": ("linformer", "lowrank"),
}
NORM_STYLES = ("post", "pre")


@dataclass(frozen=True)
class EncoderConfig:
    """Every size and method field of an encoder. `rank` is used by the low-rank models only and
    `linformer_k`/`linformer_sharing` by the Linformer ones."""

    model: str = "vanilla"
    d_model: int = 256
    n_heads: int = 4
    d_ff: int = 1024
    n_layers: int = 4
    max_seq_len: int = 4096
    rank: int | float = 64
    linformer_k: int = 256
    linformer_sharing: str = "layerwise"
    attention_impl: str = "sdpa"
    dropout: float = 0.0
    norm: str = "post"
    vocab_size: int | None = None
    learned_positions: bool = False
    layer_norm_eps: float = 1e-12

    @property
    def attention_kind(self) -> str:
        return MODELS[self.model][0]

    @property
    def linear_kind(self) -> str:
        return MODELS[self.model][1]

    def validate(self) -> EncoderConfig:
        """Raise ValueError naming the first bad field and its value; allocates nothing."""
        if self.model not in MODELS:
            raise ValueError(f"model={self.model!r}: expected one of {', '.join(MODELS)}")
        for key in ("d_model", "n_heads", "d_ff", "n_layers", "max_seq_len"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key}={value!r}: must be a positive int")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model}: not divisible by n_heads={self.n_heads}")
        if self.attention_impl not in ATTENTION_IMPLS:
            raise ValueError(f"attention_impl={self.attention_impl!r}: expected one of {', '.join(ATTENTION_IMPLS)}")
        if self.norm not in NORM_STYLES:
            raise ValueError(f"norm={self.norm!r}: expected one of {', '.join(NORM_STYLES)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout}: must lie in [0, 1)")
        if self.vocab_size is not None and (isinstance(self.vocab_size, bool) or self.vocab_size < 1):
            raise ValueError(f"vocab_size={self.vocab_size!r}: must be a positive int or None")
        if self.linear_kind == "lowrank":
            check_rank(self.rank)
            if all(resolve_rank(self.rank, i, o) is None for i, o in self.linear_shapes()):
                smallest = min(break_even_rank(i, o) for i, o in self.linear_shapes())
                raise ValueError(f"rank={self.rank}: reaches the break-even rank of every layer (smallest "
                                 f"break-even {smallest:g} for d_model={self.d_model}, d_ff={self.d_ff})")
        if self.attention_kind == "linformer":
            if self.linformer_sharing not in LINFORMER_SHARING:
                raise ValueError(f"linformer_sharing={self.linformer_sharing!r}: expected one of "
                                 f"{', '.join(LINFORMER_SHARING)}")
            k = self.linformer_k
            if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.max_seq_len:
                raise ValueError(f"linformer_k={k!r}: must be an int in [1, max_seq_len={self.max_seq_len}]")
        return self

    def linear_shapes(self) -> list[tuple[int, int]]:
        """(in, out) of one layer's projections: Q, K, V, output, then the two FFN linears."""
        d, ff = self.d_model, self.d_ff
        return [(d, d)] * 4 + [(d, ff), (ff, d)]

    def layer_rank(self, in_features: int, out_features: int) -> int | None:
        """The rank a projection gets in this model; None = dense."""
        if self.linear_kind != "lowrank":
            return None
        return resolve_rank(self.rank, in_features, out_features)

    def param_count(self) -> int:
        """Closed-form parameter count.

        Per layer: Σ linear params (dense i·o + o; low-rank r·(i+o) + o) + two LayerNorms (2·2·d).
        Linformer E/F: 2·h·k·N per layer (`none`), 2·k·N (`headwise`), k·N (`kv`), k·N in all (`layerwise`).
        Plus token embeddings V·d, learned positions N·d, and a final LayerNorm 2·d for pre-norm.
        """
        d, n_max, k = self.d_model, self.max_seq_len, self.linformer_k
        per_layer = 4 * d
        for i, o in self.linear_shapes():
            r = self.layer_rank(i, o)
            per_layer += (i * o if r is None else r * (i + o)) + o
        total = self.n_layers * per_layer
        if self.attention_kind == "linformer":
            per_matrix = k * n_max
            total += {"none": 2 * self.n_heads * per_matrix * self.n_layers,
                      "headwise": 2 * per_matrix * self.n_layers,
                      "kv": per_matrix * self.n_layers,
                      "layerwise": per_matrix}[self.linformer_sharing]
        if self.vocab_size:
            total += self.vocab_size * d
        if self.learned_positions:
            total += n_max * d
        if self.norm == "pre":
            total += 2 * d
        return total


PRESETS: dict[str, dict] = {
    # Small enough for unit tests to build and run in milliseconds.
    "tiny": dict(d_model=64, n_heads=4, d_ff=256, n_layers=2, max_seq_len=4096, rank=16, linformer_k=32),
    # Default CPU sweeps: a 4-layer, 256-wide encoder finishes seq_len 64…4096 in minutes on 2 cores.
    "small": dict(d_model=256, n_heads=4, d_ff=1024, n_layers=4, max_seq_len=4096, rank=64, linformer_k=256),
    # BERT-base (Devlin et al. 2019): 12 × (768, 12 heads, 3072); positions extended from 512 to 4096 for
    # long-sequence sweeps. Rank 256 halves the encoder's linear weights (greenformer's BERT example) and
    # k = 256 is Linformer's setting for n ≥ 1024 (FACTS.md).
    "bert_base": dict(d_model=768, n_heads=12, d_ff=3072, n_layers=12, max_seq_len=4096, rank=256, linformer_k=256),
}
CONFIG_FIELDS = {f.name for f in fields(EncoderConfig)}


def make_config(name: str, preset: str = "small", **overrides) -> EncoderConfig:
    """EncoderConfig for model `name` from a size preset plus field overrides, validated."""
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r}: expected one of {', '.join(PRESETS)}")
    unknown = sorted(set(overrides) - CONFIG_FIELDS)
    if unknown:
        raise ValueError(f"{unknown[0]}={overrides[unknown[0]]!r}: unknown model field; known: {', '.join(sorted(CONFIG_FIELDS - {'model'}))}")
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    return EncoderConfig(model=name, **values).validate()


class EncoderLayer(nn.Module):
    """Attention + GELU feed-forward, each with a residual and LayerNorm (post-norm as BERT, or pre-norm)."""

    def __init__(self, cfg: EncoderConfig, attention: nn.Module) -> None:
        super().__init__()
        self.pre_norm = cfg.norm == "pre"
        self.attention = attention
        self.ffn = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, cfg.d_model))
        self.norm1 = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.norm2 = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.dropout(self.attention(self.norm1(x), key_mask))
            return x + self.dropout(self.ffn(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.attention(x, key_mask)))
        return self.norm2(x + self.dropout(self.ffn(x)))


class Encoder(nn.Module):
    """Optional token embeddings and learned positions, then N encoder layers.

    forward(x, attention_mask=None): x is hidden states (batch, seq_len, d_model) or token ids
    (batch, seq_len) when built with a vocabulary; attention_mask (batch, seq_len) has 1 for real tokens and
    0 for padding (the Hugging Face convention). Returns (batch, seq_len, d_model).
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        cfg.validate()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model) if cfg.vocab_size else None
        self.positions = nn.Embedding(cfg.max_seq_len, cfg.d_model) if cfg.learned_positions else None
        shared = None
        if cfg.attention_kind == "linformer" and cfg.linformer_sharing == "layerwise":
            shared = linformer_projection(cfg.n_heads, cfg.linformer_k, cfg.max_seq_len, "layerwise")
        self.layers = nn.ModuleList(EncoderLayer(cfg, self._attention(cfg, shared)) for _ in range(cfg.n_layers))
        self.final_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps) if cfg.norm == "pre" else None
        self.dropout = nn.Dropout(cfg.dropout)

    @staticmethod
    def _attention(cfg: EncoderConfig, shared: nn.Parameter | None) -> nn.Module:
        if cfg.attention_kind == "full":
            return FullAttention(cfg.d_model, cfg.n_heads, cfg.attention_impl, cfg.dropout, nn.Linear)
        return LinformerAttention(cfg.d_model, cfg.n_heads, cfg.attention_impl, cfg.dropout, nn.Linear,
                                  cfg.max_seq_len, cfg.linformer_k, cfg.linformer_sharing, shared)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        seq_len = x.shape[1]
        if seq_len > self.config.max_seq_len:
            raise ValueError(f"seq_len={seq_len}: exceeds max_seq_len={self.config.max_seq_len}")
        if self.embed is not None:
            x = self.embed(x)
        elif not x.is_floating_point():
            raise ValueError(f"x.dtype={x.dtype}: token ids given but the model has no vocabulary (vocab_size=None)")
        if self.positions is not None:
            x = x + self.positions.weight[:seq_len]
        x = self.dropout(x)
        key_mask = None if attention_mask is None else attention_mask.to(torch.bool)
        for layer in self.layers:
            x = layer(x, key_mask)
        return x if self.final_norm is None else self.final_norm(x)


def build_model(name: str, **overrides) -> nn.Module:
    """One of the four models, from a preset (`preset=`, default `small`) and field overrides.

    The low-rank models are the dense encoder passed through `factorize(solver="random")`, so LRT's rank
    rule (and its report of layers kept dense) is the one `factorize()` applies to any model.
    """
    preset = overrides.pop("preset", None) or "small"
    cfg = make_config(name, preset, **overrides)
    model = Encoder(cfg)
    if cfg.linear_kind == "lowrank":
        factorize(model, cfg.rank, solver="random")
    return model

