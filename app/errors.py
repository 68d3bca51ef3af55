"""Errors the CLI reports as one line and exit code 2."""


class UsageError(Exception):
    """Bad flags or arguments that argparse cannot catch by itself."""
