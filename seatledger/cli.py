"""The ``seatledger`` command. Each sub-command lives in the module that owns it and exposes
``register(subparsers)``; this module only assembles them and turns errors into one line on
stderr and a non-zero exit status."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from seatledger import __version__

#: Modules that contribute sub-commands, each with ``register(subparsers)``.
COMMAND_MODULES: tuple[str, ...] = (
    "seatledger.commands.infra",
    "seatledger.commands.token",
    "seatledger.commands.audit",
    "seatledger.commands.serve",
    "seatledger.commands.demo",
)


class CommandError(Exception):
    """A failure the user can act on: printed as one line, exit status 1."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seatledger",
        description="Event-sourced billing for seat-based SaaS contracts.",
    )
    parser.add_argument("--version", action="version", version=f"seatledger {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.handler(args)
    except CommandError as exc:
        print(f"seatledger: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
