"""The measured unit of work: one inference forward or one training step of any nn.Module.

The thesis's cost claim (LRT cuts BERT-base training cost by >30 %, FACTS.md) is about training, so a
train step is the full forward + loss + backward + optimizer update, not a forward with grad enabled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

MODES = ("inference", "train")


def make_inputs(
    batch_size: int,
    seq_len: int,
    d_model: int,
    *,
    vocab_size: int | None = None,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> torch.Tensor:
    """Random model inputs: hidden states (batch, seq_len, d_model) of `dtype`, or token ids
    (batch, seq_len) in [0, vocab_size) when `vocab_size` is set.

    Drawn on the CPU from a seeded generator, then moved, so every device sees the same numbers.
    """
    for name, value in (("batch_size", batch_size), ("seq_len", seq_len), ("d_model", d_model)):
        if value < 1:
            raise ValueError(f"{name}={value}: must be >= 1")
    gen = torch.Generator().manual_seed(seed)
    if vocab_size is not None:
        if vocab_size < 1:
            raise ValueError(f"vocab_size={vocab_size}: must be >= 1")
        return torch.randint(vocab_size, (batch_size, seq_len), generator=gen).to(device)
    return torch.randn(batch_size, seq_len, d_model, generator=gen).to(device=device, dtype=dtype)


def make_step(
    model: nn.Module,
    mode: str,
    inputs: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    lr: float = 1e-4,
) -> Callable[[], object]:
    """A no-argument callable that runs one step of `mode` on `model`.

    - "inference": ``model.eval()`` now; each call is a forward under ``torch.inference_mode()``
      and returns the output.
    - "train": ``model.train()`` now and one ``torch.optim.AdamW`` (created here, once); each call
      runs forward, loss = mean(output²), backward, ``optimizer.step()``, then
      ``zero_grad(set_to_none=True)``, and returns the detached loss. Clearing gradients at the end
      keeps none alive between calls, so a per-call peak-memory reading includes them. AdamW
      creates its two moment buffers (2 × params) lazily on the first call: measure memory after
      one warm call to see the steady state.

    The model is called as ``model(inputs)`` or ``model(inputs, attention_mask=attention_mask)``
    (bench.models.Encoder's signature, and Hugging Face's). The mode is set when the step is made:
    don't interleave steps of different modes made on one model.
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: expected one of {', '.join(MODES)}")
    kwargs = {} if attention_mask is None else {"attention_mask": attention_mask}

    if mode == "inference":
        model.eval()

        def infer() -> object:
            with torch.inference_mode():
                return model(inputs, **kwargs)

        return infer

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("mode='train': the model has no parameters that require grad")
    model.train()
    optimizer = torch.optim.AdamW(params, lr=lr)

    def train() -> torch.Tensor:
        # A synthetic loss: any scalar reduction of the output costs the same backward through the
        # model, and mean(x²) needs no target tensor whose shape we would have to guess.
        loss = _first_tensor(model(inputs, **kwargs)).float().pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return train


def _first_tensor(output: object) -> torch.Tensor:
    """The main tensor of a model output: the tensor itself, Hugging Face's ``last_hidden_state``,
    or the first element of a tuple/list/mapping."""
    if isinstance(output, torch.Tensor):
        return output
    hidden = getattr(output, "last_hidden_state", None)
    if isinstance(hidden, torch.Tensor):
        return hidden
    if isinstance(output, Mapping):
        output = list(output.values())
    if isinstance(output, (tuple, list)) and output:
        return _first_tensor(output[0])
    raise TypeError(f"cannot find a tensor in the model output of type {type(output).__name__}")
