"""Built-in Jinja prompt templates (package data)."""
