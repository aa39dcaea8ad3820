"""``python -m cellcount.finetune``."""

from .cli import main

raise SystemExit(main())
