"""Changing an image reference in manifest files without touching anything else in them (issue 23, commit mode).

Why splice rather than load and dump: a YAML library's dump re-flows lines, re-indents, re-quotes and loses or
moves comments, so a commit made that way would be a diff of the whole file, and the user's review would have
to find the one line that matters. Here ruamel.yaml only *composes* the text (documents, keys, anchors, each
scalar's quoting style and its exact character span); the new value is then written over the old token in the
same quoting style, and every other character stays as it was. The result is composed again and compared node by
node with the original: only the scalars meant to change may differ, or nothing is written at all.

What moves with an Image: its own `spec.reference`, and every `spec.image` (a Container's, a Service's, in any
manifest file of the tree) spelled exactly as that reference. Another spelling of the same image (`busybox` for
`busybox:latest`) is not recognised here and stays as it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from reconciler.updates import ImageUpdate

STR_TAG = "tag:yaml.org,2002:str"
MERGE_TAG = "tag:yaml.org,2002:merge"
SUFFIXES = (".yaml", ".yml")  # as reconciler.core.manifests reads them
IMAGE_USERS = ("Container", "Service")  # the kinds whose `spec.image` runs an image
# What an image reference is made of (name, registry port, tag, `@sha256:` digest): never anything YAML quotes.
REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$")


class RewriteError(Exception):
    """The text cannot be changed in place (not YAML, a reference written with escapes or over several lines)."""


@dataclass(frozen=True)
class Site:
    """One scalar that names the reference: where it is and what it is."""

    file: str  # relative to the manifest tree
    line: int  # 1-based
    subject: str  # "Image/api", "Container/web"
    field: str  # "spec.reference" or "spec.image"
    start: int  # the scalar's span in the text (characters), anchor and tag included
    end: int
    style: str | None  # None (plain), "'" or '"'; block scalars never match a reference

    def describe(self) -> str:
        return f"{self.file}:{self.line} {self.subject} {self.field}"


@dataclass(frozen=True)
class TreeRewrite:
    """What one update does to a tree: the new text of each file it changes and the scalars it changed; or why
    it is skipped (`skipped`), or that the tree already holds the new reference (`already`)."""

    files: Mapping[str, str]
    sites: tuple[Site, ...] = ()
    skipped: str | None = None
    already: bool = False


def _compose(text: str) -> list[Node]:
    try:
        return [node for node in YAML(typ="rt", pure=True).compose_all(text) if node is not None]
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise RewriteError(f"{where}not valid YAML ({getattr(exc, 'problem', None) or exc})") from exc
    except RecursionError:
        raise RewriteError("not valid YAML (nesting too deep)") from None


def _get(node: Node | None, key: str) -> Node | None:
    """The value of `key` in a mapping node: an explicit key first, then the mappings merged in with `<<`."""
    if not isinstance(node, MappingNode):
        return None
    merged: list[Node] = []
    for key_node, value_node in node.value:
        if key_node.tag == MERGE_TAG:
            merged.extend(value_node.value if isinstance(value_node, SequenceNode) else [value_node])
        elif isinstance(key_node, ScalarNode) and key_node.value == key:
            return value_node
    for source in merged:
        found = _get(source, key)
        if found is not None:
            return found
    return None


def _string(node: Node | None) -> str | None:
    if isinstance(node, ScalarNode) and node.tag == STR_TAG:
        return str(node.value)
    return None


def _documents(text: str) -> Iterator[tuple[str, str, Node]]:
    """(kind, name, document) of every mapping document with a kind."""
    for doc in _compose(text):
        kind = _string(_get(doc, "kind"))
        if kind is not None:
            yield kind, _string(_get(_get(doc, "metadata"), "name")) or "", doc


def _site(file: str, subject: str, field: str, node: ScalarNode) -> Site:
    return Site(file, node.start_mark.line + 1, subject, field, node.start_mark.index, node.end_mark.index, node.style)


def image_sites(text: str, file: str, reference: str) -> list[Site]:
    """Every `spec.image` of a Container or Service in `text` that is exactly `reference` (an alias counts once:
    at its anchor)."""
    found: dict[int, Site] = {}
    for kind, name, doc in _documents(text):
        node = _get(_get(doc, "spec"), "image")
        if kind in IMAGE_USERS and isinstance(node, ScalarNode) and _string(node) == reference:
            found.setdefault(node.start_mark.index, _site(file, f"{kind}/{name}", "spec.image", node))
    return sorted(found.values(), key=lambda site: site.start)


def declared_reference(text: str, file: str, image: str) -> tuple[str | None, Site | None]:
    """(spec.reference, its site) of the Image named `image` in `text`; (None, None) when it is not there."""
    for kind, name, doc in _documents(text):
        if kind == "Image" and name == image:
            node = _get(_get(doc, "spec"), "reference")
            value = _string(node)
            if isinstance(node, ScalarNode) and value is not None:
                return value, _site(file, f"Image/{name}", "spec.reference", node)
            return None, None
    return None, None


def _token(value: str, style: str | None) -> str:
    if style is None:
        return value
    if style == "'":
        return "'" + value.replace("'", "''") + "'"
    if style == '"' and '"' not in value and "\\" not in value:
        return '"' + value + '"'
    raise RewriteError(f"a {style!r} scalar cannot be rewritten in place")


def splice(text: str, sites: list[Site], old: str, new: str) -> str:
    """`text` with the token of each site (which reads `old`) replaced by `new` in the same quoting style. Raises
    RewriteError when a token is not written the plain way (escapes, several lines) or when the result would
    read differently anywhere else."""
    if not REFERENCE.match(new):
        raise RewriteError(f"{new!r} is not an image reference")
    out = text
    for site in sorted(sites, key=lambda s: s.start, reverse=True):
        old_token = _token(old, site.style)
        token_start = site.end - len(old_token)
        if token_start < site.start or text[token_start : site.end] != old_token:
            raise RewriteError(f"{site.describe()}: written in a way that cannot be changed in place")
        out = out[:token_start] + _token(new, site.style) + out[site.end :]
    _check(text, out, {site.start for site in sites}, new)
    return out


def _shape(node: Node, seen: dict[int, int], changed: set[int] | None, new: str) -> Iterator[tuple[Any, ...]]:
    """The node graph flattened in document order: kinds, tags and scalar values (aliases as back references).
    With `changed`, the scalars starting at those offsets read `new`: what the rewritten text must compose to."""
    if id(node) in seen:
        yield ("alias", seen[id(node)])
        return
    seen[id(node)] = len(seen)
    if isinstance(node, ScalarNode):
        value = new if changed is not None and node.start_mark.index in changed else node.value
        yield ("scalar", node.tag, value)
    elif isinstance(node, MappingNode):
        yield ("map", node.tag, len(node.value))
        for key, value in node.value:
            yield from _shape(key, seen, changed, new)
            yield from _shape(value, seen, changed, new)
    else:
        yield ("seq", node.tag, len(node.value))
        for item in node.value:
            yield from _shape(item, seen, changed, new)


def _check(before: str, after: str, changed: set[int], new: str) -> None:
    def flat(text: str, marks: set[int] | None) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        for doc in _compose(text):
            out.append(("document",))
            out.extend(_shape(doc, {}, marks, new))
        return out

    try:
        same = flat(before, changed) == flat(after, None)
    except RewriteError:
        same = False
    if not same:
        raise RewriteError("the rewritten file would read differently beyond the reference; not changed")


def rewrite_tree(files: Mapping[str, str], update: ImageUpdate) -> TreeRewrite:
    """Move `update` in the manifest files `files` (path relative to the tree -> text): the declaring Image's
    `spec.reference` and every `spec.image` naming the same reference. Skipped (nothing changed) when the Image's
    reference is no longer the old one: the user changed or moved it since, and their change wins."""
    text = files.get(update.file)
    where = f"{update.file}:{update.line} Image/{update.image} spec.reference"
    if text is None:
        return TreeRewrite({}, skipped=f"{update.file} is gone; {update.image} not updated")
    try:
        current, declared = declared_reference(text, update.file, update.image)
    except RewriteError as exc:
        return TreeRewrite({}, skipped=f"{update.file}: {exc}")
    if current == update.new_reference:
        return TreeRewrite({}, already=True)
    if declared is None or current != update.old_reference:
        now = "gone" if current is None else f"now {current!r}"
        reason = f"{where} is {now}, not {update.old_reference!r}: changed since; not overwritten"
        return TreeRewrite({}, skipped=reason)
    changed: dict[str, str] = {}
    sites: list[Site] = []
    for name in sorted(files):
        try:
            found = image_sites(files[name], name, update.old_reference)
        except RewriteError:
            continue  # a file reconcile cannot read either: it refuses the tree, whatever is committed
        if name == update.file:  # once per scalar: an alias of the Image's reference is that same scalar
            found = sorted({s.start: s for s in [declared, *found]}.values(), key=lambda s: s.start)
        if not found:
            continue
        try:
            changed[name] = splice(files[name], found, update.old_reference, update.new_reference)
        except RewriteError as exc:
            return TreeRewrite({}, skipped=f"{name}: {exc}")
        sites.extend(found)
    return TreeRewrite(changed, tuple(sites))
