"""Architecture registry: names -> constructors (the timm/smp pattern)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import ModelNotFoundError

if TYPE_CHECKING:  # torch is imported when a network is built, not when cellcount is imported
    from torch import nn

    from .unet import UNet

_ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering an architecture constructor under ``name``."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _ARCHITECTURES:
            raise ValueError(f"architecture {name!r} is already registered")
        _ARCHITECTURES[name] = fn
        return fn

    return wrap


def list_architectures() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return sorted(_ARCHITECTURES)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build an untrained network by architecture name; unknown names list the valid ones."""
    try:
        fn = _ARCHITECTURES[name]
    except KeyError:
        raise ModelNotFoundError(
            f"unknown architecture {name!r}; valid architectures: {', '.join(list_architectures())}"
        ) from None
    return fn(**kwargs)


@register_model("unet")
def unet(**kwargs: Any) -> UNet:
    from .unet import UNet

    return UNet(block="plain", attention=False, **kwargs)


@register_model("attention_unet")
def attention_unet(**kwargs: Any) -> UNet:
    from .unet import UNet

    return UNet(block="plain", attention=True, **kwargs)


@register_model("residual_unet")
def residual_unet(**kwargs: Any) -> UNet:
    from .unet import UNet

    return UNet(block="residual", attention=False, **kwargs)
