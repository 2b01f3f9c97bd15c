"""Each command's options, global options before or after the command, readable metavars, and the typed options
read from flags that come from the engine's and drivers' options dataclasses."""

from __future__ import annotations

import argparse

import pytest

from reconciler.cli.parser import build_parser, selection, typed_options
from reconciler.drivers.engine.session import EngineOptions
from reconciler.drivers.firewall.driver import FirewallOptions
from reconciler.drivers.swarm.driver import ServiceOptions


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def options_of(args: argparse.Namespace, options_type: type) -> object:
    return next(o for o in typed_options(args) if isinstance(o, options_type))


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exc:
        parse(*argv)
    assert exc.value.code == 1  # not 2: that means "changes pending"
    return capsys.readouterr().err


def flags_of(command: str) -> set[str]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {flag for action in sub.choices[command]._actions for flag in action.option_strings}


@pytest.mark.parametrize(
    "argv",
    [
        ["--project", "demo", "plan", "d"],
        ["plan", "--project", "demo", "d"],
        ["plan", "d", "-p", "demo"],
        ["-p", "demo", "plan", "d"],
    ],
)
def test_global_options_go_before_or_after_the_command(argv: list[str]) -> None:
    args = parse(*argv)
    assert args.project == "demo" and args.command == "plan" and str(args.dir) == "d"


@pytest.mark.parametrize("command", ["validate", "plan", "apply", "status", "watch"])
def test_every_command_takes_the_global_options_after_it(command: str) -> None:
    args = parse(command, "d", "-H", "unix:///x.sock", "--log-format", "json", "--debug", "-p", "demo")
    assert (args.log_format, args.debug, args.project) == ("json", True, "demo")
    assert options_of(args, EngineOptions).docker_host == "unix:///x.sock"  # type: ignore[attr-defined]


def test_an_option_before_the_command_is_not_reset_by_the_commands_defaults() -> None:
    args = parse("--log-format", "json", "-H", "unix:///x.sock", "status", "d")
    assert args.log_format == "json"
    assert options_of(args, EngineOptions).docker_host == "unix:///x.sock"  # type: ignore[attr-defined]
    assert parse("status", "d").log_format == "console"
    assert options_of(parse("--parallel", "3", "apply", "d"), EngineOptions).max_requests == 3  # type: ignore[attr-defined]


def test_each_command_offers_only_the_options_it_uses() -> None:
    """validate touches no engine: no engine, driver or fleet options; the apply-only driver options (swarm's
    --no-wait, --service-timeout) are on the commands that apply, not on plan or status."""
    assert not flags_of("validate") & {"--adopt", "--no-wait", "--parallel", "--host", "--firewall-backend", "-o"}
    assert {"-p", "-H", "--log-format", "--debug"} <= flags_of("validate")
    for command in ("plan", "status"):
        assert {"--adopt", "--parallel", "--firewall-backend", "--host", "--selector"} <= flags_of(command)
        assert not flags_of(command) & {"--no-wait", "--service-timeout", "--wait", "--rollout", "--resync"}
    assert {"--no-wait", "--service-timeout", "--rollout", "--wait", "--adopt"} <= flags_of("apply")
    assert {"--no-wait", "--service-timeout", "--resync", "--metrics-addr"} <= flags_of("watch")
    assert "--rollout" not in flags_of("watch") and "--output" not in flags_of("watch")
    assert "--no-prune" not in flags_of("status")


def test_an_option_a_command_does_not_use_is_refused_before_or_after_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert "unrecognized arguments: --adopt" in usage_error(capsys, "validate", "d", "--adopt")
    assert "unrecognized arguments: --no-wait" in usage_error(capsys, "plan", "d", "--no-wait")
    assert "--adopt is not an option of validate" in usage_error(capsys, "--adopt", "validate", "d")
    assert "--host is not an option of validate" in usage_error(capsys, "--host", "a", "validate", "d")
    # once global: still accepted before a command that uses them
    args = parse("--host", "a", "--no-wait", "--firewall-backend", "iptc", "apply", "d")
    assert selection(args).hosts == ("a",) and options_of(args, ServiceOptions).no_wait  # type: ignore[attr-defined]


def test_help_shows_readable_metavars() -> None:
    texts = [build_parser().format_help()]
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    texts += [p.format_help() for p in sub.choices.values()]
    helps = "\n".join(texts)
    assert "OPT__" not in helps and "METRICS_ADDR" not in helps and "RESYNC" not in helps
    apply, watch = sub.choices["apply"].format_help(), sub.choices["watch"].format_help()
    assert "-H URL, --docker-host URL" in apply and "--parallel N" in apply
    assert "--service-timeout SECONDS" in apply and "--resync SECONDS" in watch
    assert "--metrics-addr HOST:PORT" in watch and "-p NAME, --project NAME" in apply
    assert "global options" in apply and "--adopt" not in sub.choices["validate"].format_help()


def test_driver_options_are_flags_with_their_choices_and_env_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_FIREWALL_BACKEND", "restore")
    assert options_of(parse("apply", "d"), FirewallOptions).backend == "restore"  # type: ignore[attr-defined]
    args = parse("apply", "d", "--firewall-backend", "iptc", "-o", "json")
    assert options_of(args, FirewallOptions).backend == "iptc" and args.output == "json"  # type: ignore[attr-defined]
    with pytest.raises(SystemExit) as exc:
        parse("apply", "d", "--firewall-backend", "pf")
    assert exc.value.code == 1


def test_a_command_without_a_flag_still_gets_its_default_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """validate offers no engine or driver flags, yet its runner gets complete options (environment included)."""
    monkeypatch.setenv("RECONCILER_SERVICE_TIMEOUT", "7")
    args = parse("validate", "d")
    assert options_of(args, EngineOptions) == EngineOptions()
    assert float(options_of(args, ServiceOptions).service_timeout) == 7.0  # type: ignore[attr-defined]


def test_fleet_options_repeat() -> None:
    args = parse("plan", "d", "--host", "a", "--host", "b", "--selector", "role=edge")
    assert selection(args).hosts == ("a", "b") and selection(args).selectors == ("role=edge",)
    assert selection(parse("plan", "d")).hosts == ()
    assert parse("apply", "d", "--rollout", "2").rollout == "2"


def test_engine_flags_apply_to_every_host_of_a_fleet(tmp_path) -> None:
    """`--parallel` and `--adopt` bound and direct each Host's engine as they do the one engine (they were dropped
    for Hosts: a fleet ran at the default 8 requests at once whatever --parallel said)."""
    from reconciler.cli.commands import runner_for
    from reconciler.core.placement import HostSpec

    args = parse("apply", str(tmp_path), "--parallel", "3", "--adopt", "-p", "demo")
    host = HostSpec("db-b", {}, "ssh://deploy@db-b", None, False, None)  # type: ignore[arg-type]
    options = runner_for(args)(host).engine.options
    assert (options.docker_host, options.max_requests, options.adopt) == ("ssh://deploy@db-b", 3, True)


def test_the_option_table_in_docs_cli_md_matches_the_parser() -> None:
    """docs/cli.md says which commands offer each option; the parser agrees, row by row."""
    import re
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `-")]
    assert rows
    commands = ("validate", "plan", "apply", "status", "watch")
    for row in rows:
        options, offered_by = re.split(r"(?<!\\)\|", row.strip("|"))[:2]  # `\|` is a pipe inside a cell
        named = {c.strip() for c in offered_by.split(",")}
        for flag in re.findall(r"`(--?[a-z-]+)", options):
            assert {c for c in commands if flag in flags_of(c)} == named, flag


def test_update_commit_options_are_watch_options_that_need_a_git_source(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--update-branch, --git-signing-key and --git-author are watch's; without --git, with a branch name git would
    refuse, an author that is not `Name <email>` or a key that cannot be read, watch stops before it starts (exit
    1, one line naming the option)."""
    import structlog

    from reconciler.cli.main import main

    saved = structlog.get_config()  # main() configures logging for the process: give later tests theirs back
    for flag in ("--update-branch", "--git-signing-key", "--git-author"):
        assert flag in flags_of("watch")
        assert not {flag} & (flags_of("plan") | flags_of("apply") | flags_of("status"))
    args = parse("watch", "d", "--git", "file:///x", "--update-branch", "bump", "--git-signing-key", "k")
    assert args.update_branch == "bump" and str(args.git_signing_key) == "k"
    key = tmp_path / "key"
    key.write_text("k")
    cases = [
        (["--update-branch", "bump"], "--update-branch needs --git"),
        (["--git-signing-key", str(key)], "--git-signing-key needs --git"),
        (["--git", "file:///x", "--update-branch", "a..b"], "--update-branch 'a..b' is not a valid branch name"),
        (["--git", "file:///x", "--git-author", "bot"], "--git-author 'bot': expected `Name <email>`"),
        (["--git", "file:///x", "--git-signing-key", str(tmp_path / "nope")], "cannot read the --git-signing-key"),
    ]
    try:
        for extra, expected in cases:
            assert main(["watch", str(tmp_path / "state"), *extra]) == 1
            assert expected in capsys.readouterr().err
    finally:
        structlog.configure(**saved)
    assert not (tmp_path / "state").exists()  # stopped before the git source made its directory
