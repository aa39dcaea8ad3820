"""Losses selectable from a training config.

Mask models: ``bce``, ``dice``, ``bce_dice``, ``focal``, ``tversky`` on channel 0 (foreground) plus a
weighted BCE on channel 1 (touching border) when the model has two channels.
Density models: a weighted sum of ``pixel`` (MSE), ``multiscale`` (MSE of 2x/4x/8x sum-pooled maps: the
shape of the density at coarser scales) and ``count`` (relative error of the per-crop integral).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

MASK_LOSSES = ("bce", "dice", "bce_dice", "focal", "tversky")
DENSITY_TERMS = ("pixel", "multiscale", "count")


def _dice(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    p = torch.sigmoid(logits)
    inter = (p * target).sum((1, 2, 3))
    return (1 - (2 * inter + eps) / (p.sum((1, 2, 3)) + target.sum((1, 2, 3)) + eps)).mean()


def _focal(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, alpha: float = 0.5) -> torch.Tensor:
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = torch.exp(-bce)
    w = alpha * target + (1 - alpha) * (1 - target)
    return (w * (1 - p_t) ** gamma * bce).mean() * 4


def _tversky(logits: torch.Tensor, target: torch.Tensor, a: float = 0.3, b: float = 0.7) -> torch.Tensor:
    p = torch.sigmoid(logits)
    tp = (p * target).sum((1, 2, 3))
    fp = (p * (1 - target)).sum((1, 2, 3))
    fn = ((1 - p) * target).sum((1, 2, 3))
    return (1 - (tp + 1) / (tp + a * fp + b * fn + 1)).mean()


def mask_loss(
    logits: torch.Tensor,
    mask: torch.Tensor,
    border: torch.Tensor | None,
    *,
    kind: str,
    border_weight: float,
    contact_weight: float = 0.0,
) -> torch.Tensor:
    """Loss for (B, C, H, W) logits against (B, 1, H, W) float targets.

    ``border`` is the band target: > 0 on the band, 2 where two nuclei touch (``border_target``).
    ``contact_weight`` adds that much weight to the border term at those contact pixels (as the U-Net
    paper's weight map does): they decide whether touching nuclei split, yet are rare within the band.
    """
    if kind not in MASK_LOSSES:
        raise ValueError(f"unknown mask loss {kind!r}; valid: {', '.join(MASK_LOSSES)}")
    fg = logits[:, :1]
    if kind == "bce":
        loss = F.binary_cross_entropy_with_logits(fg, mask)
    elif kind == "dice":
        loss = _dice(fg, mask)
    elif kind == "bce_dice":
        loss = F.binary_cross_entropy_with_logits(fg, mask) + _dice(fg, mask)
    elif kind == "focal":
        loss = _focal(fg, mask)
    else:
        loss = _tversky(fg, mask)
    if border is not None and logits.shape[1] > 1:
        # borders are rare: up-weight positives so the channel does not collapse to zero
        pos_weight = torch.tensor(5.0, device=logits.device)
        weight = 1.0 + contact_weight * (border >= 2).float() if contact_weight else None
        loss = loss + border_weight * F.binary_cross_entropy_with_logits(
            logits[:, 1:2], (border > 0).float(), weight=weight, pos_weight=pos_weight
        )
    return loss


def density_loss(pred: torch.Tensor, target: torch.Tensor, *, weights: dict[str, float]) -> torch.Tensor:
    """Multi-term density loss on (B, 1, H, W) maps already multiplied by the density scale."""
    bad = set(weights) - set(DENSITY_TERMS)
    if bad:
        raise ValueError(f"unknown density loss terms {sorted(bad)}; valid: {', '.join(DENSITY_TERMS)}")
    total = pred.new_zeros(())
    if weights.get("pixel", 0):
        total = total + weights["pixel"] * F.mse_loss(pred, target)
    if weights.get("multiscale", 0):
        ms = pred.new_zeros(())
        for k in (2, 4, 8):
            ms = ms + F.mse_loss(F.avg_pool2d(pred, k) * k, F.avg_pool2d(target, k) * k)
        total = total + weights["multiscale"] * ms / 3
    if weights.get("count", 0):
        cp, ct = pred.sum((1, 2, 3)), target.sum((1, 2, 3))
        total = total + weights["count"] * (torch.abs(cp - ct) / (ct + 100.0)).mean()
    return total


def multihead_loss(
    out: torch.Tensor,
    targets: dict[str, torch.Tensor],
    *,
    mask_kind: str,
    border_weight: float,
    contact_weight: float = 0.0,
    density_weight: float = 1.0,
    density_terms: dict[str, float],
    background_margin: float = 0.0,
) -> torch.Tensor:
    """Loss of a three-head network: (B, 3, H, W) = foreground logit, border logit, raw density.

    The mask heads train exactly as a mask model's; the density head (ReLU, as the density models'
    head) as a density model's, weighted by ``density_weight``. One trunk learns both, so the density
    head's size estimate and count cost no second network at inference.
    """
    loss = mask_loss(out[:, :2], targets["mask"], targets["border"], kind=mask_kind, border_weight=border_weight,
                     contact_weight=contact_weight)
    raw, blobs = out[:, 2:3], targets["density"] > 0
    loss = loss + density_weight * density_loss(relu_under_blobs(raw, blobs), targets["density"], weights=density_terms)
    if background_margin > 0:
        # the count is the integral of ReLU(raw) over every pixel: a background that hovers at 0 adds noise of
        # hundreds of nuclei per megapixel from one checkpoint to the next; a margin keeps it clearly negative
        loss = loss + density_weight * F.relu(raw + background_margin)[~blobs].mean()
    return loss


def relu_under_blobs(x: torch.Tensor, blobs: torch.Tensor) -> torch.Tensor:
    """ReLU forward; backward, the identity under the target's blobs (``blobs``) and the ReLU's own gradient
    elsewhere. A plain ReLU passes no gradient where the raw density is negative, so a nucleus whose blob
    starts out negative never learns to appear (run 6 of docs/multihead_training.md undercounted whole
    images, 29 nuclei -> 2); passing it everywhere lets the count terms push the background ever more
    negative (raw values of -20,000 after 500 steps, and counts that swung from step to step)."""
    r = F.relu(x)
    return torch.where(blobs, x + (r - x).detach(), r)
