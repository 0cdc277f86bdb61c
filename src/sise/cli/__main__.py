"""``python -m sise.cli`` (what ``torchrun -m sise.cli benchmark ...`` runs on each rank)."""

from sise.cli.commands import main

raise SystemExit(main())
