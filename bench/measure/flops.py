"""FLOPs per step: analytic formulas for the four encoders, and a counter to cross-check them.

Convention (torch.utils.flop_counter and most papers since Kaplan et al. 2020): a matmul of (M×K)·(K×N)
costs 2·M·N·K FLOPs; bias adds, softmax, LayerNorm and GELU are not counted (they are O(n·d), memory-bound,
and FlopCounterMode ignores them too). fvcore counts half of this (FACTS.md, "Measuring on CPU").

The config is duck-typed (any object with the EncoderConfig fields and `linear_shapes()` /
`layer_rank()`), so this room never imports bench.models (../shared/DESIGN.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from bench.measure.workload import MODES

# Training step = forward + backward, and backward ≈ 2× forward (gradients w.r.t. activations and weights):
# Kaplan et al. 2020 (arXiv 2001.08361) §2.1, Narayanan et al. 2021 (arXiv 2104.04473) §5.1.
TRAIN_FLOPS_MULTIPLIER = 3


class EncoderShape(Protocol):
    d_model: int
    n_heads: int
    n_layers: int
    linformer_k: int
    attention_kind: str

    def linear_shapes(self) -> list[tuple[int, int]]: ...

    def layer_rank(self, in_features: int, out_features: int) -> int | None: ...


def flop_breakdown(cfg: EncoderShape, seq_len: int, batch_size: int = 1) -> dict[str, int]:
    """Forward FLOPs of the whole encoder by component, for `batch_size` sequences of `seq_len` tokens.

    With T = batch·n tokens, d = d_model, L layers:
    - linear: L · Σ 2·T·i·o for a dense (i→o) projection, 2·T·r·(i+o) for a rank-r one;
    - attention (full): L · 4·batch·n²·d  (Q·Kᵀ and P·V, each 2·n·n·d per sequence);
    - attention (Linformer): L · 4·batch·n·k·d  (Q·(EK)ᵀ and P·(FV) against k projected positions);
    - linformer_projection: L · 4·batch·k·n·d  (E·K and F·V, each 2·k·n·d per sequence).
    """
    tokens, d, layers = batch_size * seq_len, cfg.d_model, cfg.n_layers
    linear = 0
    for i, o in cfg.linear_shapes():
        r = cfg.layer_rank(i, o)
        linear += 2 * tokens * (i * o if r is None else r * (i + o))
    if cfg.attention_kind == "linformer":
        k = cfg.linformer_k
        return {"linear": layers * linear,
                "attention": layers * 4 * batch_size * seq_len * k * d,
                "linformer_projection": layers * 4 * batch_size * k * seq_len * d}
    return {"linear": layers * linear, "attention": layers * 4 * batch_size * seq_len * seq_len * d,
            "linformer_projection": 0}


def forward_flops(cfg: EncoderShape, seq_len: int, batch_size: int = 1) -> int:
    """Analytic forward FLOPs: the sum of `flop_breakdown`."""
    return sum(flop_breakdown(cfg, seq_len, batch_size).values())


def step_flops(cfg: EncoderShape, seq_len: int, batch_size: int = 1, mode: str = "inference") -> int:
    """FLOPs of one measured step: a forward (inference) or forward + backward = 3× forward (train)."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: expected one of {', '.join(MODES)}")
    fwd = forward_flops(cfg, seq_len, batch_size)
    return fwd if mode == "inference" else TRAIN_FLOPS_MULTIPLIER * fwd


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs that torch.utils.flop_counter.FlopCounterMode sees while `fn()` runs.

    Runs under the MATH SDPA backend: the fused CPU kernel is counted as 0 FLOPs (FACTS.md), while the
    math backend decomposes attention into counted matmuls.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter:
        fn()
    return int(counter.get_total_flops())

