"""Global options before or after the command, short forms, and flags that come from drivers' options."""

from __future__ import annotations

import pytest

from reconciler.cli.main import build_parser


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
    args = build_parser().parse_args(argv)
    assert args.project == "demo" and args.command == "plan" and str(args.dir) == "d"


def test_an_option_before_the_command_is_not_reset_by_the_commands_defaults() -> None:
    args = build_parser().parse_args(["--log-format", "json", "-H", "unix:///x.sock", "status", "d"])
    assert args.log_format == "json"
    assert args.opt__EngineOptions__docker_host == "unix:///x.sock"
    assert build_parser().parse_args(["status", "d"]).log_format == "console"


def test_driver_options_are_flags_with_their_choices_and_env_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECONCILER_FIREWALL_BACKEND", "restore")
    args = build_parser().parse_args(["apply", "d"])
    assert args.opt__FirewallOptions__backend == "restore"
    args = build_parser().parse_args(["apply", "d", "--firewall-backend", "iptc", "-o", "json"])
    assert args.opt__FirewallOptions__backend == "iptc" and args.output == "json"
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["apply", "d", "--firewall-backend", "pf"])
    assert exc.value.code == 1


def test_fleet_options_repeat() -> None:
    args = build_parser().parse_args(["plan", "d", "--host", "a", "--host", "b", "--selector", "role=edge"])
    assert args.host == ["a", "b"] and args.selector == ["role=edge"]
    assert build_parser().parse_args(["apply", "d", "--rollout", "2"]).rollout == "2"


def test_engine_flags_apply_to_every_host_of_a_fleet(tmp_path) -> None:
    """`--parallel` and `--adopt` bound and direct each Host's engine as they do the one engine (they were dropped
    for Hosts: a fleet ran at the default 8 requests at once whatever --parallel said)."""
    from reconciler.cli.main import _runner
    from reconciler.core.placement import HostSpec

    args = build_parser().parse_args(["apply", str(tmp_path), "--parallel", "3", "--adopt", "-p", "demo"])
    host = HostSpec("db-b", {}, "ssh://deploy@db-b", None, False, None)  # type: ignore[arg-type]
    options = _runner(args, host).engine.options
    assert (options.docker_host, options.max_requests, options.adopt) == ("ssh://deploy@db-b", 3, True)
