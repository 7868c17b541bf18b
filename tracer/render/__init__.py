"""Renderers: the same result as rich text on a terminal, plain stable text when piped, or JSON."""
