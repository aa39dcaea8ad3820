"""What the lower layers read of a model, so they need not import :mod:`cellcount.models`, which sits above
them (:class:`cellcount.models.CountModel` satisfies it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np


class ModelLike(Protocol):
    """A count model as parameters, sizing and flips use it: name, output kind, card and forward pass."""

    name: str
    output_kind: str
    card: Any

    def predict_maps(self, image: np.ndarray, *, progress: Callable[[int, int], None] | None = None,
                     fast: bool = True) -> np.ndarray: ...


def backend_kw(backend: str | None) -> dict[str, str]:
    """``backend=`` for ``predict_maps`` only when one is asked for: a model class without the argument
    (written before inference backends) keeps working."""
    return {} if backend is None else {"backend": backend}
