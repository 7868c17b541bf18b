"""One console for the whole CLI: rich styling on a terminal, plain stable text when piped.

Scripts parse our plain output and tests compare it, so nothing decorative may leak into it:
no colour, no wrapping at the terminal width, no emoji.
"""

from __future__ import annotations

import sys
from functools import cache

from rich.console import Console


@cache
def out() -> Console:
    tty = sys.stdout.isatty()
    return Console(highlight=False, soft_wrap=not tty, no_color=not tty, emoji=False)


@cache
def err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
