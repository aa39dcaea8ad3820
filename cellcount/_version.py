"""The package's version, in one place: ``pyproject.toml`` reads it, the records name it."""

__version__ = "0.3.0"
