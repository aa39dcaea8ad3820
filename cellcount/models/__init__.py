"""Models: architecture registry, model cards, loading/saving, and the runnable count models."""

from .base import ClassicalModel, CountModel, NetModel
from .card import OUTPUT_KINDS, ModelCard, read_card, validate_card, write_card
from .loading import (
    CLASSICAL_NAME,
    DEFAULT_MODEL,
    DEFAULT_WEIGHTS_DIR,
    default_model_name,
    is_user_model,
    list_models,
    load_model,
    model_card,
    remove_user_model,
    save_model,
    size_model_for,
    size_model_name,
    user_models_dir,
    with_base_training,
)
from .registry import create_model, list_architectures, register_model

__all__ = [
    "CLASSICAL_NAME",
    "DEFAULT_MODEL",
    "DEFAULT_WEIGHTS_DIR",
    "OUTPUT_KINDS",
    "ClassicalModel",
    "CountModel",
    "ModelCard",
    "NetModel",
    "create_model",
    "default_model_name",
    "is_user_model",
    "list_architectures",
    "list_models",
    "load_model",
    "model_card",
    "read_card",
    "register_model",
    "remove_user_model",
    "save_model",
    "size_model_for",
    "size_model_name",
    "validate_card",
    "user_models_dir",
    "with_base_training",
    "write_card",
]
