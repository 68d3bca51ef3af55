"""Old names that still work (a flag's or a config key's earlier spelling): each use prints one warning line.

The line goes to stderr, so the output a script reads is unchanged, and it
names the old spelling and the new one: `lrm-robot: warning: --out is
deprecated; use --output-dir`.
"""

from __future__ import annotations

import sys


def warn_deprecated(message: str) -> None:
    """Print `message` (what is old, what to use instead) as one warning line on stderr."""
    text = " ".join(message.split())
    print(f"lrm-robot: warning: {text}", file=sys.stderr, flush=True)
