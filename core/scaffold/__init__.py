"""Files `reelpress init` writes into a new project (package data)."""
