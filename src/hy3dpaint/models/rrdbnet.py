"""RRDBNet, the generator of Real-ESRGAN x4plus (FACTS §8), with basicsr's parameter names.

``conv_first`` -> ``num_block`` residual-in-residual dense blocks (``body``) -> ``conv_body`` + skip
-> two nearest x2 upsamplings (``conv_up1``, ``conv_up2``) -> ``conv_hr`` -> ``conv_last``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Slope of every LeakyReLU.
LEAKY_SLOPE = 0.2
#: Scale of the residual branch of dense blocks and of RRDBs.
RESIDUAL_SCALE = 0.2
#: Convolutions per dense block and dense blocks per RRDB.
CONVS_PER_DENSE_BLOCK = 5
DENSE_BLOCKS_PER_RRDB = 3
#: Upscaling factor this implementation supports (x4plus: two nearest x2 stages).
SUPPORTED_SCALE = 4


def _conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, 1, 1)


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convolutions; output ``x + 0.2 * conv5(...)``."""

    def __init__(self, num_feat: int, num_grow_ch: int):
        super().__init__()
        for index in range(1, CONVS_PER_DENSE_BLOCK + 1):
            out_channels = num_feat if index == CONVS_PER_DENSE_BLOCK else num_grow_ch
            setattr(self, f"conv{index}", _conv3x3(num_feat + (index - 1) * num_grow_ch, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for index in range(1, CONVS_PER_DENSE_BLOCK):
            conv = getattr(self, f"conv{index}")
            features.append(F.leaky_relu(conv(torch.cat(features, dim=1)), LEAKY_SLOPE))
        out = getattr(self, f"conv{CONVS_PER_DENSE_BLOCK}")(torch.cat(features, dim=1))
        return out * RESIDUAL_SCALE + x


class RRDB(nn.Module):
    """Residual in residual dense block: three dense blocks, output ``x + 0.2 * rdb3(rdb2(rdb1(x)))``."""

    def __init__(self, num_feat: int, num_grow_ch: int):
        super().__init__()
        for index in range(1, DENSE_BLOCKS_PER_RRDB + 1):
            setattr(self, f"rdb{index}", ResidualDenseBlock(num_feat, num_grow_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for index in range(1, DENSE_BLOCKS_PER_RRDB + 1):
            out = getattr(self, f"rdb{index}")(out)
        return out * RESIDUAL_SCALE + x


class RRDBNet(nn.Module):
    """Real-ESRGAN generator: [B, num_in_ch, H, W] in [0, 1] -> [B, num_out_ch, 4H, 4W] (unclamped).

    Defaults are RealESRGAN_x4plus: 64 features, 23 blocks, growth 32.
    """

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64, num_block: int = 23,
                 num_grow_ch: int = 32, scale: int = SUPPORTED_SCALE):
        super().__init__()
        if scale != SUPPORTED_SCALE:
            raise ValueError(f"RRDBNet scale {scale} is not supported; only x{SUPPORTED_SCALE} (RealESRGAN_x4plus)")
        self.scale = scale
        self.conv_first = _conv3x3(num_in_ch, num_feat)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = _conv3x3(num_feat, num_feat)
        self.conv_up1 = _conv3x3(num_feat, num_feat)
        self.conv_up2 = _conv3x3(num_feat, num_feat)
        self.conv_hr = _conv3x3(num_feat, num_feat)
        self.conv_last = _conv3x3(num_feat, num_out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upscale ``x`` four times."""
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for conv_up in (self.conv_up1, self.conv_up2):
            feat = F.leaky_relu(conv_up(F.interpolate(feat, scale_factor=2, mode="nearest")), LEAKY_SLOPE)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), LEAKY_SLOPE))
