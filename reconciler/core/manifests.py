"""Find manifest files, parse YAML keeping the line of every field, schema-validate, build Resources."""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import yaml

from reconciler.core.safeio import MANIFEST_LIMIT, UnsafeFile, inside, read_bytes
from reconciler.errors import Problem
from reconciler.model import API_VERSION, Resource, Source

if TYPE_CHECKING:  # imported on first use: a tree the fast validator accepts never needs them
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

MAX_FILE_BYTES = MANIFEST_LIMIT
SUFFIXES = (".yaml", ".yml")
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
# libyaml's parser (a C extension) where PyYAML was built with it: same documents, same marks, ~15x faster
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def schema_dir() -> Path:
    """Schemas ship inside the wheel as reconciler/schemas; a source checkout keeps them at the top level."""
    package = Path(__file__).resolve().parents[1]
    packaged = package / "schemas"
    return packaged if packaged.is_dir() else package.parent / "schemas"


_plugin_schemas: dict[str, Mapping[str, Any]] = {}


def register_schema(kind: str, schema: Mapping[str, Any]) -> None:
    """Make documents of a plugin's kind valid against the schema its driver ships (`Driver.schema`); it may
    `$ref` the shared definitions in `common.schema.json`."""
    if _plugin_schemas.get(kind) != schema:
        _plugin_schemas[kind] = schema
        validators.cache_clear()
        fast_validators.cache_clear()


@lru_cache(maxsize=1)
def _schema_documents() -> dict[str, Any]:
    return {p.name: json.loads(p.read_text()) for p in sorted(schema_dir().glob("*.json"))}


def known_kinds() -> set[str]:
    """The kinds with a schema: one file per kind in schemas/, and the plugins' registered ones."""
    return {name.removesuffix(".schema.json") for name in _schema_documents() if name != "common.schema.json"} | set(
        _plugin_schemas
    )


@lru_cache(maxsize=1)
def validators() -> dict[str, Draft202012Validator]:
    """Kind -> validator of a whole document: `schemas/<Kind>.schema.json`, then plugins' registered schemas."""
    from jsonschema import Draft202012Validator
    from referencing import Registry
    from referencing import Resource as SchemaResource

    docs = _schema_documents()
    registry: Registry = Registry().with_resources(
        (doc.get("$id", name), SchemaResource.from_contents(doc)) for name, doc in docs.items()
    )
    found = {
        name.removesuffix(".schema.json"): Draft202012Validator(doc, registry=registry)
        for name, doc in docs.items()
        if name != "common.schema.json"
    }
    for kind, schema in _plugin_schemas.items():
        found.setdefault(kind, Draft202012Validator(dict(schema), registry=registry))
    return found


@lru_cache(maxsize=1)
def fast_validators() -> dict[str, Any]:
    """Kind -> a compiled validator of the same schemas (jsonschema-rs, where installed), used only to say "valid"
    quickly: a document it does not call valid is checked again by `validators()`, whose verdict and messages
    are the ones reported. Empty when the accelerator is not installed."""
    try:
        import jsonschema_rs
    except ImportError:
        return {}
    docs = _schema_documents()
    try:
        registry = jsonschema_rs.Registry([(doc.get("$id", name), doc) for name, doc in docs.items()])
        found = {
            name.removesuffix(".schema.json"): jsonschema_rs.validator_for(doc, registry=registry)
            for name, doc in docs.items()
            if name != "common.schema.json"
        }
        for kind, schema in _plugin_schemas.items():
            found.setdefault(kind, jsonschema_rs.validator_for(dict(schema), registry=registry))
    except Exception:  # a schema the accelerator cannot compile: the reference validator does all the work
        return {}
    return found


def _fast_valid(kind: str, value: Any) -> bool:
    checker = fast_validators().get(kind)
    if checker is None:
        return False
    try:
        return bool(checker.is_valid(value))
    except Exception:  # a value it cannot represent (non-string keys, ...): let the reference validator judge
        return False


def display_path(path: str) -> str:
    """`spec.ports.0.hostPort` -> `spec.ports[0].hostPort`."""
    out = ""
    for part in path.split(".") if path else []:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out


def find_files(root: Path) -> tuple[list[Path], list[Problem]]:
    """Every manifest file under `root`, sorted; hidden entries and editors' stray files skipped, links followed
    while they stay inside `root` (a link out of it, or a link loop, is reported and not followed)."""
    files: list[Path] = []
    problems: list[Problem] = []
    seen_dirs: set[tuple[int, int]] = set()
    real_root = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        st = os.stat(dirpath)
        rel = os.path.relpath(dirpath, root)
        if (st.st_dev, st.st_ino) in seen_dirs:
            problems.append(Problem(rel, 0, "", "", "symbolic link loop; directory skipped"))
            dirnames[:] = []
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        kept = []
        for d in sorted(dirnames):
            if d.startswith("."):
                continue
            full = os.path.join(dirpath, d)
            if os.path.islink(full):
                real = os.path.realpath(full)
                if not inside(real, real_root):
                    problems.append(
                        Problem(
                            os.path.relpath(full, root),
                            0,
                            "",
                            "",
                            f"symbolic link out of the manifest directory (to {real}); not followed",
                        )
                    )
                    continue
            kept.append(d)
        dirnames[:] = kept
        for name in sorted(filenames):
            if name.startswith(".") or not name.endswith(SUFFIXES):
                continue
            files.append(Path(dirpath) / name)
    return files, problems


class _Document:
    """One parsed YAML document: its value and the line of every dotted path inside it."""

    def __init__(self, value: Any, lines: dict[str, int], line: int) -> None:
        self.value = value
        self.lines = lines
        self.line = line


MAX_NODES = 100_000  # after alias expansion: a few lines of nested aliases can otherwise expand to billions


class _TooLarge(Exception):
    pass


class _Builder:
    """Turns composed YAML nodes into plain values, recording the line of every dotted path, reporting
    duplicate keys (YAML would silently keep one), honouring merge keys (`<<`, overridable by explicit keys),
    and bounding alias expansion."""

    def __init__(self) -> None:
        self.loader = _LOADER("")
        self.constructors = self.loader.yaml_constructors
        self.nodes = 0
        self.lines: dict[str, int] = {}
        self.duplicates: list[tuple[int, str, str]] = []  # (line, dotted path, message)
        self.invalid: list[tuple[int, str, str]] = []  # values no manifest field takes: the document is dropped

    def build(self, node: yaml.Node, path: str = "", record: bool = True) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _TooLarge
        if record:
            self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            merged: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    value = self.build(value_node, path, record=False)
                    for item in value if isinstance(value, list) else [value]:
                        if isinstance(item, dict):
                            for k, v in item.items():
                                merged.setdefault(k, v)
                    continue
                if isinstance(key_node, yaml.ScalarNode):
                    key = self.scalar(key_node)
                else:
                    key = self.loader.construct_object(key_node, deep=True)
                key = key if isinstance(key, str) else str(key)
                child = f"{path}.{key}" if path else key
                line = key_node.start_mark.line + 1
                if key in out:
                    self.duplicates.append((line, child, f"duplicate key (first at line {self.lines.get(child, '?')})"))
                self.lines[child] = line
                out[key] = self.build(value_node, child)
            for k, v in merged.items():
                out.setdefault(k, v)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, f"{path}.{i}" if path else str(i), record) for i, item in enumerate(node.value)]
        value = self.scalar(node)
        if isinstance(value, float) and not math.isfinite(value):  # no field takes one; NaN passes every bound
            self.invalid.append((node.start_mark.line + 1, path, f"{node.value} is not a finite number"))
        return value

    def scalar(self, node: yaml.Node) -> Any:
        """A scalar's value: strings as they are, other tags through the safe constructor (unknown tags, such as
        python objects, are refused by it)."""
        if node.tag == _STR_TAG:
            return node.value
        construct = self.constructors.get(node.tag)
        if construct is None or not isinstance(node, yaml.ScalarNode):
            return self.loader.construct_object(node, deep=True)
        return construct(self.loader, node)


def _subject_of(value: Any) -> str:
    if not isinstance(value, dict):
        return ""
    kind, meta = value.get("kind"), value.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    return f"{kind}/{name}" if isinstance(kind, str) and isinstance(name, str) else ""


def parse_file(path: Path, rel: str, root: Path | None = None) -> tuple[list[_Document], list[Problem]]:
    """The non-empty documents of one file, or the problems that stop it from being read. With `root`, a file
    that is a link out of the manifest directory is refused."""
    try:
        data = read_bytes(path, MAX_FILE_BYTES, tree=root)
    except UnsafeFile as exc:
        return [], [Problem(rel, 0, "", "", exc.reason)]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [], [Problem(rel, 0, "", "", f"not UTF-8 text (byte {exc.start})")]
    problems: list[Problem] = []
    docs: list[_Document] = []
    try:
        for node in yaml.compose_all(text, Loader=_LOADER):
            if node is None or (isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")):
                continue
            builder = _Builder()
            try:
                value = builder.build(node)
            except _TooLarge:
                line = node.start_mark.line + 1
                return [], [Problem(rel, line, "", "", f"document expands to more than {MAX_NODES} values (aliases?)")]
            subject = _subject_of(value)
            problems.extend(Problem(rel, ln, subject, display_path(p), m) for ln, p, m in builder.duplicates)
            if builder.invalid:
                problems.extend(Problem(rel, ln, subject, display_path(p), m) for ln, p, m in builder.invalid)
                continue
            docs.append(_Document(value, builder.lines, node.start_mark.line + 1))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else 0
        reason = getattr(exc, "problem", None) or str(exc)
        return [], [Problem(rel, line, "", "", f"invalid YAML: {reason}")]
    except RecursionError:
        return [], [Problem(rel, 0, "", "", "invalid YAML: nesting too deep")]
    return docs, problems


def _schema_problems(error: ValidationError, doc: _Document, rel: str, subject: str) -> Iterator[Problem]:
    if error.validator in ("oneOf", "anyOf") and error.context:
        from jsonschema.exceptions import best_match

        deepest = best_match(error.context)
        if deepest is not None and list(deepest.absolute_path) != list(error.absolute_path):
            error = deepest
    parts = [str(p) for p in error.absolute_path]
    path = ".".join(parts)
    line = doc.lines.get(path, doc.line)
    instance = error.instance
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        known = set(_schema(error).get("properties", {}))
        patterns = _schema(error).get("patternProperties", {})
        for key in sorted(instance):
            if key in known or any(re.search(p, key) for p in patterns):
                continue
            child = f"{path}.{key}" if path else key
            yield Problem(rel, doc.lines.get(child, line), subject, display_path(child), _unknown_field(key, known))
        return
    if error.validator == "required" and isinstance(instance, dict):
        for key in cast(list[str], error.validator_value):
            if key not in instance:
                child = f"{path}.{key}" if path else key
                yield Problem(rel, line, subject, display_path(child), "required field is missing")
        return
    yield Problem(rel, line, subject, display_path(path), _message(error, path))


def _unknown_field(key: str, known: set[str]) -> str:
    """`unknown field`, naming the known field the key most resembles (a typo such as `imagee`), if any does."""
    nearest = difflib.get_close_matches(key, sorted(known), n=1)
    return f"unknown field (did you mean {nearest[0]}?)" if nearest else "unknown field"


_ARTICLE = {"object": "a ", "array": "a ", "string": "a ", "integer": "an ", "boolean": "a ", "number": "a "}


def _yaml_type(value: Any) -> str:
    """How a YAML author would name the type of `value` (not Python's repr)."""
    if value is None:
        return "empty (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _schema(error: ValidationError) -> Mapping[str, Any]:
    """The (sub)schema `error` failed. jsonschema types it as possibly a boolean schema or unset; neither reaches
    the validators this module asks about (a `false` schema's error has no validator)."""
    return cast(Mapping[str, Any], error.schema)


def _looks_numeric(text: str) -> bool:
    if not any(ch.isdigit() for ch in text):  # `nan`, `inf`: no number was meant
        return False
    try:
        float(text)
    except ValueError:
        return False
    return True


def _bound(error: ValidationError) -> str | None:
    """A size or count bound, said without the value (it may be a secret, or megabytes long)."""
    instance, limit = error.instance, error.validator_value
    if error.validator == "maxLength" and isinstance(instance, str):
        return f"{len(instance):,} characters; at most {limit:,}"
    if error.validator == "maxProperties" and isinstance(instance, dict):
        return f"{len(instance):,} entries; at most {limit:,}"
    if error.validator == "maxItems" and isinstance(instance, list) and limit:
        return f"{len(instance):,} items; at most {limit:,}"
    return None


def _message(error: ValidationError, path: str) -> str:
    """jsonschema's message, except where it would print a secret, a raw regex or a huge value."""
    bound = _bound(error)
    if bound is not None:
        return bound
    if path.startswith("spec.env.") or path.startswith("spec.env"):
        if error.validator == "type":
            return "must be a string (quote it)"
        return f"invalid value ({error.validator})"
    if error.validator == "type":
        expected = cast(str | list[str], error.validator_value)
        wanted = " or ".join(expected) if isinstance(expected, list) else expected
        said = f"must be {_ARTICLE.get(wanted, '')}{wanted}, not {_yaml_type(error.instance)}"
        if wanted == "number" and isinstance(error.instance, str) and _looks_numeric(error.instance):
            # YAML 1.1 reads `1e-12` (an exponent without a dot) as text
            return f"{said}: YAML reads {error.instance[:40]} as text; write a number with a dot (1.0e-3, 0.001)"
        return said
    if error.validator in ("pattern", "not", "const", "maxItems") and _schema(error).get("description"):
        return f"invalid value: {_schema(error)['description']}"
    return error.message


def build_resources(doc: _Document, rel: str, path: Path) -> tuple[Resource | None, list[Problem]]:
    """Check one document's envelope and schema; return the Resource when it is valid."""
    value = doc.value
    if not isinstance(value, dict):
        return None, [Problem(rel, doc.line, "", "", "a manifest document must be a mapping")]
    kind = value.get("kind")
    meta = value.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    subject = f"{kind}/{name}" if isinstance(kind, str) and isinstance(name, str) else ""
    api = value.get("apiVersion")
    if api is None:
        return None, [Problem(rel, doc.line, subject, "apiVersion", "required field is missing")]
    if api != API_VERSION:
        return None, [
            Problem(
                rel,
                doc.lines.get("apiVersion", doc.line),
                subject,
                "apiVersion",
                f"unknown apiVersion {api!r} (expected {API_VERSION})",
            )
        ]
    if kind is None:
        return None, [Problem(rel, doc.line, subject, "kind", "required field is missing")]
    kinds = known_kinds()
    if not isinstance(kind, str) or kind not in kinds:
        known = ", ".join(sorted(kinds))
        return None, [
            Problem(
                rel,
                doc.lines.get("kind", doc.line),
                subject,
                "kind",
                f"unknown kind {kind!r} (expected one of {known})",
            )
        ]
    if not _fast_valid(kind, value):
        errors = validators()[kind].iter_errors(value)
        problems = [p for err in errors for p in _schema_problems(err, doc, rel, subject)]
        if problems:
            return None, problems
    spec_lines = {k: v for k, v in doc.lines.items() if k == "spec" or k.startswith("spec.")}
    resource = Resource(
        kind=kind,
        name=cast(str, name),  # the schema requires metadata.name, a string (common.schema.json)
        spec=value.get("spec") or {},
        labels=dict((meta or {}).get("labels") or {}),
        source=Source(file=rel, line=doc.line, path=path),
        lines=spec_lines | {"metadata.name": doc.lines.get("metadata.name", doc.line)},
    )
    return resource, []


def load_directory(root: Path) -> tuple[list[Resource], list[Problem]]:
    """Every valid Resource under `root` and every problem found; files are read in sorted order."""
    files, problems = find_files(root)
    resources: list[Resource] = []
    for path in files:
        rel = os.path.relpath(path, root)
        docs, file_problems = parse_file(path, rel, root)
        problems.extend(file_problems)
        for doc in docs:
            resource, doc_problems = build_resources(doc, rel, path)
            problems.extend(doc_problems)
            if resource is not None:
                resources.append(resource)
    return resources, sorted(set(problems))
