"""``python -m cellcount.evaluate``: see :mod:`cellcount.evaluate.cli`."""

from .cli import main

raise SystemExit(main())
