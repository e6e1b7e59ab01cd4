"""Benchmarks at BERT-base layer sizes, batch 1, inference (issue 2's speed targets)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.measure.flops import forward_flops
from bench.models import LowRankLinear, build_model
from tests.benchmarks.conftest import record

pytestmark = pytest.mark.bench
D, FF = 768, 3072


def test_matmul_peak(benchmark):
    """The machine's fp32 matmul peak: 2·n³ FLOPs for an n×n product (n = 2048, FACTS.md)."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    benchmark.pedantic(torch.mm, args=(a, b), rounds=10, warmup_rounds=2)
    record(benchmark, "matmul_peak", 2 * 2048**3)


@pytest.mark.parametrize("rank", [None, 64, 128, 256, 384])
def test_linear(benchmark, rank):
    """768→3072 over 512 tokens: 2·T·i·o dense, 2·T·r·(i+o) low-rank."""
    layer = nn.Linear(D, FF) if rank is None else LowRankLinear(D, FF, rank)
    x = torch.randn(512, D)
    with torch.inference_mode():
        benchmark.pedantic(layer, args=(x,), rounds=20, warmup_rounds=3)
    flops = 2 * 512 * (D * FF if rank is None else rank * (D + FF))
    record(benchmark, f"linear/{'dense' if rank is None else f'rank={rank}'}", flops)


def _one_layer(name: str, impl: str):
    return build_model(name, preset="bert_base", n_layers=1, attention_impl=impl).eval()


@pytest.mark.parametrize("seq_len", [512, 1024, 2048, 4096])
@pytest.mark.parametrize("name, impl", [("vanilla", "sdpa"), ("vanilla", "math"), ("linformer", "sdpa")])
def test_attention(benchmark, name, impl, seq_len):
    """Attention block alone (projections included); FLOPs = the layer's minus its FFN."""
    model = _one_layer(name, impl)
    attention = model.layers[0].attention
    x = torch.randn(1, seq_len, D)
    with torch.inference_mode():
        benchmark.pedantic(attention, args=(x,), rounds=5, warmup_rounds=1)
    flops = forward_flops(model.config, seq_len) - 2 * 2 * seq_len * D * FF
    record(benchmark, f"attention/{name}/{impl}/n={seq_len}", flops)


@pytest.mark.parametrize("seq_len", [512, 4096])
@pytest.mark.parametrize("name, impl", [("vanilla", "sdpa"), ("vanilla", "math"), ("lrt", "sdpa"),
                                        ("linformer", "sdpa"), ("linformer", "math"), ("lrt_linformer", "sdpa")])
def test_encoder_layer(benchmark, name, impl, seq_len):
    model = _one_layer(name, impl)
    x = torch.randn(1, seq_len, D)
    with torch.inference_mode():
        benchmark.pedantic(model, args=(x,), rounds=5, warmup_rounds=1)
    record(benchmark, f"layer/{name}/{impl}/n={seq_len}", forward_flops(model.config, seq_len))
