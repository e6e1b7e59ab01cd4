"""Analytic FLOPs == FlopCounterMode's count (math SDPA backend) for every model at two sizes."""

import pytest
import torch

from bench.measure.flops import TRAIN_FLOPS_MULTIPLIER, count_flops, flop_breakdown, forward_flops, step_flops
from bench.models import LINFORMER_SHARING, MODELS, build_model

SIZES = [dict(preset="tiny"), dict(preset="tiny", d_model=96, n_heads=6, d_ff=200, n_layers=3, rank=20, linformer_k=48)]


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("size", SIZES, ids=["tiny", "odd"])
@pytest.mark.parametrize("seq_len, batch", [(40, 2), (160, 1)])
def test_analytic_equals_counted(name, size, seq_len, batch):
    model = build_model(name, **size).eval()
    x = torch.randn(batch, seq_len, model.config.d_model)
    with torch.no_grad():
        assert count_flops(lambda: model(x)) == forward_flops(model.config, seq_len, batch)


@pytest.mark.parametrize("sharing", LINFORMER_SHARING)
def test_linformer_sharing_does_not_change_flops(sharing):
    model = build_model("linformer", preset="tiny", linformer_sharing=sharing).eval()
    x = torch.randn(1, 100, 64)
    with torch.no_grad():
        assert count_flops(lambda: model(x)) == forward_flops(model.config, 100)


def test_closed_forms_for_bert_base():
    from bench.models import make_config

    d, ff, n, L = 768, 3072, 512, 12
    vanilla = make_config("vanilla", "bert_base")
    assert flop_breakdown(vanilla, n) == {"linear": L * 2 * n * (4 * d * d + 2 * d * ff),
                                          "attention": L * 4 * n * n * d, "linformer_projection": 0}
    lrt = make_config("lrt", "bert_base")
    assert flop_breakdown(lrt, n)["linear"] == L * 2 * n * 256 * (4 * 2 * d + 2 * (d + ff))
    lin = make_config("linformer", "bert_base")
    assert flop_breakdown(lin, n)["attention"] == flop_breakdown(lin, n)["linformer_projection"] == L * 4 * n * 256 * d
    assert step_flops(vanilla, n, 8, "train") == TRAIN_FLOPS_MULTIPLIER * 8 * forward_flops(vanilla, n)


def test_sdpa_is_counted_through_the_math_backend():
    """The fused CPU kernel counts as 0 (FACTS.md); count_flops must still see Q·Kᵀ and P·V."""
    q = torch.randn(1, 4, 256, 16)
    assert count_flops(lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q)) == 2 * 2 * 4 * 256 * 256 * 16


def test_unknown_mode_is_refused():
    from bench.models import make_config

    with pytest.raises(ValueError, match="mode='serve': expected one of inference, train"):
        step_flops(make_config("vanilla", "tiny"), 64, 1, "serve")
