"""One module per `lrm-robot` subcommand; each exposes `register(subparsers)`."""
