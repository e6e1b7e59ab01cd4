"""Low-rank linear layers (the LRT "linear encoder-decoder") and `factorize()` for any module.

Source: Cahyawijaya, *Greenformers* (arXiv 2108.10808) and the greenformer toolkit's `auto_fact`
(../shared/FACTS.md, "The method"). A dense W (out×in) becomes Linear(in, r, bias=False) followed by
Linear(r, out, bias=True): parameters in·out → r·(in+out), FLOPs per token 2·in·out → 2·r·(in+out).
"""

from __future__ import annotations

import copy
import fnmatch
import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

SOLVERS = ("svd", "svd_lowrank", "random")


def break_even_rank(in_features: int, out_features: int) -> float:
    """Rank at which a factorized layer has as many weights as the dense one: in·out/(in+out).

    384 for 768×768 and 614.4 for 768↔3072 (FACTS.md).
    """
    return in_features * out_features / (in_features + out_features)


def check_rank(rank: int | float, key: str = "rank") -> None:
    """Refuse ranks that mean nothing: an int must be ≥ 1, a float must lie in (0, 1)."""
    if isinstance(rank, bool) or not isinstance(rank, (int, float)):
        raise ValueError(f"{key}={rank!r}: must be a positive int or a fraction in (0, 1)")
    if isinstance(rank, int) and rank <= 0:
        raise ValueError(f"{key}={rank}: must be a positive int or a fraction in (0, 1)")
    if isinstance(rank, float) and not 0.0 < rank < 1.0:
        raise ValueError(f"{key}={rank}: a float rank is a fraction of the break-even rank and must lie in (0, 1)")


def resolve_rank(rank: int | float, in_features: int, out_features: int) -> int | None:
    """The absolute rank for one layer, or None when the layer must stay dense.

    Greenformer's convention: an int is an absolute rank; a float r in (0, 1) is
    floor(r · in·out/(in+out)). A rank that reaches the break-even rank saves nothing, so the
    layer stays dense.
    """
    check_rank(rank)
    be = break_even_rank(in_features, out_features)
    r = rank if isinstance(rank, int) else max(1, math.floor(rank * be))
    return None if r >= be else r


class LowRankLinear(nn.Module):
    """y = decoder(encoder(x)) with encoder = Linear(in, r, no bias), decoder = Linear(r, out).

    Two plain matmuls, nothing else: the forward adds no copies or reshapes.
    """

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"rank={rank}: must be ≥ 1")
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.encoder = nn.Linear(in_features, rank, bias=False, device=device, dtype=dtype)
        self.decoder = nn.Linear(rank, out_features, bias=bias, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"

    @torch.no_grad()
    def dense_weight(self) -> torch.Tensor:
        """The (out×in) product decoder.W · encoder.W this layer applies."""
        return self.decoder.weight @ self.encoder.weight


@dataclass(frozen=True)
class LayerReport:
    """What factorize() did to one layer; rel_error = ‖W − W_r‖_F / ‖W‖_F (NaN when not computed)."""

    name: str
    in_features: int
    out_features: int
    rank: int | None
    break_even: float
    action: str  # "factorized" | "dense"
    reason: str
    params_before: int
    params_after: int
    rel_error: float


@dataclass
class FactorizationReport:
    """Per-layer record of a factorize() call, with totals over the whole module."""

    rank: int | float
    solver: str
    layers: list[LayerReport] = field(default_factory=list)
    params_before: int = 0
    params_after: int = 0

    @property
    def factorized(self) -> list[LayerReport]:
        return [layer for layer in self.layers if layer.action == "factorized"]

    @property
    def kept_dense(self) -> list[LayerReport]:
        return [layer for layer in self.layers if layer.action == "dense"]

    def summary(self) -> str:
        saved = 1 - self.params_after / self.params_before if self.params_before else 0.0
        return (f"factorize(rank={self.rank}, solver={self.solver}): {len(self.factorized)} layers factorized, "
                f"{len(self.kept_dense)} kept dense; params {self.params_before:,} → {self.params_after:,} "
                f"({saved:.1%} fewer)")


def _is_hf_conv1d(module: nn.Module) -> bool:
    # Hugging Face's GPT-2 style Conv1D is a linear layer with a transposed (in×out) weight; matched by
    # name so transformers stays an optional dependency.
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and hasattr(module, "weight")


def _dense_weight_and_bias(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Weight as (out×in) and bias of an nn.Linear or HF Conv1D."""
    if isinstance(module, nn.Linear):
        return module.weight, module.bias
    return module.weight.t(), module.bias


@torch.no_grad()
def _low_rank_factors(weight: torch.Tensor, rank: int, solver: str, num_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(first, second) with second @ first ≈ weight; first is r×in, second out×r.

    svd: exact truncated SVD, the optimal rank-r approximation in Frobenius norm (Eckart–Young); computed
    in float64 so the residual is the discarded singular values, not rounding. svd_lowrank: greenformer's
    randomized solver (torch.svd_lowrank). As in greenformer, U·S goes into the first factor (in its
    transposed convention), i.e. first = S·Vᵀ, second = U.
    """
    w = weight.detach().to(torch.float64)
    if solver == "svd":
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        u, s, vh = u[:, :rank], s[:rank], vh[:rank]
    else:
        u, s, v = torch.svd_lowrank(w, q=rank, niter=num_iter)
        vh = v.t()
    return (s[:, None] * vh).to(weight.dtype), u.to(weight.dtype).contiguous()


def _skipped(name: str, module: nn.Module, skip: Iterable[str] | Callable[[str, nn.Module], bool]) -> bool:
    if callable(skip):
        return bool(skip(name, module))
    return any(fnmatch.fnmatch(name, pattern) for pattern in skip)


def factorize(module: nn.Module, rank: int | float, solver: str = "svd", deepcopy: bool = False,
              skip: Iterable[str] | Callable[[str, nn.Module], bool] = (), num_iter: int = 2) -> nn.Module:
    """Replace every nn.Linear (and Hugging Face Conv1D) in `module` with a LowRankLinear.

    rank: int (absolute) or float in (0, 1) (fraction of each layer's break-even rank); a layer whose rank
    reaches its break-even stays dense and is reported as such. solver: "svd" (exact truncated SVD,
    post-training), "svd_lowrank" (greenformer's randomized SVD, `num_iter` power iterations) or "random"
    (fresh initialisation, for training from scratch). skip: glob patterns over qualified module names,
    or a predicate (name, module) -> bool. Returns the module (a copy when deepcopy=True); the report is
    its attribute `factorization_report`.
    """
    check_rank(rank)
    if solver not in SOLVERS:
        raise ValueError(f"solver={solver!r}: expected one of {', '.join(SOLVERS)}")
    if deepcopy:
        module = copy.deepcopy(module)

    targets = [(name, child) for name, child in module.named_modules()
               if (isinstance(child, nn.Linear) or _is_hf_conv1d(child)) and name and not _skipped(name, module, skip)]
    report = FactorizationReport(rank=rank, solver=solver)
    report.params_before = sum(p.numel() for p in module.parameters())

    plans = []
    for name, child in targets:
        weight, bias = _dense_weight_and_bias(child)
        out_f, in_f = weight.shape
        plans.append((name, child, in_f, out_f, resolve_rank(rank, in_f, out_f)))
    if targets and all(r is None for *_, r in plans):
        smallest = min(break_even_rank(in_f, out_f) for _, _, in_f, out_f, _ in plans)
        raise ValueError(f"rank={rank}: reaches the break-even rank of every layer (smallest break-even "
                         f"{smallest:g}); nothing would be saved")

    for name, child, in_f, out_f, r in plans:
        weight, bias = _dense_weight_and_bias(child)
        dense_params = weight.numel() + (bias.numel() if bias is not None else 0)
        be = break_even_rank(in_f, out_f)
        if r is None:
            report.layers.append(LayerReport(name, in_f, out_f, None, be, "dense",
                                             f"rank reaches break-even {be:g}", dense_params, dense_params, 0.0))
            continue
        low = LowRankLinear(in_f, out_f, r, bias=bias is not None, device=weight.device, dtype=weight.dtype)
        rel_error = float("nan")
        with torch.no_grad():
            if solver != "random":
                first, second = _low_rank_factors(weight, r, solver, num_iter)
                low.encoder.weight.copy_(first)
                low.decoder.weight.copy_(second)
                rel_error = float(torch.linalg.matrix_norm(weight.double() - second.double() @ first.double())
                                  / torch.linalg.matrix_norm(weight.double()))
            if bias is not None:
                low.decoder.bias.copy_(bias)
        low.train(child.training)
        _set_submodule(module, name, low)
        report.layers.append(LayerReport(name, in_f, out_f, r, be, "factorized", "", dense_params,
                                         sum(p.numel() for p in low.parameters()), rel_error))

    report.params_after = sum(p.numel() for p in module.parameters())
    if report.kept_dense:
        warnings.warn(f"factorize(rank={rank}): {len(report.kept_dense)} layer(s) kept dense because the rank "
                      f"reaches their break-even: {', '.join(layer.name for layer in report.kept_dense)}",
                      stacklevel=2)
    module.factorization_report = report
    return module


def _set_submodule(root: nn.Module, qualified_name: str, new: nn.Module) -> None:
    parent_name, _, child_name = qualified_name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child_name, new)


def count_params(module: nn.Module) -> int:
    """Number of distinct parameters (shared tensors counted once, as `module.parameters()` yields them)."""
    return sum(p.numel() for p in module.parameters())
