"""make_step and make_inputs: a train step trains, an inference step doesn't."""

import pytest
import torch
from torch import nn

from bench.measure.workload import make_inputs, make_step


class Tiny(nn.Module):
    """Records how it was called; output shape (batch, seq, d) like an encoder."""

    def __init__(self, d=8, output="tensor"):
        super().__init__()
        self.proj = nn.Linear(d, d)
        self.output = output
        self.calls = []

    def forward(self, x, attention_mask=None):
        self.calls.append({"grad": torch.is_grad_enabled(), "training": self.training, "mask": attention_mask})
        y = self.proj(x)
        if self.output == "tuple":
            return (y, None)
        if self.output == "dict":
            return {"last_hidden_state": y}
        return y


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


def test_inference_step_leaves_parameters_untouched_and_tracks_no_grad():
    model, x = Tiny(), make_inputs(2, 5, 8)
    before = _params(model)
    out = make_step(model, "inference", x)()
    assert out.shape == (2, 5, 8) and not out.requires_grad
    assert model.calls[-1]["grad"] is False and model.calls[-1]["training"] is False
    assert all(torch.equal(a, b) for a, b in zip(before, _params(model)))


@pytest.mark.parametrize("output", ["tensor", "tuple", "dict"])
def test_train_step_updates_every_parameter_and_clears_grads(output):
    model, x = Tiny(output=output), make_inputs(2, 5, 8)
    before = _params(model)
    step = make_step(model, "train", x, lr=1e-2)
    loss = step()
    assert loss.ndim == 0 and not loss.requires_grad
    assert model.calls[-1]["grad"] is True and model.calls[-1]["training"] is True
    assert all(not torch.equal(a, b) for a, b in zip(before, _params(model)))
    assert all(p.grad is None for p in model.parameters())  # zero_grad(set_to_none=True)


def test_train_steps_share_one_adamw_and_reduce_the_loss(monkeypatch):
    made = []

    class RecordedAdamW(torch.optim.AdamW):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(torch.optim, "AdamW", RecordedAdamW)
    model, x = Tiny(), make_inputs(4, 6, 8)
    step = make_step(model, "train", x, lr=1e-2)
    losses = [float(step()) for _ in range(20)]
    assert losses[-1] < losses[0]  # mean(y²) is minimised by shrinking the projection
    assert len(made) == 1
    assert all(int(made[0].state[p]["step"]) == 20 for p in model.parameters())


def test_attention_mask_is_passed_by_keyword():
    model, x = Tiny(), make_inputs(2, 5, 8)
    mask = torch.ones(2, 5, dtype=torch.long)
    make_step(model, "inference", x, attention_mask=mask)()
    assert model.calls[-1]["mask"] is mask


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match=r"^mode='x': expected one of inference, train$"):
        make_step(Tiny(), "x", make_inputs(1, 2, 8))


def test_train_needs_trainable_parameters():
    model = Tiny().requires_grad_(False)
    with pytest.raises(ValueError, match="require grad"):
        make_step(model, "train", make_inputs(1, 2, 8))


def test_inputs_have_the_asked_shape_dtype_and_seed():
    x = make_inputs(3, 7, 16, dtype=torch.float64)
    assert x.shape == (3, 7, 16) and x.dtype == torch.float64
    assert torch.equal(x, make_inputs(3, 7, 16, dtype=torch.float64))
    assert not torch.equal(x, make_inputs(3, 7, 16, dtype=torch.float64, seed=1))
    ids = make_inputs(3, 7, 16, vocab_size=11)
    assert ids.shape == (3, 7) and ids.dtype == torch.long
    assert 0 <= int(ids.min()) and int(ids.max()) < 11
    with pytest.raises(ValueError, match="seq_len"):
        make_inputs(1, 0, 8)
