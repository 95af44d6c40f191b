"""Targeted edits of catalogue.yml: replace the exact characters of a value, nothing else.

PyYAML's composer gives every node its start and end offsets in the text, so a value can be
swapped in place and every comment, blank line and flow mapping around it stays byte for byte.
A round-trip library (ruamel.yaml) would also keep comments, but not always this file's flow
mappings and spacing, and would be one more dependency for a handful of scalar edits.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

KeyPath = tuple  # into the document: ("libraries", "transformers", "version")


class EditError(Exception):
    """The catalogue does not have the shape an edit expects."""


@dataclass(frozen=True)
class Edit:
    start: int
    end: int
    text: str


def node_at(root: yaml.Node, path: KeyPath) -> yaml.Node:
    node = root
    for key in path:
        found: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            found = next((v for k, v in node.value if k.value == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            found = node.value[key]
        if found is None:
            raise EditError(f"catalogue.yml has no {'.'.join(map(str, path))}")
        node = found
    return node


def scalar_text(value: str, style: str | None) -> str:
    """`value` written in the quoting style the old value had."""
    if style == '"':
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if style == "'":
        return "'" + value.replace("'", "''") + "'"
    return value


def flow_mapping(entries: dict[str, str]) -> str:
    return (
        "{"
        + ", ".join(f"{key}: {scalar_text(value, chr(34))}" for key, value in entries.items())
        + "}"
    )


class Catalogue:
    """catalogue.yml's text, its parsed data and its node tree, edited by value."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.data = yaml.safe_load(text)
        root = yaml.compose(text)
        if root is None:
            raise EditError("catalogue.yml is empty")
        self.root = root
        self.edits: list[Edit] = []

    def set_scalar(self, path: KeyPath, value: str) -> None:
        node = node_at(self.root, path)
        if not isinstance(node, yaml.ScalarNode):
            raise EditError(f"{'.'.join(map(str, path))} is not a single value")
        self.edits.append(
            Edit(node.start_mark.index, node.end_mark.index, scalar_text(value, node.style))
        )

    def replace_item(self, path: KeyPath, entries: dict[str, str]) -> None:
        """Swap a sequence item written as a flow mapping (`- {a: "1"}`) for another one."""
        node = node_at(self.root, path)
        if not (isinstance(node, yaml.MappingNode) and node.flow_style):
            raise EditError(f"{'.'.join(map(str, path))} is not a one-line mapping")
        self.edits.append(Edit(node.start_mark.index, node.end_mark.index, flow_mapping(entries)))

    def remove_item(self, path: KeyPath) -> None:
        """Delete the whole line of a one-line sequence item (`- {...}` and its comment)."""
        node = node_at(self.root, path)
        line_start = self.text.rfind("\n", 0, node.start_mark.index) + 1
        line_end = self.text.find("\n", node.end_mark.index)
        line_end = len(self.text) if line_end < 0 else line_end + 1
        rest = self.text[node.end_mark.index : line_end].strip()
        if self.text[line_start : node.start_mark.index].strip() != "-" or (
            rest and not rest.startswith("#")
        ):
            raise EditError(f"{'.'.join(map(str, path))} is not on a line of its own")
        self.edits.append(Edit(line_start, line_end, ""))

    def edited(self) -> str:
        """The text with every edit applied; edits must not overlap."""
        text, end = self.text, len(self.text) + 1
        for edit in sorted(self.edits, key=lambda e: (e.start, e.end), reverse=True):
            if edit.end > end:
                raise EditError("two edits touch the same characters")
            text = text[: edit.start] + edit.text + text[edit.end :]
            end = edit.start
        return text
