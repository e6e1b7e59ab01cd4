"""The four encoders: closed-form parameter counts, sdpa == math, padding, shapes and refusals."""

import pytest
import torch

from bench.models import MODELS, LINFORMER_SHARING, LowRankLinear, build_model, count_params, make_config

TINY = dict(preset="tiny")


def _params_by_hand(model: str, sharing: str = "layerwise", d=64, h=4, ff=256, layers=2, n_max=4096, r=16, k=32):
    """Independent of EncoderConfig.param_count: written out per the definitions in FACTS.md."""
    lowrank = model in ("lrt", "lrt_linformer")
    def lin(i, o):
        rank = r if lowrank and r < i * o / (i + o) else None
        return (i * o if rank is None else rank * (i + o)) + o
    per_layer = 4 * lin(d, d) + lin(d, ff) + lin(ff, d) + 2 * 2 * d
    total = layers * per_layer
    if model in ("linformer", "lrt_linformer"):
        total += {"none": 2 * h * k * n_max * layers, "headwise": 2 * k * n_max * layers,
                  "kv": k * n_max * layers, "layerwise": k * n_max}[sharing]
    return total


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("sharing", LINFORMER_SHARING)
def test_param_counts_match_closed_form(name, sharing):
    model = build_model(name, linformer_sharing=sharing, **TINY)
    assert count_params(model) == _params_by_hand(name, sharing) == model.config.param_count()


def test_bert_base_lrt_halves_the_encoder_linears():
    dense, low = make_config("vanilla", "bert_base"), make_config("lrt", "bert_base")
    linear = lambda cfg: cfg.param_count() - cfg.n_layers * 4 * cfg.d_model - cfg.n_layers * (4 * 768 + 3072 + 768)
    assert linear(low) * 2 == linear(dense)  # rank 256: 4·256·1536 + 2·256·3840 = ½(4·768² + 2·768·3072)


def test_ffn_stays_dense_when_rank_reaches_its_break_even_and_it_is_reported():
    # d=64, ff=256: break-even 32 for Q/K/V/O, 51.2 for the FFN; rank 40 factorizes only the FFN.
    with pytest.warns(UserWarning, match="kept dense"):
        model = build_model("lrt", rank=40, **TINY)
    kept = model.factorization_report.kept_dense
    assert len(kept) == 8 and all("attention" in layer.name for layer in kept)
    assert isinstance(model.layers[0].ffn[0], LowRankLinear)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("norm", ["post", "pre"])
def test_sdpa_and_math_agree(name, norm):
    torch.manual_seed(0)
    sdpa = build_model(name, attention_impl="sdpa", norm=norm, **TINY).eval()
    math_ = build_model(name, attention_impl="math", norm=norm, **TINY).eval()
    math_.load_state_dict(sdpa.state_dict())
    x = torch.randn(2, 96, 64)
    mask = torch.ones(2, 96, dtype=torch.long)
    mask[1, 70:] = 0
    torch.testing.assert_close(sdpa(x, mask), math_(x, mask), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("sharing", LINFORMER_SHARING)
def test_padding_never_leaks(name, sharing):
    """A padded batch with its mask gives, at real positions, the outputs of the unpadded sequences."""
    torch.manual_seed(0)
    model = build_model(name, linformer_sharing=sharing, **TINY).eval()
    lengths, width = [50, 33], 64
    seqs = [torch.randn(1, n, 64) for n in lengths]
    batch = torch.zeros(2, width, 64)
    mask = torch.zeros(2, width, dtype=torch.long)
    for i, (seq, n) in enumerate(zip(seqs, lengths)):
        batch[i, :n] = seq[0]
        batch[i, n:] = 1e3 * torch.randn(width - n, 64)  # garbage that must not leak
        mask[i, :n] = 1
    padded = model(batch, mask)
    for i, (seq, n) in enumerate(zip(seqs, lengths)):
        torch.testing.assert_close(padded[i, :n], model(seq)[0], rtol=1e-4, atol=1e-4)


def test_token_ids_and_learned_positions():
    model = build_model("lrt_linformer", vocab_size=100, learned_positions=True, **TINY)
    ids = torch.randint(0, 100, (3, 40))
    assert model(ids, torch.ones(3, 40)).shape == (3, 40, 64)
    assert count_params(model) == model.config.param_count() == _params_by_hand("lrt_linformer") + 100 * 64 + 4096 * 64


def test_sharing_shares_the_same_tensor():
    layerwise = build_model("linformer", linformer_sharing="layerwise", **TINY)
    assert layerwise.layers[0].attention.proj_e is layerwise.layers[1].attention.proj_e
    kv = build_model("linformer", linformer_sharing="kv", **TINY)
    assert kv.layers[0].attention.proj_f is None and kv.layers[0].attention.proj_e is not kv.layers[1].attention.proj_e
    assert build_model("linformer", linformer_sharing="none", **TINY).layers[0].attention.proj_e.shape == (4, 32, 4096)


@pytest.mark.parametrize("overrides, message", [
    (dict(name="vanilla", d_model=60, n_heads=8), "d_model=60: not divisible by n_heads=8"),
    (dict(name="lrt", rank=0), "rank=0: must be a positive int"),
    (dict(name="lrt", rank=52), "rank=52: reaches the break-even rank of every layer"),
    (dict(name="linformer", linformer_k=0), "linformer_k=0: must be an int in [1, max_seq_len=4096]"),
    (dict(name="linformer", linformer_k=5000), "linformer_k=5000"),
    (dict(name="linformer", linformer_sharing="rows"), "linformer_sharing='rows': expected one of none, headwise, kv, layerwise"),
    (dict(name="vanilla", attention_impl="flash"), "attention_impl='flash': expected one of sdpa, math"),
    (dict(name="bert"), "model='bert': expected one of vanilla, lrt, linformer, lrt_linformer"),
    (dict(name="vanilla", preset="huge"), "preset='huge'"),
    (dict(name="vanilla", heads=3), "heads=3: unknown model field"),
])
def test_bad_input_is_refused_before_allocation(overrides, message, monkeypatch):
    def no_allocation(*args, **kwargs):
        raise AssertionError("allocated a module before validating")
    monkeypatch.setattr(torch.nn.Module, "__init__", no_allocation)
    name = overrides.pop("name")
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build_model(name, **{"preset": "tiny", **overrides})


def test_seq_len_beyond_max_is_refused():
    model = build_model("vanilla", max_seq_len=128, **TINY)
    with pytest.raises(ValueError, match="seq_len=129: exceeds max_seq_len=128"):
        model(torch.randn(1, 129, 64))
