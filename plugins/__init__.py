"""reelpress built-in plugins, each registered through the reelpress entry-point group."""

from __future__ import annotations
