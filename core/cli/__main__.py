"""`python -m reelpress.cli` runs the command line."""

from __future__ import annotations

from . import main

main()
