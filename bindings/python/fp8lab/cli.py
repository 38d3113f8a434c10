"""The ``fp8lab`` command line. Each area adds its subcommands in its own module; COMMAND_MODULES
lists them. A command module has ``add_parser(subparsers)`` which registers its parser(s) and sets
``func`` (args -> exit code) on each."""
from __future__ import annotations

import argparse
import importlib
import json
import sys

from . import __version__

# Modules (relative to the fp8lab package) that contribute subcommands, in --help order.
COMMAND_MODULES = [
    "cli_formats",
    "cli_report",
    "cli_golden",
    "cli_quant",
    "cli_moe",
    "cli_mla",
    "cli_accum",
    "cli_sweep",
    "cli_audit",
    "cli_train",
    "cli_profile",
]


def _version(args) -> int:
    print(f"fp8lab {__version__}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fp8lab",
        description="Bit-exact CPU emulator and verification test-bed for FP8 training and serving tricks.",
    )
    parser.add_argument("--version", action="version", version=f"fp8lab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("version", help="print the fp8lab version")
    p.set_defaults(func=_version)
    for name in COMMAND_MODULES:
        importlib.import_module(f"fp8lab.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, OSError) as err:
        # Usage and file errors: one clear line, exit code 2 (verify uses 0/1/3 for verdicts).
        print(f"fp8lab {args.command}: error: {err}", file=sys.stderr)
        return 2


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    sys.exit(main())
