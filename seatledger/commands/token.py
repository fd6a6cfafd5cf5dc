"""``seatledger token --sub U [--scope S ...] [--step-up]``: print a development token signed
with the configured secret (``SEATLEDGER_JWT_SECRET``), for local use and tests."""

from __future__ import annotations

import argparse
from typing import Any

from seatledger.auth import mint_token
from seatledger.cli import CommandError
from seatledger.config import load_settings


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "token", help="print a bearer token signed with the configured development secret"
    )
    parser.add_argument("--sub", required=True, help="the subject (user or service id)")
    parser.add_argument(
        "--scope",
        action="append",
        default=[],
        help="a scope such as billing:admin, billing:licenses, billing:audit (repeatable)",
    )
    parser.add_argument(
        "--step-up",
        action="store_true",
        help="mark a fresh password authentication (amr, auth_time)",
    )
    parser.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    parser.set_defaults(handler=run_token)


def run_token(args: argparse.Namespace) -> int:
    if not args.sub.strip():
        raise CommandError("--sub must not be empty")
    if args.ttl < 1:
        raise CommandError("--ttl must be at least 1 second")
    settings = load_settings()
    if "HS256" not in settings.jwt_algorithms:
        raise CommandError("HS256 is not an allowed algorithm here; tokens come from your IdP")
    print(
        mint_token(
            settings, subject=args.sub, scopes=args.scope, step_up=args.step_up, ttl_s=args.ttl
        )
    )
    return 0
