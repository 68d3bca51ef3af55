"""Expected failures of the policies package (bad selection, bad checkpoint): one-line messages."""

from __future__ import annotations


class PolicyError(Exception):
    """A policy could not be built, trained, loaded or evaluated for a reason the user can fix."""
