"""LowRankLinear, the rank rule and factorize(): parameter formulas, SVD optimality, reports, errors."""

import math

import pytest
import torch
from torch import nn

from bench.models import LowRankLinear, break_even_rank, count_params, factorize, resolve_rank


def test_break_even_ranks_match_facts():
    assert break_even_rank(768, 768) == 384
    assert break_even_rank(768, 3072) == pytest.approx(614.4)


@pytest.mark.parametrize("rank, expected", [(100, 100), (0.5, 192), (0.25, 96), (384, None), (383, 383), (0.999, 383)])
def test_resolve_rank_follows_greenformer(rank, expected):
    assert resolve_rank(rank, 768, 768) == expected


def test_low_rank_linear_params_and_output_shape():
    layer = LowRankLinear(768, 3072, 256)
    assert count_params(layer) == 256 * (768 + 3072) + 3072
    assert layer(torch.randn(2, 5, 768)).shape == (2, 5, 3072)


def test_svd_of_a_low_rank_weight_is_exact():
    torch.manual_seed(0)
    dense = nn.Linear(96, 64)
    with torch.no_grad():
        dense.weight.copy_(torch.randn(64, 8) @ torch.randn(8, 96))
    x = torch.randn(10, 96)
    expected = dense(x)
    model = factorize(nn.Sequential(dense), rank=8)
    got = model(x)
    assert isinstance(model[0], LowRankLinear)
    assert ((got - expected).norm() / expected.norm()).item() < 1e-5


def test_svd_reaches_eckart_young_optimum_and_beats_randomized():
    torch.manual_seed(0)
    dense = nn.Linear(128, 96)
    w = dense.weight.detach().double().clone()
    singular = torch.linalg.svdvals(w)
    rank = 20
    optimum = (singular[rank:].square().sum().sqrt() / w.norm()).item()

    exact = factorize(nn.Sequential(dense), rank, solver="svd", deepcopy=True)
    randomized = factorize(nn.Sequential(dense), rank, solver="svd_lowrank", deepcopy=True, num_iter=2)
    exact_err = exact.factorization_report.layers[0].rel_error
    assert exact_err == pytest.approx(optimum, rel=1e-6)
    assert exact_err == pytest.approx((w - exact[0].dense_weight().double()).norm().item() / w.norm().item(), rel=1e-5)
    assert exact_err <= randomized.factorization_report.layers[0].rel_error + 1e-12


def test_factorize_report_and_dense_fallback_is_reported():
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8))  # break-even 32 and 7.1
    with pytest.warns(UserWarning, match="kept dense.*2"):
        factorize(model, rank=16)
    report = model.factorization_report
    assert [layer.action for layer in report.layers] == ["factorized", "dense"]
    assert report.params_before == 64 * 64 + 64 + 64 * 8 + 8
    assert report.params_after == 16 * 128 + 64 + 64 * 8 + 8 == count_params(model)
    assert "1 layers factorized, 1 kept dense" in report.summary()


def test_factorize_skip_patterns_and_deepcopy():
    original = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 64))
    copy = factorize(original, rank=8, deepcopy=True, skip=["1"])
    assert isinstance(original[0], nn.Linear) and isinstance(copy[0], LowRankLinear)
    assert isinstance(copy[1], nn.Linear)


def test_factorize_hf_bert_base_changes_params_by_formula():
    transformers = pytest.importorskip("transformers")
    bert = transformers.BertModel(transformers.BertConfig())
    assert count_params(bert) == 109_482_240
    rank = 256
    factorize(bert, rank, solver="random")
    # 12 layers × (4 attention 768² + 768→3072 + 3072→768) + the pooler's 768²: each loses i·o − r·(i+o).
    saved = 12 * (4 * (768 * 768 - rank * 1536) + 2 * (768 * 3072 - rank * 3840)) + (768 * 768 - rank * 1536)
    assert count_params(bert) == 109_482_240 - saved == 66_818_304
    assert len(bert.factorization_report.factorized) == 73


def test_factorize_hf_conv1d():
    pytorch_utils = pytest.importorskip("transformers.pytorch_utils")
    conv = pytorch_utils.Conv1D(48, 32)  # nf=48 outputs, nx=32 inputs, weight stored (in × out)
    x = torch.randn(3, 32)
    expected = conv(x)
    model = factorize(nn.Sequential(conv), rank=16)  # full rank of a 32×48 weight is 32 > 16 < break-even 19.2
    assert isinstance(model[0], LowRankLinear)
    assert model[0].in_features == 32 and model[0].out_features == 48
    err = model.factorization_report.layers[0].rel_error
    assert 0 < err < 1
    assert ((model(x) - expected).norm() / expected.norm()).item() < 1.0


@pytest.mark.parametrize("rank, message", [
    (0, "rank=0: must be a positive int"),
    (-3, "rank=-3"),
    (1.5, "rank=1.5: a float rank"),
    (64, "rank=64: reaches the break-even rank of every layer"),
])
def test_factorize_rejects_bad_ranks(rank, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        factorize(nn.Sequential(nn.Linear(64, 64)), rank)


def test_factorize_rejects_unknown_solver():
    with pytest.raises(ValueError, match="solver='qr': expected one of svd, svd_lowrank, random"):
        factorize(nn.Linear(4, 4), 1, solver="qr")


def test_random_solver_keeps_bias_and_float_rank():
    dense = nn.Linear(100, 50)
    model = factorize(nn.Sequential(dense), rank=0.5, solver="random", deepcopy=True)
    assert model[0].rank == math.floor(0.5 * 100 * 50 / 150)
    assert torch.equal(model[0].decoder.bias, dense.bias)
