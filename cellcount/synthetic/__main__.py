"""``python -m cellcount.synthetic``: see :mod:`cellcount.synthetic.samples`."""

from .samples import main

raise SystemExit(main())
