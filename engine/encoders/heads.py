"""Projection heads: the only trained part of the dual encoder.

Shared by training (which learns them) and inference (which loads them), so the two can never
disagree on the architecture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class HeadSpec:
    """Architecture of one projection head.

    kind `linear`: one matrix. kind `mlp`: a linear path plus a residual two-layer MLP, so the
    head starts as good as a linear one and can learn non-linear interactions on top.
    """

    in_dim: int
    out_dim: int
    kind: str = "linear"
    hidden: int = 1024
    dropout: float = 0.1

    def to_dict(self) -> dict[str, Any]:
        return {"in_dim": self.in_dim, "out_dim": self.out_dim, "kind": self.kind,
                "hidden": self.hidden, "dropout": self.dropout}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeadSpec:
        return cls(in_dim=int(data["in_dim"]), out_dim=int(data["out_dim"]),
                   kind=str(data.get("kind", "linear")), hidden=int(data.get("hidden", 1024)),
                   dropout=float(data.get("dropout", 0.1)))


class ProjectionHead(nn.Module):
    """Standardise input features, project, L2-normalise.

    The standardisation statistics are buffers (saved with the weights) because tower features
    mix scales: ReLU6 activations, histograms and unit-norm sentence vectors.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, spec: HeadSpec) -> None:
        super().__init__()
        if spec.kind not in ("linear", "mlp"):
            raise ValueError(f"unknown head kind {spec.kind!r}")
        self.spec = spec
        self.register_buffer("mean", torch.zeros(spec.in_dim))
        self.register_buffer("std", torch.ones(spec.in_dim))
        self.linear = nn.Linear(spec.in_dim, spec.out_dim)
        self.mlp: nn.Module | None = None
        if spec.kind == "mlp":
            self.mlp = nn.Sequential(
                nn.Linear(spec.in_dim, spec.hidden), nn.GELU(), nn.Dropout(spec.dropout),
                nn.Linear(spec.hidden, spec.out_dim),
            )

    def set_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.std.copy_(std.clamp(min=1e-4))

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def project(self, z: torch.Tensor) -> torch.Tensor:
        """Project already standardised (and possibly masked) features; unnormalised output."""
        out: torch.Tensor = self.linear(z)
        if self.mlp is not None:
            out = out + self.mlp(z)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.project(self.standardise(x)), dim=-1)
