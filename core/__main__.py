"""`python -m reelpress` runs the command line."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":  # not when a worker process imports it
    main()
