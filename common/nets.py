"""Small torch building blocks shared by the compact models (the `lite` reward model, the actor-critic).

Imported only by modules that already need torch; `common.config` does not import it.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

__all__ = ["ConvEncoder"]


class ConvEncoder(nn.Module):
    """Stride-2 3x3 convs, a 4x4 adaptive pool (keeps coarse 'where'), one linear layer to `out_dim`.

    Takes (B, 3, H, W) floats; each model scales its own pixels first. The submodule names
    (`convs`, `pool`, `head`) are part of both models' checkpoints.
    """

    def __init__(self, channels: Sequence[int], out_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.ReLU()]
            c_in = c
        self.convs = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.head = nn.Sequential(nn.Linear(c_in * 16, out_dim), nn.LayerNorm(out_dim), nn.ReLU())

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.pool(self.convs(images)).flatten(1))
