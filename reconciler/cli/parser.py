"""The command line's grammar: each command with the options it uses, and the typed options the library takes,
read back from the parsed flags.

Global options (`-p`, `-H`, `--log-format`, `--debug`) go before or after any command. The options of the
engine and of the drivers (their options dataclasses' `option` fields, see reconciler/contract.py) are offered
by the commands their `scope` names; so are `--host` and `--selector`. Those options were once global, so they
are still accepted before the command, but only with a command that uses them."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn

from reconciler import __version__
from reconciler.cli.completion import SHELLS
from reconciler.cli.exits import EXIT_ERROR
from reconciler.contract import CliFlag, NoOptions, cli_flags
from reconciler.core.plugins import driver_classes, engine_class
from reconciler.errors import PermanentError
from reconciler.fleet.run import Selection
from reconciler.output.liveview import MODES

DIR_COMMANDS = ("validate", "plan", "apply", "status", "watch")
ENGINE_COMMANDS = ("plan", "apply", "status", "watch")  # they read the engine
APPLY_COMMANDS = ("apply", "watch")  # they change it
SCOPES = {"global": DIR_COMMANDS, "engine": ENGINE_COMMANDS, "apply": APPLY_COMMANDS}
GLOBAL_GROUP = "global options (also accepted before the command)"


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 1: exit 2 means "changes pending" in this contract, and a typo in a CI job must not
    read as a pending plan."""

    # dest -> (flag, commands): options accepted before the command only for the commands that use them
    before_command: dict[str, tuple[str, tuple[str, ...]]]

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        parsed, extras = super().parse_known_args(args, namespace)
        for dest, (flag, commands) in getattr(self, "before_command", {}).items():
            command = getattr(parsed, "command", None)
            if hasattr(parsed, dest) and command not in commands:
                self.error(f"{flag} is not an option of {command}")
        return parsed, extras


def option_types() -> list[type]:
    """The options dataclasses of the engine and of every installed driver: their `option` fields are flags."""
    types = [engine_class().options_type]
    for cls in driver_classes().values():
        if cls.options_type not in types and cls.options_type is not NoOptions:
            types.append(cls.options_type)
    return types


def _dest(options_type: type, name: str) -> str:
    return f"opt__{options_type.__name__}__{name}"


def _metavar(flag: CliFlag) -> str | None:
    if flag.choices:
        return None  # argparse shows the choices
    return flag.metavar or flag.flag.lstrip("-").replace("-", "_").upper()


def _typed_flags(types: list[type]) -> Iterable[tuple[str, Any, CliFlag]]:
    """(dest, field, flag) of every option field of the engine's and the drivers' options dataclasses."""
    for options_type in types:
        for fld, flag in cli_flags(options_type):
            yield _dest(options_type, fld.name), fld, flag


def _add_typed(parser: Any, dest: str, fld: Any, flag: CliFlag, hidden: bool = False) -> None:
    """One option field as a flag; its default is filled in by `typed_options`, so that a flag given before the
    command is not reset by the command's default."""
    names = [flag.short, flag.flag] if flag.short else [flag.flag]
    shown = argparse.SUPPRESS if hidden else flag.help
    if isinstance(fld.default, bool):  # a switch: `--no-wait`, not `--no-wait true`
        parser.add_argument(*names, dest=dest, action="store_true", default=argparse.SUPPRESS, help=shown)
        return
    parser.add_argument(
        *names,
        dest=dest,
        type=flag.type,
        choices=flag.choices,
        metavar=_metavar(flag),
        default=argparse.SUPPRESS,
        help=shown,
    )


def _fleet_options(parser: Any, hidden: bool = False) -> None:
    parser.add_argument(
        "--host",
        action="append",
        default=argparse.SUPPRESS,
        metavar="NAME",
        help=argparse.SUPPRESS if hidden else "in a fleet: only this Host (repeatable)",
    )
    parser.add_argument(
        "--selector",
        action="append",
        default=argparse.SUPPRESS,
        metavar="KEY=VALUE",
        help=argparse.SUPPRESS if hidden else "in a fleet: only Hosts with this label (repeatable: all must match)",
    )


def _global_options(parser: Any, types: list[type], on_command: bool) -> None:
    """The global options; on a command they default to SUPPRESS, so `plan --project x DIR` and
    `--project x plan DIR` both work and neither position overrides the other with a default."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if on_command else value

    parser.add_argument(
        "-p",
        "--project",
        default=default(None),
        metavar="NAME",
        help="project name (default: the manifest directory's base name)",
    )
    for dest, fld, flag in _typed_flags(types):
        if flag.scope == "global":
            _add_typed(parser, dest, fld, flag)
    parser.add_argument(
        "--log-format", choices=("console", "json"), default=default("console"), help="console (default) or json"
    )
    parser.add_argument("--debug", action="store_true", default=default(False), help="debug logs and tracebacks")


def _command_options(parser: argparse.ArgumentParser, types: list[type], command: str) -> None:
    """The options this command takes from the engine and the drivers, and `--host`/`--selector`, after its own;
    then the global options in a group of their own."""
    if command in ENGINE_COMMANDS:
        _fleet_options(parser)
        parser.add_argument(
            "--as-host",
            metavar="NAME",
            help="pull mode: apply to this machine's engine (--docker-host) what the tree places on Host NAME; "
            "its spec.engine is not used",
        )
    for dest, fld, flag in _typed_flags(types):
        if flag.scope != "global" and command in SCOPES[flag.scope]:
            _add_typed(parser, dest, fld, flag)
    _global_options(parser.add_argument_group(GLOBAL_GROUP), types, on_command=True)


def _git_options(parser: argparse.ArgumentParser, watch: bool) -> None:
    """`--git URL`: DIR keeps reconcile's own checkouts of the repository, and the manifests come from its newest
    commit of REF (docs/gitops.md)."""
    git = parser.add_argument_group("git source (DIR holds reconcile's checkouts; see docs/gitops.md)")
    git.add_argument("--git", metavar="URL", help="take the manifests from this repository (https, ssh, file)")
    git.add_argument("--ref", metavar="REF", help="the branch or tag to follow (default: the remote's default branch)")
    git.add_argument("--path", metavar="SUBDIR", default="", help="the manifest directory inside the repository")
    git.add_argument(
        "--verify-signatures",
        type=Path,
        metavar="FILE",
        help="apply only commits signed by a key in this file (an ssh allowed-signers file or a GPG public keyring)",
    )
    git.add_argument("--git-ssh-key", type=Path, metavar="FILE", help="the deploy key for ssh URLs")
    git.add_argument(
        "--git-known-hosts", type=Path, metavar="FILE", help="known_hosts for ssh URLs (default: the user's)"
    )
    git.add_argument("--git-credentials-file", type=Path, metavar="FILE", help="a token, or user:token, for https URLs")
    if watch:
        git.add_argument(
            "--poll", type=float, default=60.0, metavar="SECONDS", help="seconds between fetches (default 60)"
        )
        git.add_argument(
            "--webhook-secret-file",
            type=Path,
            metavar="FILE",
            help="with --metrics-addr: POST /hooks/git signed with this secret (GitHub, Gitea, GitLab) fetches at once",
        )
        git.add_argument(
            "--update-branch",
            metavar="NAME",
            help="Images with `update: {mode: commit}`: push their update commits to this branch (made from the "
            "tracked one when missing) for review, instead of to the tracked branch",
        )
        git.add_argument(
            "--git-signing-key",
            type=Path,
            metavar="FILE",
            help="sign update commits with this ssh private key (so --verify-signatures accepts them)",
        )
        git.add_argument(
            "--git-author",
            metavar="'NAME <EMAIL>'",
            help="author and committer of update commits (default: reconcile <reconcile@HOSTNAME>)",
        )


def _output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text", help="text (default) or json")


def build_parser() -> argparse.ArgumentParser:
    types = option_types()
    parser = _Parser(prog="reconcile", description="Declarative reconciliation for a Docker host.")
    parser.set_defaults(option_types=types)
    parser.add_argument("--version", action="version", version=f"reconcile {__version__}")
    _global_options(parser, types, on_command=False)
    # Once global, now the options of the commands that use them: still accepted before such a command.
    _fleet_options(parser, hidden=True)
    parser.before_command = {"host": ("--host", ENGINE_COMMANDS), "selector": ("--selector", ENGINE_COMMANDS)}
    for dest, fld, flag in _typed_flags(types):
        if flag.scope != "global":
            _add_typed(parser, dest, fld, flag, hidden=True)
            parser.before_command[dest] = (flag.flag, SCOPES[flag.scope])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        p.add_argument("dir", type=Path, metavar="DIR", help="the manifest directory")
        return p

    commands: dict[str, argparse.ArgumentParser] = {}
    commands["validate"] = command("validate", "check every manifest; touches no engine")
    plan = commands["plan"] = command("plan", "show what apply would do")
    _output(plan)
    plan.add_argument("--no-prune", action="store_true", help="do not plan removal of objects whose manifest is gone")
    plan.add_argument("--allow-empty", action="store_true", help="let an empty DIR prune everything")
    apply = commands["apply"] = command("apply", "converge the host")
    _output(apply)
    apply.add_argument("--no-prune", action="store_true", help="keep owned objects whose manifest is gone")
    apply.add_argument("--allow-empty", action="store_true", help="let an empty DIR prune everything")
    apply.add_argument("--wait", action="store_true", help="wait for another writer instead of failing")
    apply.add_argument(
        "--progress",
        choices=MODES,
        default="auto",
        help="auto (default): one live line per object when stdout is a terminal; tty: always; plain: never",
    )
    apply.add_argument(
        "--rollout",
        default="all",
        metavar="all|N",
        help="in a fleet: all Hosts at once (default), or N Hosts at a time in name order, stopping after a "
        "batch in which a Host failed",
    )
    status = commands["status"] = command("status", "report each declared object: in sync, drifted, missing, failing")
    _output(status)
    watch = commands["watch"] = command("watch", "apply, then keep converging")
    watch.add_argument("--no-prune", action="store_true", help="keep owned objects whose manifest is gone")
    watch.add_argument("--allow-empty", action="store_true", help="let an empty DIR prune everything")
    watch.add_argument("--wait", action="store_true", help="wait for another writer instead of failing")
    watch.add_argument(
        "--resync", type=float, default=300.0, metavar="SECONDS", help="seconds between full resyncs (default 300)"
    )
    watch.add_argument(
        "--metrics-addr",
        metavar="HOST:PORT",
        help="serve the status page (/, /status.json), /healthz, /metrics on this loopback HOST:PORT",
    )
    watch.add_argument(
        "--progress",
        choices=MODES,
        default="auto",
        help="auto (default): live lines for each pass that changes something when stdout is a terminal; tty; plain",
    )
    watch.add_argument(
        "--notify",
        action="append",
        default=[],
        metavar="URL",
        help="tell this apprise URL (json://, ntfy://, mailto://...) of new revisions, failures, held objects, "
        "drift repaired and engine outages (repeatable)",
    )
    watch.add_argument(
        "--update-interval",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="seconds between checks of the Images' update policies (spec.update) against their registries "
        "(default 3600)",
    )
    for name in ("plan", "apply", "watch"):
        _git_options(commands[name], watch=name == "watch")
    for name, p in commands.items():
        _command_options(p, types, name)
    importer = sub.add_parser("import", help="translate another tool's files into manifests")
    formats = importer.add_subparsers(dest="format", required=True, metavar="FORMAT", parser_class=_Parser)
    compose = formats.add_parser("compose", help="Docker Compose files (merged in order, as `-f` does)")
    compose.add_argument("files", type=Path, nargs="+", metavar="FILE", help="Compose files, merged in order")
    compose.add_argument("--out", type=Path, metavar="DIR", help="where to write the manifests (default: ./PROJECT)")
    # SUPPRESS: a default here would overwrite the global --project given before the command
    compose.add_argument("-p", "--project", default=argparse.SUPPRESS, metavar="NAME", help="the Compose project name")
    compose.add_argument(
        "--profile", action="append", default=[], metavar="NAME", help="activate a Compose profile (repeatable)"
    )
    compose.add_argument(
        "--secret-env",
        action="append",
        default=[],
        metavar="NAME",
        help="the value of this environment entry (or variable) is secret: into the 0600 env file (repeatable)",
    )
    compose.add_argument("-v", "--verbose", action="store_true", help="list every report line, not one example per key")
    compose.add_argument(
        "--no-grants",
        action="store_true",
        help="leave out what needs allowPrivileged, allowSensitive or allowExternalContext (each is reported)",
    )
    compose.add_argument(
        "--swarm",
        action="store_true",
        help="write Service, Secret and Config manifests as `docker stack deploy` would (deploy: is mapped)",
    )
    images = sub.add_parser("images", help="questions about the declared images")
    questions = images.add_subparsers(dest="question", required=True, metavar="QUESTION", parser_class=_Parser)
    outdated = questions.add_parser(
        "outdated",
        help="list what each Image's update policy (spec.update) would change now; exit 2 when something is outdated",
        description="List what each Image's update policy (spec.update) would change now. Exit 0: nothing is "
        "outdated; 2: something is; 1: an error (a registry that could not be asked, and nothing found).",
    )
    outdated.add_argument("dir", type=Path, metavar="DIR", help="the manifest directory")
    _output(outdated)
    _global_options(outdated.add_argument_group(GLOBAL_GROUP), types, on_command=True)
    completion = sub.add_parser("completion", help="print a shell completion script")
    completion.add_argument("shell", choices=SHELLS, help="the shell it is for")
    return parser


def typed_options(args: argparse.Namespace) -> list[object]:
    """One instance of every options dataclass, from the parsed flags; a field whose flag was not given (or
    that the command does not offer) gets its environment variable or its default, as a flag would."""
    found = []
    for options_type in args.option_types:
        values = {}
        for fld, flag in cli_flags(options_type):
            dest = _dest(options_type, fld.name)
            if hasattr(args, dest):
                values[fld.name] = getattr(args, dest)
                continue
            value = os.environ.get(flag.env, fld.default) if flag.env else fld.default
            if isinstance(value, str) and flag.type is not None:  # as argparse converts a text default
                value = flag.type(value)
            values[fld.name] = value
        found.append(options_type(**values))
    return found


def selection(args: argparse.Namespace) -> Selection:
    """`--host` and `--selector`: the Hosts of a fleet the command works on; `--as-host NAME`: that Host only."""
    hosts, selectors = tuple(getattr(args, "host", ())), tuple(getattr(args, "selector", ()))
    as_host = getattr(args, "as_host", None)
    if as_host is not None:
        if hosts or selectors:
            raise PermanentError("--as-host works on one Host: it takes no --host or --selector")
        return Selection((as_host,), ())
    return Selection(hosts, selectors)
