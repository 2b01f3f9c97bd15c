"""`${VAR}` interpolation as `docker compose` does it, and the `.env` file it reads variables from.

Supported: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`,
`${VAR:+replacement}`, `${VAR+replacement}` (defaults may nest `${...}`), and `$$` for a literal `$`; a `$`
followed by neither a name nor `{` stays as it is (`$(seq 1 60)`), as Compose leaves it.
A variable that is unset and has no default becomes "" with a warning, as Compose does.
A mapping value that held a variable is typed after interpolation, as Compose types it: `privileged: ${PRIV}`
with PRIV=true is the boolean true and `retries: $RETRIES` a number (the text is kept for string keys).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from reconciler.compose.source import ComposeError, Loc, Map, Override, Seq, plain_scalar

_NAME = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")


class Interpolator:
    """Substitutes variables from `env`; `warn(loc, message)` hears about unset variables."""

    def __init__(self, env: Mapping[str, str], warn: Callable[[Loc, str], None]) -> None:
        self.env = env
        self.warn = warn
        # (file, line, result) -> the variables whose values went into it: values that came from the shell or
        # .env rather than the Compose file, which may be secrets the file itself never held
        self.sources: dict[tuple[str, int, str], frozenset[str]] = {}
        self._used: set[str] = set()

    def _value(self, text: str, loc: Loc) -> str:
        self._used = set()
        result = self.text(text, loc)
        if self._used:
            self.sources[(loc.file, loc.line, result)] = frozenset(self._used)
        return result

    def tree(self, value: Any, loc: Loc) -> Any:
        """A copy of `value` (a Map, Seq or scalar) with every string interpolated; keys are left alone."""
        if isinstance(value, Map):
            out = Map(value.loc)
            for key, item in value.items():
                sub = self.tree(item, value.at(key))
                if isinstance(item, str) and "$" in item and isinstance(sub, str):
                    typed = plain_scalar(sub)  # the key's text stays the interpolated string (Map.text)
                    if typed is not None and not isinstance(typed, str):
                        out.put(key, typed, value.at(key), sub)
                        continue
                out.put(key, sub, value.at(key), value.raw.get(key) if not isinstance(sub, str) else None)
            return out
        if isinstance(value, Seq):
            seq = Seq(value.loc)
            for i, item in enumerate(value):
                seq.add(self.tree(item, value.at(i)), value.at(i))
            return seq
        if isinstance(value, Override):
            return Override(self.tree(value.value, loc))
        if isinstance(value, str):
            return self._value(value, loc)
        return value

    def text(self, text: str, loc: Loc) -> str:
        out: list[str] = []
        i = 0
        while i < len(text):
            char = text[i]
            if char != "$":
                out.append(char)
                i += 1
                continue
            following = text[i + 1 : i + 2]
            if following == "$":
                out.append("$")
                i += 2
                continue
            if following == "{":
                end = _closing_brace(text, i + 2)
                if end < 0:
                    raise ComposeError(loc.file, loc.line, f"invalid interpolation {text!r}: no closing '}}'")
                out.append(self._braced(text[i + 2 : end], text, loc))
                i = end + 1
                continue
            match = _NAME.match(text, i + 1)
            if not match:
                out.append(char)  # Compose leaves a `$` that starts no variable as it is
                i += 1
                continue
            out.append(self._lookup(match.group(), loc))
            i = match.end()
        return "".join(out)

    def _lookup(self, name: str, loc: Loc) -> str:
        if name not in self.env:
            self.warn(loc, f"variable {name} is not set; it defaults to an empty string")
            return ""
        self._used.add(name)
        return self.env[name]

    def _braced(self, inner: str, whole: str, loc: Loc) -> str:
        match = _NAME.match(inner)
        if not match:
            raise ComposeError(loc.file, loc.line, f"invalid interpolation {whole!r}: expected a variable name")
        name, rest = match.group(), inner[match.end() :]
        if not rest:
            return self._lookup(name, loc)
        operator = next((op for op in _OPERATORS if rest.startswith(op)), None)
        if operator is None:
            raise ComposeError(loc.file, loc.line, f"invalid interpolation {whole!r}: unknown operator after {name}")
        word = rest[len(operator) :]
        value = self.env.get(name)
        is_set = value is not None
        usable = is_set and (value != "" or not operator.startswith(":"))
        if operator in (":-", "-"):
            if usable and value is not None:
                self._used.add(name)
                return value
            return self.text(word, loc)
        if operator in (":+", "+"):
            return self.text(word, loc) if usable else ""
        if not usable:  # ":?" and "?": a required variable
            detail = self.text(word, loc) or "is required"
            raise ComposeError(loc.file, loc.line, f"required variable {name} is missing a value: {detail}")
        self._used.add(name)
        return value or ""


def _closing_brace(text: str, start: int) -> int:
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


_DOTENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*(=(.*))?$")


def parse_dotenv(text: str, shown: str) -> dict[str, str]:
    """`KEY=VALUE` lines of a `.env` file; quotes removed (double quotes understand `\\n` escapes), unquoted
    values end at ` #`. Values are never echoed in errors: they are often secrets."""
    env: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        number, line = i + 1, lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _DOTENV_LINE.match(line)
        if not match:
            raise ComposeError(shown, number, "expected KEY=VALUE")
        key, has_value, value = match.group(1), match.group(2), (match.group(3) or "")
        if not has_value:
            continue  # a bare name sets nothing for interpolation
        value = value.strip()
        if value[:1] in ("'", '"'):
            quote = value[0]
            body = value[1:]
            # a quoted value may continue over several lines
            while not _closed(body, quote) and i < len(lines):
                body += "\n" + lines[i]
                i += 1
            if not _closed(body, quote):
                raise ComposeError(shown, number, f"unterminated {quote} quote")
            body = body[: _close_index(body, quote)]
            if quote == '"':
                body = body.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
            env[key] = body
            continue
        env[key] = re.split(r"\s+#", value, maxsplit=1)[0].strip()
    return env


def _close_index(body: str, quote: str) -> int:
    i = 0
    while i < len(body):
        if body[i] == "\\" and quote == '"':
            i += 2
            continue
        if body[i] == quote:
            return i
        i += 1
    return -1


def _closed(body: str, quote: str) -> bool:
    return _close_index(body, quote) >= 0
