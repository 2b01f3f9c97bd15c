"""`reconcile completion bash|zsh`: generated from the parser, loaded by a real bash, completing commands and flags."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from reconciler.cli.completion import command_words
from reconciler.cli.parser import build_parser


def _script(shell: str) -> str:
    """The script as the command prints it (in a subprocess: main() configures logging for the process)."""
    proc = subprocess.run(
        [sys.executable, "-m", "reconciler.cli", "completion", shell], capture_output=True, text=True, check=True
    )
    return proc.stdout


def _complete(script: str, *words: str) -> list[str]:
    """What the completion function offers for the command line `words` (the last word being completed)."""
    line = " ".join(f"'{w}'" for w in words)
    program = f"""
{script}
complete -p reconcile
COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}
_reconcile_complete
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    proc = subprocess.run(["bash", "--norc", "-c", program], capture_output=True, text=True, check=True)
    registered, *offered = proc.stdout.splitlines()
    assert registered.startswith("complete ") and registered.endswith(" reconcile")
    return offered


def test_every_command_and_flag_of_the_parser_is_in_the_table() -> None:
    """The table is read from the parser: every command (and `import compose`) with its own flags."""
    table = command_words(build_parser())
    assert set(table[""].subcommands) >= {"validate", "plan", "apply", "watch", "status", "import", "completion"}
    assert {"--output", "--no-prune", "-p", "--project", "-H"} <= set(table["plan"].flags)
    assert "--metrics-addr" in table["watch"].flags and "--rollout" in table["apply"].flags
    assert table["import compose"].valued["--out"] is None  # a path
    assert table["plan"].valued["--output"] == ["text", "json"]


def test_each_command_completes_only_its_own_options() -> None:
    """The table follows each command's options: validate offers no engine or driver flags, plan no apply-only
    ones, and before the command only the global options are offered (the once-global ones are accepted there
    but not suggested)."""
    table = command_words(build_parser())
    assert not {"--adopt", "--no-wait", "--parallel", "--host", "--output"} & set(table["validate"].flags)
    assert {"-p", "-H", "--log-format", "--debug"} <= set(table["validate"].flags)
    assert "--no-wait" not in table["plan"].flags and "--adopt" in table["plan"].flags
    assert {"--no-wait", "--service-timeout"} <= set(table["apply"].flags) & set(table["watch"].flags)
    assert set(table[""].flags) == {
        "-h",
        "--help",
        "--version",
        "-p",
        "--project",
        "-H",
        "--docker-host",
        "--age-identity",  # issue 22: validate reads encrypted env files too
        "--log-format",
        "--debug",
    }
    assert "--parallel" in table[""].valued  # a value still skipped when it comes before the command


def test_bash_loads_it_and_completes() -> None:
    """Sourced by bash, `reconcile pl` completes to `plan`, and flags, their choices and subcommands follow."""
    script = _script("bash")
    assert _complete(script, "reconcile", "pl") == ["plan"]
    assert _complete(script, "reconcile", "plan", "--o") == ["--output"]
    assert _complete(script, "reconcile", "-p", "demo", "apply", "-o", "") == ["text", "json"]
    assert _complete(script, "reconcile", "--log-format", "j") == ["json"]
    assert _complete(script, "reconcile", "import", "") == ["compose"]
    assert _complete(script, "reconcile", "completion", "") == ["bash", "zsh"]
    assert "--metrics-addr" in _complete(script, "reconcile", "watch", "--")
    assert "--adopt" not in _complete(script, "reconcile", "validate", "--")
    assert "--no-wait" in _complete(script, "reconcile", "apply", "--")
    assert "--no-wait" not in _complete(script, "reconcile", "plan", "--")
    assert _complete(script, "reconcile", "--parallel", "4", "pl") == ["plan"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_loads_it() -> None:
    """zsh sources the script (through bashcompinit) and registers the completion."""
    script = _script("zsh")
    proc = subprocess.run(
        ["zsh", "-f", "-c", f"{script}\nprint -r -- ${{_comps[reconcile]}}"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "_reconcile_complete" in proc.stdout or "_bash_complete" in proc.stdout
