"""The models the suite measures: full/Linformer attention × dense/low-rank linears, and factorize()."""

from bench.models.attention import ATTENTION_IMPLS, LINFORMER_SHARING, FullAttention, LinformerAttention
from bench.models.encoder import MODELS, PRESETS, Encoder, EncoderConfig, build_model, make_config
from bench.models.lowrank import (
    SOLVERS,
    FactorizationReport,
    LowRankLinear,
    break_even_rank,
    count_params,
    factorize,
    resolve_rank,
)

__all__ = [
    "ATTENTION_IMPLS", "LINFORMER_SHARING", "MODELS", "PRESETS", "SOLVERS",
    "Encoder", "EncoderConfig", "FactorizationReport", "FullAttention", "LinformerAttention", "LowRankLinear",
    "break_even_rank", "build_model", "count_params", "factorize", "make_config", "resolve_rank",
]
