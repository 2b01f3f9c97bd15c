"""The `reconcile` entry point: parse, set up logging, run the command, turn errors into one line and an exit
status."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from reconciler.cli import logs
from reconciler.cli.commands import COMMANDS
from reconciler.cli.exits import EXIT_ERROR, EXIT_INTERRUPTED
from reconciler.cli.parser import build_parser
from reconciler.errors import EngineUnavailable, ReconcileError, ValidationFailed


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.log_format, args.debug)
    try:
        return COMMANDS[args.command](args)
    except ValidationFailed as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) found; nothing was changed.", file=sys.stderr)
        return EXIT_ERROR
    except EngineUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except ReconcileError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `reconcile plan | head`: the reader has gone, and that is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
