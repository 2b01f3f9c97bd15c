"""Read one Compose file into plain values that remember where each came from (file and line).

Mappings become `Map` and sequences `Seq`: ordinary dicts and lists that also carry the location of every key
and item, so a loss report or an error can name `file:line` after interpolation and merging moved things around.
Scalars are resolved the way `docker compose` (go-yaml, YAML 1.2) reads them, not PyYAML's YAML 1.1:
`no`, `on`, `yes` stay strings, so `restart: no` and `DEBUG: yes` mean what the user wrote.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml

from reconciler.core.safeio import UnsafeFile, read_bytes

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_NODES = 200_000  # after alias expansion: a few lines of nested aliases can otherwise expand to billions

_NULL = re.compile(r"^(~|null|Null|NULL|)$")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"^[-+]?(0|[1-9][0-9_]*)$")
_OCT = re.compile(r"^0o?[0-7_]+$")
_HEX = re.compile(r"^0x[0-9a-fA-F_]+$")
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9_]*)?)([eE][-+]?[0-9]+)?$")


class ComposeError(Exception):
    """Bad input that stops the import: one line, `file:line: message`."""

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}" if line else f"{file}: {message}")
        self.file, self.line, self.message = file, line, message


@dataclass(frozen=True)
class Loc:
    """Where a value was written: the file as the user named it, and a 1-based line."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


class Reset:
    """`!reset` in an override file: the key is removed from what earlier files said."""


class Override:
    """`!override` in an override file: the value replaces, instead of merging with, earlier files'."""

    def __init__(self, value: Any) -> None:
        self.value = value


class Map(dict[str, Any]):
    """A YAML mapping with the location of itself and of each key; `raw` keeps plain scalars' source text."""

    def __init__(self, loc: Loc) -> None:
        super().__init__()
        self.loc = loc
        self.locs: dict[str, Loc] = {}
        self.raw: dict[str, str] = {}

    def at(self, key: str) -> Loc:
        return self.locs.get(key, self.loc)

    def put(self, key: str, value: Any, loc: Loc, raw: str | None = None) -> None:
        self[key] = value
        self.locs[key] = loc
        if raw is not None:
            self.raw[key] = raw
        else:
            self.raw.pop(key, None)

    def text(self, key: str) -> str:
        """The value as text, as Compose would read it into a string (`8080`, `1.0`, `yes`, `true`)."""
        if key in self.raw:
            return self.raw[key]
        return scalar_text(self[key])


class Seq(list[Any]):
    """A YAML sequence with the location of itself and of each item."""

    def __init__(self, loc: Loc) -> None:
        super().__init__()
        self.loc = loc
        self.locs: list[Loc] = []

    def at(self, index: int) -> Loc:
        return self.locs[index] if index < len(self.locs) else self.loc

    def add(self, value: Any, loc: Loc) -> None:
        self.append(value)
        self.locs.append(loc)


def scalar_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _plain(node: yaml.Node) -> bool:
    # the C loader marks plain scalars with style "", the pure-Python one with None
    return isinstance(node, yaml.ScalarNode) and node.style in (None, "")


def _scalar(node: yaml.ScalarNode) -> Any:
    text = node.value
    if not _plain(node) or node.tag == "tag:yaml.org,2002:str":  # quoted, block or !!str: a string
        return text
    return plain_scalar(text)


def plain_scalar(text: str) -> Any:
    """What a plain (unquoted) YAML 1.2 scalar with this text is: None, a boolean, a number, or the text."""
    if _NULL.match(text):
        return None
    if text in _BOOL:
        return _BOOL[text]
    try:
        if _INT.match(text):
            return int(text.replace("_", ""))
        if _HEX.match(text):
            return int(text[2:].replace("_", ""), 16)
        if _OCT.match(text) and len(text) > 1:
            return int(text.lstrip("0o").replace("_", "") or "0", 8)
        if _FLOAT.match(text) and any(c.isdigit() for c in text):
            return float(text.replace("_", ""))
    except ValueError:
        pass
    return text


class _TooLarge(Exception):
    pass


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.nodes = 0

    def loc(self, node: yaml.Node) -> Loc:
        return Loc(self.file, node.start_mark.line + 1)

    def build(self, node: yaml.Node) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _TooLarge
        if node.tag == "!reset":
            return Reset()
        if node.tag == "!override":
            inner = self.build(_retag(node))
            return Override(inner)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node)
        if isinstance(node, yaml.SequenceNode):
            seq = Seq(self.loc(node))
            for item in node.value:
                seq.add(self.build(item), self.loc(item))
            return seq
        return _scalar(cast(yaml.ScalarNode, node))  # the third and last kind of node

    def _mapping(self, node: yaml.MappingNode) -> Map:
        out = Map(self.loc(node))
        merged: list[Map] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                value = self.build(value_node)
                for item in value if isinstance(value, list) else [value]:
                    if not isinstance(item, Map):
                        raise ComposeError(self.file, key_node.start_mark.line + 1, "a merge key (<<) needs mappings")
                    merged.append(item)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise ComposeError(self.file, key_node.start_mark.line + 1, "mapping keys must be strings")
            key = scalar_text(_scalar(key_node)) if _plain(key_node) else key_node.value
            if key in out:
                first = out.at(key).line
                line = key_node.start_mark.line + 1
                raise ComposeError(self.file, line, f"duplicate key {key!r} (first at line {first})")
            value = self.build(value_node)
            raw = value_node.value if _plain(value_node) else None
            out.put(key, value, self.loc(key_node), raw if raw is not None and not isinstance(value, str) else None)
        # explicit keys win over merged ones; earlier merge sources win over later ones (YAML merge semantics)
        for source in merged:
            for key, value in source.items():
                if key not in out:
                    out.put(key, value, source.at(key), source.raw.get(key))
        return out


def _retag(node: yaml.Node) -> yaml.Node:
    if isinstance(node, yaml.MappingNode):
        return yaml.MappingNode("tag:yaml.org,2002:map", node.value, node.start_mark, node.end_mark)
    if isinstance(node, yaml.SequenceNode):
        return yaml.SequenceNode("tag:yaml.org,2002:seq", node.value, node.start_mark, node.end_mark)
    scalar = cast(yaml.ScalarNode, node)  # the third and last kind of node
    return yaml.ScalarNode("tag:yaml.org,2002:str", scalar.value, scalar.start_mark, scalar.end_mark, scalar.style)


def read_text(path: Path, shown: str) -> str:
    """The file's text, or a one-line ComposeError (missing, unreadable, too large, not UTF-8)."""
    try:
        if not path.is_file():
            raise ComposeError(shown, 0, "no such file" if not path.exists() else "not a regular file")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ComposeError(shown, 0, f"file is {size} bytes; at most {MAX_FILE_BYTES} are read")
        return read_bytes(path, MAX_FILE_BYTES).decode("utf-8")  # opened non-blocking, checked again on the fd
    except UnsafeFile as exc:
        raise ComposeError(shown, 0, exc.reason) from None
    except UnicodeDecodeError as exc:
        raise ComposeError(shown, 0, f"not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ComposeError(shown, 0, f"cannot read: {exc.strerror}") from None


def parse_compose(text: str, shown: str) -> Map:
    """The top-level mapping of a Compose file (an empty file is an empty mapping)."""
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ComposeError(shown, mark.line + 1 if mark is not None else 0, f"invalid YAML: {reason}") from None
    except RecursionError:
        raise ComposeError(shown, 0, "invalid YAML: nesting too deep") from None
    nodes = [n for n in nodes if n is not None]
    if not nodes:
        return Map(Loc(shown, 1))
    if len(nodes) > 1:
        raise ComposeError(shown, nodes[1].start_mark.line + 1, "a Compose file holds one YAML document")
    builder = _Builder(shown)
    try:
        value = builder.build(nodes[0])
    except _TooLarge:
        raise ComposeError(shown, 1, f"document expands to more than {MAX_NODES} values (aliases?)") from None
    except RecursionError:
        raise ComposeError(shown, 0, "invalid YAML: nesting too deep") from None
    if value is None:
        return Map(Loc(shown, 1))
    if not isinstance(value, Map):
        raise ComposeError(shown, nodes[0].start_mark.line + 1, "a Compose file must be a mapping at the top level")
    return value


_YES, _NO = frozenset({"y", "yes", "true", "on"}), frozenset({"n", "no", "false", "off"})
_WHOLE = re.compile(r"^[-+]?[0-9]+$")


def compose_bool(value: Any) -> bool | None:
    """A boolean key's value as Compose reads it: a YAML boolean, or text Compose casts (`true`/`yes`/`on`/`y`
    and their opposites, any case: `privileged: "${PRIV}"` with PRIV=yes); None when it is no boolean."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        return True if text in _YES else False if text in _NO else None
    return None


def compose_int(value: Any) -> int | None:
    """A whole-number key's value as Compose reads it: a YAML integer or its text (`retries: "3"`); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _WHOLE.match(value.strip()):
        return int(value.strip())
    return None
