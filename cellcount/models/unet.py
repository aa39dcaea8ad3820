"""U-Net family: plain, attention-gated and residual encoders/decoders sharing one implementation.

One class keeps the three architectures comparable: they differ only in the conv block
(`block="plain"|"residual"`) and in attention gates on the skip connections (`attention=True`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ConvBlock(nn.Module):
    """Two 3x3 conv + BatchNorm + ReLU layers (``norm=False``: convolutions with a bias, no BatchNorm)."""

    def __init__(self, c_in: int, c_out: int, *, norm: bool = True) -> None:
        super().__init__()

        def bn() -> nn.Module:
            return nn.BatchNorm2d(c_out) if norm else nn.Identity()

        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=not norm),
            bn(),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=not norm),
            bn(),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ResBlock(nn.Module):
    """Pre-activation-free residual block: conv-bn-relu-conv-bn + projected shortcut, then ReLU."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.skip = (
            nn.Identity()
            if c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al. 2018): the decoder signal weights the skip features."""

    def __init__(self, c_skip: int, c_gate: int, c_mid: int) -> None:
        super().__init__()
        self.w_skip = nn.Conv2d(c_skip, c_mid, 1, bias=False)
        self.w_gate = nn.Conv2d(c_gate, c_mid, 1, bias=True)
        self.psi = nn.Conv2d(c_mid, 1, 1, bias=True)

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.w_skip(skip) + self.w_gate(gate))
        return skip * torch.sigmoid(self.psi(a))


class DensityDecoder(nn.Module):
    """A light second decoder for a density head beside a mask head (``density_branch="decoder"``).

    It reads the main decoder's features at every level from the coarsest up to half resolution (their
    context reaches far beyond the last level's few pixels, which a nucleus centre needs) and ends at half
    resolution: unit-mass blobs of sigma = a quarter of the nucleus diameter are smooth, so the map is
    upsampled bilinearly instead of paying a full-resolution block (about a tenth of a base-16 U-Net's
    arithmetic per pixel in all). Its blocks have no BatchNorm: trained over a frozen trunk on crops of
    widely varying scale, BatchNorm's running statistics did not match its batch statistics, and the
    evaluated counts fell 3-10x below the training ones (docs/multihead_training.md, run 6).
    """

    def __init__(self, widths: list[int]) -> None:
        super().__init__()
        levels = list(reversed(range(1, len(widths) - 1)))  # decoder levels used, coarse to fine
        if not levels:
            raise ValueError("density_branch 'decoder' needs depth >= 2")
        chans = [widths[1] if k >= 2 else widths[0] for k in levels]
        self.blocks = nn.ModuleList(
            ConvBlock(widths[k] + (chans[i - 1] if i else 0), chans[i], norm=False) for i, k in enumerate(levels)
        )
        self.out = nn.Conv2d(chans[-1], 1, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """``feats``: the main decoder's outputs, coarse to fine, the full-resolution one excluded."""
        d = self.blocks[0](feats[0])
        for blk, f in zip(self.blocks[1:], feats[1:], strict=True):
            d = blk(torch.cat([F.interpolate(d, scale_factor=2.0, mode="bilinear", align_corners=False), f], 1))
        return F.interpolate(self.out(d), scale_factor=2.0, mode="bilinear", align_corners=False)


DENSITY_BRANCHES = (False, True, "block", "decoder")


class UNet(nn.Module):
    """U-Net with configurable depth/width, optional residual blocks and attention gates.

    Parameters
    ----------
    in_channels : int
        Input channels (1: the normalised grayscale image).
    out_channels : int
        Output channels. Density head: 1. Mask head: 1 (foreground) or 2 (foreground, touching border).
    base_width : int
        Channels of the first level; doubled at each level down.
    depth : int
        Number of down-sampling steps; inputs must be divisible by ``2**depth`` (inference pads).
    block : {"plain", "residual"}
    attention : bool
        Attention gates on the skip connections.
    head : {"density", "mask"}
        ``density`` returns a non-negative map; ``mask`` returns logits.
    density_act : {"softplus", "relu"}
        Activation of the density head. ReLU can output exact zeros; softplus leaks a small positive
        value at every background pixel, which sums to a count bias that grows with image area.
    density_branch : {False, True / "block", "decoder"}
        Mask head with one more output, a density channel (returned last, raw): True or "block", its own conv
        block on the last decoder features; "decoder", a :class:`DensityDecoder` over the decoder's coarser
        levels. The mask channels then stay those of a mask network with the same trunk, so a trained mask
        model can gain the density head without changing what it segments.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        *,
        base_width: int = 16,
        depth: int = 4,
        block: str = "plain",
        attention: bool = False,
        head: str = "mask",
        density_act: str = "softplus",
        density_branch: bool | str = False,
    ) -> None:
        super().__init__()
        if block not in ("plain", "residual"):
            raise ValueError(f"block must be 'plain' or 'residual', got {block!r}")
        if head not in ("density", "mask"):
            raise ValueError(f"head must be 'density' or 'mask', got {head!r}")
        if density_act not in ("softplus", "relu"):
            raise ValueError(f"density_act must be 'softplus' or 'relu', got {density_act!r}")
        if depth < 1 or base_width < 1:
            raise ValueError("depth and base_width must be >= 1")
        Block = ConvBlock if block == "plain" else ResBlock
        self.depth = depth
        self.head = head
        self.density_act = density_act
        self.raw_head = False  # training only: the density head's map before its activation
        widths = [base_width * 2**i for i in range(depth + 1)]
        self.stem = Block(in_channels, widths[0])
        self.down = nn.ModuleList(Block(widths[i], widths[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(depth))
        )
        self.gates = nn.ModuleList(
            AttentionGate(widths[i], widths[i], max(widths[i] // 2, 1)) if attention else nn.Identity()
            for i in reversed(range(depth))
        )
        self.attention = attention
        self.dec = nn.ModuleList(Block(2 * widths[i], widths[i]) for i in reversed(range(depth)))
        self.out = nn.Conv2d(widths[0], out_channels, 1)
        if density_branch not in DENSITY_BRANCHES:
            raise ValueError(f"density_branch must be one of {DENSITY_BRANCHES}, got {density_branch!r}")
        if density_branch and head != "mask":
            raise ValueError("density_branch adds a density output to a mask head")
        self.density_out = self.density_dec = None
        if density_branch == "decoder":
            self.density_dec = DensityDecoder(widths)
        elif density_branch:
            self.density_out = nn.Sequential(Block(widths[0], widths[0]), nn.Conv2d(widths[0], 1, 1))

    @property
    def divisor(self) -> int:
        return 2**self.depth

    def encoder(self) -> list[nn.Module]:
        """The contracting path (stem and down blocks): the part a short fine-tune may keep as it is."""
        return [self.stem, *self.down]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for down in self.down:
            skips.append(down(F.max_pool2d(skips[-1], 2)))
        y = skips.pop()
        levels = []  # decoder outputs, coarse to fine (the density decoder reads them)
        for up, gate, dec in zip(self.up, self.gates, self.dec):
            y = up(y)
            skip = skips.pop()
            if self.attention:
                skip = gate(skip, y)
            y = dec(torch.cat([skip, y], dim=1))
            levels.append(y)
        if self.density_dec is not None:
            return torch.cat([self.out(y), self.density_dec(levels[:-1])], dim=1)
        if self.density_out is not None:
            return torch.cat([self.out(y), self.density_out(y)], dim=1)
        y = self.out(y)
        if self.head == "density" and not self.raw_head:
            y = F.relu(y) if self.density_act == "relu" else F.softplus(y)
        return y
