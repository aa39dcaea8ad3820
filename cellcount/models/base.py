"""Runnable count models: a network (or the classical baseline) plus its card.

``predict_maps`` is the forward pass only: it returns per-pixel maps and never thresholds or counts.
Mask models return probabilities (channel 0 foreground, channel 1 touching border when present);
density models return one channel in count units (the map sums to the count); multihead models return
all three from one network: foreground and border probabilities, then the density.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

import numpy as np

from .card import ModelCard

if TYPE_CHECKING:
    import torch

    from ..inference import ProgressFn
    from .autotune import BackendChoice

logger = logging.getLogger(__name__)

FAST_BATCH_PX = 1 << 16
"""Pixels per forward pass in the fast path: one tile of 256 x 256 or larger per pass (batching larger
tiles was slower on CPU), several for tiny tiles."""


class CountModel:
    """Interface shared by learned and classical models."""

    card: ModelCard

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def output_kind(self) -> str:
        return self.card.output_kind

    def predict_maps(
        self,
        image: np.ndarray,
        *,
        progress: ProgressFn | None = None,
        fast: bool = True,
        device: str | None = None,
        backend: str | None = None,
    ) -> np.ndarray:
        """(H, W) normalised float32 image -> (C, H, W) float32 maps.

        ``fast``: the fast path (see :meth:`NetModel.predict_maps`); ``backend``: which backend runs it
        (None or ``"auto"``: the one measured fastest on this machine).
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.output_kind})"


class NetModel(CountModel):
    """A trained U-Net with its card. Treated as read-only once built (shared across app sessions)."""

    def __init__(self, net: torch.nn.Module, card: ModelCard) -> None:
        import torch

        self.net = net.eval()
        self.card = card
        # NHWC weights: faster CPU convolutions; fp32 results unchanged within float tolerance
        self.net = self.net.to(memory_format=torch.channels_last)
        for p in self.net.parameters():
            p.requires_grad_(False)
        self._fast_nets: dict[str, torch.nn.Module] = {}
        self._fast_lock = threading.Lock()
        self._choices: dict[str, BackendChoice] = {}
        self._choice_lock = threading.Lock()
        self.novelty = None
        """The training images' encoder features (:class:`cellcount.novelty.NoveltyReference`) where the
        model folder has them: the quality flag's ``novelty`` signal."""

    def fast_net(self, backend: str) -> torch.nn.Module:
        """The network of the fast path run by ``backend`` (see :mod:`cellcount.models.backends`), built on
        first use and then shared (read-only)."""
        from .backends import build_backend

        with self._fast_lock:
            if backend not in self._fast_nets:
                self._fast_nets[backend] = build_backend(self.net, backend, cache=True)
            return self._fast_nets[backend]

    def weights_digest(self) -> str:
        """The card's sha256 of the weights file; for a network not loaded from disk (a fine-tune before it is
        saved), the sha256 its weights file will have, so that the backend chosen for it stays the saved
        model's choice (the same counts before and after saving)."""
        if self.card.sha256:
            return self.card.sha256
        import hashlib

        return hashlib.sha256(weights_bytes(self.net)).hexdigest()

    def backend_choice(self, requested: str = "auto") -> BackendChoice:
        """The backend the fast path uses for ``requested`` (``"auto"``: measured on first use, see
        :func:`cellcount.models.autotune.choose_backend`); remembered for the life of this model."""
        from ..memory import keep_freed_memory
        from .autotune import choose_backend

        # timed as the network then runs, and as every entry point (API, CLI, app) runs it: keeping freed memory
        # times PyTorch faster, and processes timing under different settings choose different backends, whose
        # counts can be an object apart
        keep_freed_memory()
        with self._choice_lock:
            if requested not in self._choices:
                self._choices[requested] = choose_backend(self.weights_digest(), self.fast_net, requested=requested)
            return self._choices[requested]

    def backend_in_use(self, requested: str = "auto") -> tuple[str, str]:
        """(name, why) of what the fast path runs on this machine: on a GPU always ``torch`` on it (the CPU
        backends are neither timed nor used there), else :meth:`backend_choice` and its ``why()``."""
        from ..inference import default_device

        dev = default_device()
        if str(dev) != "cpu":
            return f"torch ({dev.type})", "a GPU runs the network in PyTorch, whatever the CPU backend's choice"
        choice = self.backend_choice(requested)
        return choice.backend, choice.why()

    @property
    def out_channels(self) -> int:
        extra = 1 if self.card.kwargs.get("density_branch") else 0  # the density branch adds the last channel
        return int(self.card.kwargs.get("out_channels", 1)) + extra

    def predict_maps(
        self,
        image: np.ndarray,
        *,
        progress: ProgressFn | None = None,
        fast: bool = True,
        device: str | None = None,
        backend: str | None = None,
        tile: int | None = None,
        overlap: int | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Tiled forward pass. ``fast=False``: the network as trained (fp32, the card's tiles, batch 1).
        ``fast=True``: BatchNorm folded, run by ``backend`` (None / ``"auto"``: :meth:`backend_choice`; on
        a GPU always ``torch``) on balanced tiles of at most that backend's ``FAST_TILE_PX``."""
        from ..inference import default_device, predict_tiled
        from .backends import FAST_TILE_PX

        dev = default_device() if device is None else device
        if fast:
            name = "torch" if str(dev) != "cpu" else self.backend_choice(backend or "auto").backend
            net = self.fast_net(name)
            tile = tile or int(self.card.extra.get("fast_tile_size", FAST_TILE_PX[name]))
            batch_size = batch_size or max(1, FAST_BATCH_PX // (tile * tile))
        else:
            net = self.net
            tile = tile or self.card.tile_size
            batch_size = batch_size or 1
        net = net.to(dev) if str(dev) != "cpu" else net
        raw = predict_tiled(
            net,
            image,
            out_channels=self.out_channels,
            tile=tile,
            overlap=self.card.tile_overlap if overlap is None else overlap,
            batch_size=batch_size,
            divisor=2 ** int(self.card.kwargs.get("depth", 4)),
            device=dev,
            channels_last=fast,
            progress=progress,
            balanced=fast,
        )
        return self._maps_from_raw(raw)

    def _maps_from_raw(self, raw: np.ndarray) -> np.ndarray:
        """Raw float32 network output -> probabilities (mask) or count-unit density, computed in place.

        The same float32 operations as ``1 / (1 + exp(-raw))`` and ``max(raw, 0) / scale``, without the
        full-size temporaries (a 4096 x 4096 two-channel map is 128 MB each).
        """
        out = np.asarray(raw, dtype=np.float32)
        kind = self.output_kind
        probs = out if kind == "mask" else out[:2] if kind == "multihead" else out[:0]
        dens = out[2:3] if kind == "multihead" else out if kind == "density" else out[:0]
        if probs.size:
            np.negative(probs, out=probs)
            with np.errstate(over="ignore"):  # exp(> 88) is inf in float32, and 1 / (1 + inf) the right 0
                np.exp(probs, out=probs)
            probs += np.float32(1.0)
            np.divide(np.float32(1.0), probs, out=probs)
        if dens.size:
            np.maximum(dens, np.float32(0.0), out=dens)
            dens /= np.float32(self.card.density_scale)
        return out


class ClassicalModel(CountModel):
    """Non-learned baseline: Otsu's threshold on the normalised image, then the shared postprocessing.

    The 'probability' map is the normalised intensity rescaled piecewise-linearly so that Otsu's level
    maps to 0.5: the default threshold 0.5 is Otsu, and the threshold slider moves around it.
    """

    def __init__(self, card: ModelCard) -> None:
        self.card = card

    def predict_maps(
        self,
        image: np.ndarray,
        *,
        progress: ProgressFn | None = None,
        fast: bool = True,
        device: str | None = None,
        backend: str | None = None,
    ) -> np.ndarray:
        from skimage.filters import threshold_otsu

        x = np.clip(np.asarray(image, np.float32), 0.0, 1.0)
        if float(x.max()) == float(x.min()):
            out = np.zeros_like(x)
        else:
            t = float(threshold_otsu(x))
            t = min(max(t, 1e-6), 1 - 1e-6)
            out = np.where(x <= t, 0.5 * x / t, 0.5 + 0.5 * (x - t) / (1 - t))
        if progress is not None:
            progress(1, 1)
        return out[None].astype(np.float32)


def weights_bytes(net) -> bytes:
    """``net``'s weights as the bytes of its ``weights.safetensors``."""
    from safetensors.torch import save

    return save({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()})
