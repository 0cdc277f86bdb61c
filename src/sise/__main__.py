"""``python -m sise``: the ``sise`` command line."""

from sise.cli import main

raise SystemExit(main())
