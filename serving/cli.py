"""`attnrec` — one console script, one sub-command per job.

Each sub-command lives with the package it drives and is imported lazily, so that
`attnrec train` never imports Ray and `attnrec serve` never pays for training code
it does not use.
"""

from __future__ import annotations

import argparse
import logging
import sys

from attnrec.bench import cli as bench_cli
from attnrec.explain import cli as explain_cli
from attnrec.model import cli as model_cli
from attnrec.model import index_cli
from attnrec.model.data import DataError
from attnrec.serving import cluster_train, cluster_tune, serve_cli
from attnrec.serving import explain_cli as local_explain_cli
from attnrec.serving.network import PortInUse


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows every option's default, except where there is none to show or the help says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False or action.default == argparse.SUPPRESS \
                or "default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attnrec", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    model_cli.add_parsers(sub)
    cluster_train.add_options(sub.choices["train"])
    cluster_tune.add_parsers(sub)
    index_cli.add_parsers(sub)
    serve_cli.add_parsers(sub)
    local_explain_cli.add_parsers(sub)
    explain_cli.add_parsers(sub)
    bench_cli.add_parsers(sub)
    for command in sub.choices.values():
        command.formatter_class = DefaultsFormatter
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args)
    except (DataError, FileNotFoundError, PortInUse) as e:
        print(f"attnrec {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"attnrec {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
