"""The ``mapruner`` command line. Each subcommand maps to one library function.

Exit codes: 0 success, 1 the run failed, 2 bad input (configuration, names, paths, targets).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from multi_agent_pruning import cli_commands
from multi_agent_pruning.cli_registry import COMMANDS, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, command
from multi_agent_pruning.exceptions import (
    CheckpointError,
    ConfigurationError,
    MultiAgentPruningError,
)

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_OK", "build_parser", "main"]


def _add_config_arguments(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument("--config", "-c", required=required, help="experiment YAML file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set search.trials=4 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mapruner", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="-v: info logs, -vv: debug logs")
    sub = parser.add_subparsers(dest="command", required=True)

    models = sub.add_parser("models", help="list registered models with their params and MACs")
    models.add_argument("names", nargs="*", help="only these models (default: all short names)")
    models.add_argument("--input-size", type=int, default=None, help="image side to count MACs at")

    sub.add_parser("datasets", help="list registered datasets")

    validate = sub.add_parser("validate-config", help="load and validate a config file; print a summary")
    validate.add_argument("file")
    validate.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    cli_commands.add_subcommands(sub, _add_config_arguments)
    return parser


@command("models")
def _models(args: argparse.Namespace) -> int:
    from multi_agent_pruning.models import describe_models, format_model_table

    print(format_model_table(describe_models(args.names or None, input_size=args.input_size)))
    return EXIT_OK


@command("datasets")
def _datasets(args: argparse.Namespace) -> int:
    from multi_agent_pruning.data import get_dataset_info, list_datasets

    for name in list_datasets():
        info = get_dataset_info(name)
        print(f"{name:<15} {info.num_classes:>5} classes  input {tuple(info.input_size)}  {info.description}")
    return EXIT_OK


@command("validate-config")
def _validate_config(args: argparse.Namespace) -> int:
    from multi_agent_pruning.config import load_config, validate_config_file

    if args.overrides:
        load_config(args.file, overrides=args.overrides)
    print(validate_config_file(args.file))
    return EXIT_OK


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if verbosity == 0:
        os.environ.setdefault("RAY_DEDUP_LOGS", "1")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mapruner``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    try:
        return COMMANDS[args.command](args)
    except (ConfigurationError, CheckpointError) as err:
        print(f"mapruner {args.command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MultiAgentPruningError as err:
        print(f"mapruner {args.command}: failed: {err}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt as stop:
        code = getattr(stop, "exit_code", 130)
        print(f"mapruner {args.command}: interrupted ({stop or 'SIGINT'}); the rows stored so far are kept"
              + ("; continue with --resume" if args.command == "prune" else ""), file=sys.stderr)
        return code
    except OSError as err:  # a full disk or a vanished folder outside the paths checked up front
        from multi_agent_pruning.results._files import describe_os_error

        print(f"mapruner {args.command}: failed: {describe_os_error(err)}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover  (python -m multi_agent_pruning.cli)
    sys.exit(main())
