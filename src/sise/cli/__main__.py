"""``python -m sise.cli`` (what ``torchrun -m sise.cli benchmark ...`` runs on each rank)."""

from sise.cli import main

raise SystemExit(main())
