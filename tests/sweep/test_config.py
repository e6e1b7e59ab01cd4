"""Grid expansion with Hydra's grammar, preset axes, and refusals that name the key and value."""

import pytest

from bench.config import ConfigError, expand_sweep, load_point, point_key


def test_default_preset_is_the_cpu_grid():
    base, points = expand_sweep([])
    assert base.name == "cpu" and base.size == "small"
    assert len(points) == 4 * 2 * 7  # models × attention_impl × seq_len 64…4096
    assert sorted({p.seq_len for p in points}) == [64, 128, 256, 512, 1024, 2048, 4096]


def test_command_line_axes_replace_the_presets():
    _, points = expand_sweep(["seq_len=range(64,4097,64)", "model=vanilla,lrt"])
    assert len(points) == 64 * 2 * 2  # attention_impl still comes from the preset
    assert points[-1].seq_len == 4096 and {p.model for p in points} == {"vanilla", "lrt"}


def test_group_override_beats_the_preset_size():
    _, points = expand_sweep(["sweep=smoke", "size=small"])
    assert {p.size for p in points} == {"small"} and len(points) == 6


def test_point_key_depends_on_config_and_machine():
    a, b = load_point(["seq_len=128"]), load_point(["seq_len=256"])
    assert point_key(a, "m1") != point_key(b, "m1")
    assert point_key(a, "m1") != point_key(a, "m2")
    assert point_key(a, "m1") == point_key(load_point(["seq_len=128", "overwrite=true"]), "m1")


@pytest.mark.parametrize("overrides, message", [
    (["batch_size=0"], "batch_size=0: must be ≥ 1"),
    (["model=bert"], "model=bert: unknown model; choose from linformer, lrt, lrt_linformer, vanilla"),
    (["model=vanilla,bert"], "model=bert: unknown model"),
    (["seq_lenn=4"], "seq_lenn=4: unknown key 'seq_lenn' (did you mean seq_len?)"),
    (["batch_size=abc"], "batch_size: Value 'abc' of type 'str' could not be converted to Integer"),
    (["seq_len=range(1,"], "seq_len=range(1,: malformed override"),
    (["seq_len=range(64,4097,0)"], "seq_len=range(64,4097,0): malformed override (range() arg 3 must not be zero)"),
    (["model=lrt", "rank=0"], "rank=0: must be a positive int"),
    (["model=linformer", "linformer_k=5000"], "linformer_k=5000: must be an int in [1, max_seq_len=4096]"),
    (["device=cuda"], "device='cuda': no CUDA GPU is visible"),
    (["seq_len=8192"], "seq_len=8192: exceeds max_seq_len=4096"),
    (["country_iso_code=XYZ"], "country_iso_code='XYZ': unknown ISO-3 code"),
    (["pue=0.5"], "pue=0.5: must be ≥ 1"),
    (["mode=serve"], "mode='serve': expected one of inference, train"),
])
def test_bad_input_names_key_and_value(overrides, message):
    import torch

    if overrides == ["device=cuda"] and torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(ValueError) as info:
        expand_sweep(overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_run_refuses_sweep_syntax():
    with pytest.raises(ConfigError, match="seq_len=1,2: sweep syntax needs `python -m bench sweep`"):
        load_point(["seq_len=1,2"])
