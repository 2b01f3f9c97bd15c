"""Whether reconciler reads a Compose `env_file` exactly as Compose does.

Compose's env files allow more than reconciler's `KEY=VALUE` lines: bare names taken from the shell, values
interpolated with `${VAR}`, `# comments` after a value, quoted values over several lines. A file that uses any of
these would give the container different values under reconciler, so it is reported instead of referenced.
Lines are never quoted in messages: they may hold secrets.
"""

from __future__ import annotations

import re
from pathlib import Path

from reconciler.core.safeio import UnsafeFile, read_env_text

# reconciler's own env-file line (reconciler/drivers' Container spec), kept in step here
_RECONCILER_LINE = re.compile(r"^\s*(?:export\s+)?([^=\s#][^=\s]*)\s*=(.*)$")


def env_file_problem(path: Path) -> str | None:
    """None when reconciler reads the file as Compose does; otherwise why not, naming the first line."""
    try:
        text = read_env_text(path)  # regular files of at most 1 MiB: /dev/zero or a FIFO never hang the import
    except UnsafeFile as exc:
        return exc.reason
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _RECONCILER_LINE.match(line)
        if not match:
            return f"line {number} is not KEY=VALUE (Compose takes a bare name's value from the shell)"
        value = match.group(2).strip()
        quote = value[:1]
        if quote in ("'", '"'):
            if len(value) < 2 or value[-1] != quote or quote in value[1:-1]:
                return f"line {number} has a quoted value reconciler reads differently (multi-line or trailing text)"
            if quote == '"' and ("$" in value or "\\" in value):
                return f"line {number} has a double-quoted value with $ or \\ that Compose expands"
            continue
        if "$" in value:
            return f"line {number} has a value with $ that Compose interpolates"
        if re.search(r"\s#", value):
            return f"line {number} has a trailing # comment that Compose strips"
    return None
