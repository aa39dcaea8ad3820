"""Inference-only bf16 twin of :class:`~cellcount.models.unet.UNet` built on oneDNN's fused convolutions.

The traced bf16 network runs every ReLU, residual addition and attention-gate sum as a separate pass over
the activations, and re-reads plain convolution weights on each call. Here each convolution carries its
elementwise tail as a oneDNN post-op (conv + ReLU; conv + add + ReLU for the residual sum and the gate;
conv + sigmoid for the gate's map) and its weights are reordered into oneDNN's blocked layout once, so
fewer passes touch the activations (docs/benchmark_history.md has the measured gains), with logits as close to fp32 as
the traced path's.

Build it from a network whose BatchNorms are folded (:func:`cellcount.models.backends.fold_batchnorm`): a
BatchNorm left in a block raises ``ValueError``. The operators are PyTorch's private
``torch.ops.mkldnn._convolution_pointwise`` (the ones ``torch.compile`` emits on CPU);
:func:`fused_ops_available` says whether this build has them, and callers fall back to tracing if not.
"""

from __future__ import annotations

import copy
import functools

import torch
from torch import nn
from torch.nn import functional as F

from .unet import AttentionGate, ConvBlock, ResBlock, UNet


@functools.lru_cache(maxsize=1)
def fused_ops_available() -> bool:
    """True when this PyTorch build has oneDNN's fused convolution operators and this CPU runs them.

    The build may ship the operators on a CPU whose instructions they need are missing (AVX2-only CPUs:
    "bf16 path needs the cpu support avx_ne_convert or avx512bw..."), so one tiny convolution is run.
    """
    try:
        mk = torch.ops.mkldnn
        if not (torch.backends.mkldnn.is_available() and all(
                hasattr(mk, op) for op in ("_convolution_pointwise", "_reorder_convolution_weight"))):
            return False
        conv = _FusedConv(nn.Conv2d(1, 1, 3, padding=1, bias=False), "relu")
        conv(torch.zeros(1, 1, 8, 8, dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last))
        return True
    except (AttributeError, RuntimeError):
        return False


class _FusedConv:
    """A ``Conv2d`` in ``dtype`` with pre-packed weights and an optional unary post-op ("relu", "sigmoid")."""

    def __init__(self, conv: nn.Conv2d, unary: str = "none", dtype: torch.dtype = torch.bfloat16) -> None:
        if not isinstance(conv, nn.Conv2d):
            raise ValueError(f"expected a Conv2d, got {type(conv).__name__}")
        self.args = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        w = conv.weight.detach().to(dtype).contiguous(memory_format=torch.channels_last)
        self.weight = torch.ops.mkldnn._reorder_convolution_weight(w, *self.args, None)
        self.bias = None if conv.bias is None else conv.bias.detach().to(dtype)
        self.unary = unary

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_pointwise(x, self.weight, self.bias, *self.args, self.unary, [], "")

    def add(self, x: torch.Tensor, other: torch.Tensor, unary: str = "relu") -> torch.Tensor:
        """``unary(conv(x) + other)`` in one pass."""
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, other, self.weight, self.bias, *self.args, "add", None, unary, [], ""
        )


def _convs(seq: nn.Module) -> list[nn.Conv2d]:
    """The convolutions of a folded block body, refusing an unfolded BatchNorm."""
    mods = list(seq.children()) if isinstance(seq, nn.Sequential) else [seq]
    if any(isinstance(m, nn.BatchNorm2d) for m in mods):
        raise ValueError("fold the BatchNorms first (cellcount.models.backends.fold_batchnorm)")
    return [m for m in mods if isinstance(m, nn.Conv2d)]


class _FusedBlock:
    """ConvBlock: (conv + ReLU) x 2. ResBlock: conv + ReLU, then conv + shortcut + ReLU in one pass."""

    def __init__(self, block: nn.Module, dtype: torch.dtype = torch.bfloat16) -> None:
        if not isinstance(block, (ConvBlock, ResBlock)):
            raise ValueError(f"unsupported block {type(block).__name__}")
        c1, c2 = _convs(block.body)
        self.residual = isinstance(block, ResBlock)
        self.c1 = _FusedConv(c1, "relu", dtype)
        self.c2 = _FusedConv(c2, "none" if self.residual else "relu", dtype)
        self.skip = None
        if self.residual and not isinstance(block.skip, nn.Identity):
            (proj,) = _convs(block.skip)
            self.skip = _FusedConv(proj, dtype=dtype)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c1(x)
        if not self.residual:
            return self.c2(h)
        return self.c2.add(h, x if self.skip is None else self.skip(x), "relu")


class _FusedGate:
    """AttentionGate: ReLU(W_g g + W_s s) in one pass, sigmoid fused into psi."""

    def __init__(self, gate: AttentionGate, dtype: torch.dtype = torch.bfloat16) -> None:
        self.w_skip, self.w_gate = _FusedConv(gate.w_skip, dtype=dtype), _FusedConv(gate.w_gate, dtype=dtype)
        self.psi = _FusedConv(gate.psi, "sigmoid", dtype)

    def __call__(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        psi = self.psi(self.w_gate.add(gate, self.w_skip(skip), "relu"))
        # materialising the (B, 1, H, W) map across the channels first: PyTorch's broadcasting bf16 multiply
        # in NHWC took 3.4 ms for 16 x 368 x 368 against 1.0 ms this way (equal at 32-64 channels)
        return skip * psi.expand_as(skip).contiguous(memory_format=torch.channels_last)


class FusedUNet(nn.Module):
    """A folded :class:`UNet` run in NHWC with fused oneDNN convolutions in ``dtype`` (bf16: the ``bf16``
    backend; fp32: a measured lever, docs/benchmark_history.md); float32 in and out.

    Same computation as ``UNet.forward``; read-only after construction, so one instance can serve
    several threads.
    """

    def __init__(self, net: UNet, *, dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        if not isinstance(net, UNet):
            raise ValueError(f"FusedUNet needs a UNet, got {type(net).__name__}")
        net = net.eval()
        self.dtype = dtype
        self.stem = _FusedBlock(net.stem, dtype)
        self.down = [_FusedBlock(b, dtype) for b in net.down]
        # transposed convolutions have no fused form; they run as plain NHWC modules
        self.up = nn.ModuleList(
            copy.deepcopy(u).to(dtype).to(memory_format=torch.channels_last) for u in net.up
        )
        self.gates = [_FusedGate(g, dtype) for g in net.gates] if net.attention else None
        self.dec = [_FusedBlock(b, dtype) for b in net.dec]
        # the 1x1 output convolution runs in fp32 (a negligible cost): bf16 logits would be rounded to 8 bits
        # right where the threshold cuts them (`scripts/bench.py`, unet-mask: count difference to
        # the fp32 path 0.54% with a bf16 head, 0.39% with this one)
        self.out_weight = net.out.weight.detach().float().contiguous(memory_format=torch.channels_last)
        self.out_bias = None if net.out.bias is None else net.out.bias.detach().float()
        self.head, self.density_act = net.head, net.density_act
        self.density_block = self.density_w = self.density_b = self.density_dec = None
        if net.density_dec is not None:  # the light density decoder: blocks fused, its 1x1 in fp32
            dec = net.density_dec
            self.density_dec = [_FusedBlock(b, dtype) for b in dec.blocks]
            self.density_w = dec.out.weight.detach().float().contiguous(memory_format=torch.channels_last)
            self.density_b = None if dec.out.bias is None else dec.out.bias.detach().float()
        if net.density_out is not None:  # the multihead's density branch: its block fused, its 1x1 in fp32
            block, conv = net.density_out
            self.density_block = _FusedBlock(block, dtype)
            self.density_w = conv.weight.detach().float().contiguous(memory_format=torch.channels_last)
            self.density_b = None if conv.bias is None else conv.bias.detach().float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            x = x.to(self.dtype).contiguous(memory_format=torch.channels_last)
            skips = [self.stem(x)]
            for down in self.down:
                skips.append(down(F.max_pool2d(skips[-1], 2)))
            y = skips.pop()
            levels = []
            for i, (up, dec) in enumerate(zip(self.up, self.dec)):
                y = up(y)
                skip = skips.pop()
                if self.gates is not None:
                    skip = self.gates[i](skip, y)
                y = dec(torch.cat([skip, y], dim=1))
                levels.append(y)
            if self.density_dec is not None:
                return torch.cat([F.conv2d(y.float(), self.out_weight, self.out_bias),
                                  self._density_decoder(levels[:-1])], dim=1)
            if self.density_block is not None:
                d = F.conv2d(self.density_block(y).float(), self.density_w, self.density_b)
                return torch.cat([F.conv2d(y.float(), self.out_weight, self.out_bias), d], dim=1)
            y = F.conv2d(y.float(), self.out_weight, self.out_bias)
            if self.head == "density":
                y = F.relu(y) if self.density_act == "relu" else F.softplus(y)
            return y

    def _density_decoder(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """``DensityDecoder.forward`` with fused blocks (interpolation in ``dtype``, the 1x1 in fp32)."""
        def up(t: torch.Tensor) -> torch.Tensor:
            return F.interpolate(t, scale_factor=2.0, mode="bilinear", align_corners=False)

        d = self.density_dec[0](feats[0])
        for blk, f in zip(self.density_dec[1:], feats[1:], strict=True):
            d = blk(torch.cat([up(d).contiguous(memory_format=torch.channels_last), f], dim=1))
        return up(F.conv2d(d.float(), self.density_w, self.density_b))
