"""The one way EdgeLab reads a user's YAML file (devices.yaml, models.yaml): safe, and bounded.

Refused before any value is built: files over a size limit, text that is not UTF-8, directories,
documents of more values than a limit once aliases are expanded (the "billion laughs" bomb;
counted from the parser's events, stopping at the limit), and keys given twice in one mapping
(YAML would keep the last silently). Errors name the file and the line, and never print an
expanded value. The limits bound the work; what the document means is the caller's.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.errors import ConfigError

# libyaml's parser also refuses nesting deeper than 1000 levels (no recursion in Python to blow)
_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class Limits:
    """What one file may cost: bytes on disk, and values once every alias is expanded."""

    max_bytes: int
    max_values: int


def _megabytes(count: int) -> str:
    return f"{count / (1 << 20):.1f} MB" if count >= 1 << 20 else f"{count} bytes"


def read_text(path: Path, source: str, max_bytes: int) -> str:
    """The file's UTF-8 text, refused when it is a directory, too large, or not UTF-8."""
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError(f"{source}: is a directory, not a file; pass the YAML file itself")
        if stat.S_ISREG(info.st_mode) and info.st_size > max_bytes:
            raise ConfigError(
                f"{source}: {_megabytes(info.st_size)} is more than the {_megabytes(max_bytes)} this "
                "file may have; remove unused entries or split it"
            )
        with path.open("rb") as handle:  # a pipe or a growing file: read one byte past the limit
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read ({exc.strerror or exc}); check the path") from None
    if len(data) > max_bytes:
        raise ConfigError(
            f"{source}: more than the {_megabytes(max_bytes)} this file may have; "
            "remove unused entries or split it"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{source}: line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save the file as UTF-8"
        ) from None


def _yaml_error(source: str, exc: yaml.YAMLError) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return ConfigError(f"{source}:{where} not valid YAML: {problem}")


def _key_text(node: yaml.Node) -> str:
    value = node.value if isinstance(node, yaml.ScalarNode) else f"<{type(node).__name__}>"
    text = str(value)
    return repr(text[:60] + ("..." if len(text) > 60 else ""))


def _check_duplicates(source: str, mapping: yaml.MappingNode, parent: str) -> None:
    seen: dict[tuple[str, str], yaml.Node] = {}
    for key, _value in mapping.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE_TAG:
            continue
        identity = (key.tag, key.value)
        first = seen.get(identity)
        if first is not None:
            under = f" under {parent}" if parent else ""
            raise ConfigError(
                f"{source}: line {key.start_mark.line + 1}: key {_key_text(key)}{under} is given twice "
                f"(first at line {first.start_mark.line + 1}); YAML would keep only the last: "
                "rename or remove one"
            )
        seen[identity] = key


def check_nodes(source: str, root: yaml.Node, max_values: int) -> int:
    """Count the values ``root`` stands for once every alias is expanded (each node once, then
    by reference: linear in the text, whatever the expansion) and check every mapping for
    repeated keys. Returns the count; raises ConfigError past ``max_values`` or on a recursive
    alias."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, str, bool]] = [(root, "", False)]
    while stack:
        node, parent, children_done = stack.pop()
        identity = id(node)
        if children_done:
            children = _children(node)
            size = 1 + sum(sizes[id(child)] for child, _ in children)
            open_nodes.discard(identity)
            if size > max_values:
                raise ConfigError(
                    f"{source}: line {node.start_mark.line + 1}: this value expands to more than "
                    f"{max_values} values through aliases (*name); write fewer aliases or smaller anchors"
                )
            sizes[identity] = size
            continue
        if identity in sizes:
            continue
        if identity in open_nodes:
            raise ConfigError(
                f"{source}: line {node.start_mark.line + 1}: an alias refers to a value that contains "
                "it (a recursive anchor); remove the alias"
            )
        open_nodes.add(identity)
        if isinstance(node, yaml.MappingNode):
            _check_duplicates(source, node, parent)
        stack.append((node, parent, True))
        for child, label in reversed(_children(node)):
            if id(child) not in sizes:
                stack.append((child, label, False))
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[tuple[yaml.Node, str]]:
    if isinstance(node, yaml.MappingNode):
        pairs: list[tuple[yaml.Node, str]] = []
        for key, value in node.value:
            pairs += [(key, ""), (value, _key_text(key))]
        return pairs
    if isinstance(node, yaml.SequenceNode):
        return [(child, "") for child in node.value]
    return []


def _line(event: yaml.Event) -> str:
    mark = event.start_mark
    return str(mark.line + 1) if mark is not None else "?"


def count_values(source: str, text: str, max_values: int) -> int:
    """Count the values ``text`` holds, each alias as the values it stands for, from the parser's
    events alone (no node is built), and stop at the first one past ``max_values``: a 4 MB file of
    tiny values or an alias bomb costs at most ``max_values`` events."""
    loader = _BaseLoader(text)
    anchors: dict[str | None, int] = {}
    frames: list[list[Any]] = []  # [values so far, anchor] per open collection
    open_anchors: dict[str | None, int] = {}  # anchors of the open collections (an alias to one recurses)
    total = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.ScalarEvent | yaml.AliasEvent):
                if isinstance(event, yaml.AliasEvent):
                    if open_anchors.get(event.anchor):
                        raise ConfigError(
                            f"{source}: line {_line(event)}: an alias refers to a value "
                            "that contains it (a recursive anchor); remove the alias"
                        )
                    size = anchors.get(event.anchor, 1)  # an undefined alias: the composer says so
                else:
                    size = 1
                    if event.anchor is not None:
                        anchors[event.anchor] = 1
                total += size
                if frames:
                    frames[-1][0] += size
            elif isinstance(event, yaml.CollectionStartEvent):
                total += 1
                frames.append([1, event.anchor])
                if event.anchor is not None:
                    open_anchors[event.anchor] = open_anchors.get(event.anchor, 0) + 1
            elif isinstance(event, yaml.CollectionEndEvent):
                size, anchor = frames.pop()
                if anchor is not None:
                    anchors[anchor] = size
                    open_anchors[anchor] -= 1
                if frames:
                    frames[-1][0] += size
            if total > max_values:
                raise ConfigError(
                    f"{source}: line {_line(event)}: more than {max_values} values "
                    "(an alias counts as the values it stands for); use fewer aliases or split the file"
                )
    except yaml.YAMLError as exc:
        raise _yaml_error(source, exc) from None
    finally:
        loader.dispose()
    return total


def loads(text: str, source: str, limits: Limits) -> Any:
    """Parse ``text`` (one YAML document) within ``limits``; None for an empty document."""
    if len(text.encode("utf-8", errors="surrogatepass")) > limits.max_bytes:
        raise ConfigError(
            f"{source}: more than the {_megabytes(limits.max_bytes)} this file may have; "
            "remove unused entries or split it"
        )
    count_values(source, text, limits.max_values)
    loader = _BaseLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        check_nodes(source, node, limits.max_values)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise _yaml_error(source, exc) from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply to read; flatten the document") from None
    finally:
        loader.dispose()


def load(path: str | os.PathLike[str], source: str, limits: Limits) -> Any:
    """Read and parse the YAML file at ``path``; ``source`` is how messages name it."""
    return loads(read_text(Path(path), source, limits.max_bytes), source, limits)
