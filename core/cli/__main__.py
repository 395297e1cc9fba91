"""`python -m reelpress.cli` runs the command line."""

from __future__ import annotations

from . import main

if __name__ == "__main__":  # not when a worker process imports it
    main()
