"""GNU info manuals to prose: one document per node, with headings, menus, indices and examples dropped.

An info file is a sequence of nodes, each after a 0x1f byte and a `File: ..., Node: ...` line; the tag table
and indirect table at the end are navigation. Paragraphs are blocks between blank lines. Examples are
indented blocks of code and fail the prose test; cross-references `*note Quoting::` read "see Quoting".
"""

from __future__ import annotations

import re

from electra_jax.corpus.text import prose_sentences

_UNDERLINE = re.compile(r"^\s*([=\-.*_~])\1{2,}\s*$")
_MENU_ENTRY = re.compile(r"^\* [^:]+::|^\* [^:]+:\s*\S[^.]*\.")
_DEFINITION_HEADER = re.compile(r"^\s*-- [\w ]+: ")  # "-- Function: name ARGS", "-- Variable: NAME"
_FOOTNOTES = re.compile(r"^\s*-+ Footnotes -+\s*$")
_BULLET = re.compile(r"^\s*(?:[*\u2022-]|\d+\.|[a-z]\.|\(\d+\))\s+")
_NOTE_WITH_LABEL = re.compile(r"\*([Nn])ote\s+([^:*]+?):\s*(?:\([^)]*\))?[^.,:*]*?([.,]|$)")
_NOTE = re.compile(r"\*([Nn])ote\s+([^:*]+?)::")


def _cross_references(text: str) -> str:
    text = _NOTE.sub(lambda m: ("See " if m.group(1) == "N" else "see ") + m.group(2), text)
    return _NOTE_WITH_LABEL.sub(lambda m: ("See " if m.group(1) == "N" else "see ") + m.group(2) + m.group(3),
                                text)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _node_paragraphs(node: str) -> list[str]:
    lines = node.split("\n")
    if lines and lines[0].startswith("File:"):
        lines = lines[1:]
    paragraphs: list[str] = []
    for block in "\n".join(lines).split("\n\n"):
        block_lines = [line for line in block.split("\n") if line.strip() and not _FOOTNOTES.match(line)]
        if not block_lines:
            continue
        if block_lines[0].strip() == "* Menu:" or _MENU_ENTRY.match(block_lines[0]):
            continue  # a menu (or the rest of one after a blank line)
        # A table entry: its term lines ('-U NAME', '--undefine=NAME') stand left of the indented description.
        description_indent = _indent(block_lines[-1])
        while (len(block_lines) > 1 and description_indent >= 5 and _indent(block_lines[0]) < description_indent
               and not _BULLET.match(block_lines[0])):
            block_lines = block_lines[1:]
        current: list[str] = []
        for line in block_lines:
            if _DEFINITION_HEADER.match(line):
                continue
            if _UNDERLINE.match(line):
                current = current[:-1]  # and the heading above it
                continue
            if _BULLET.match(line):  # a list item starts a paragraph of its own
                paragraphs.append(" ".join(current))
                current = [_BULLET.sub("", line)]
                continue
            current.append(line)
        paragraphs.append(" ".join(current))
    footnote_number = re.compile(r"^\(\d+\)\s*")
    return [_cross_references(footnote_number.sub("", " ".join(p.split()))) for p in paragraphs if p.strip()]


def info_documents(text: str) -> list[list[str]]:
    """The prose sentences of every node of an info file (one document per node, empty nodes left out)."""
    documents = []
    for node in text.split("\x1f"):
        node = node.strip("\n")
        if not node.startswith("File:"):
            continue  # the preamble, the tag table, the indirect table, local variables
        sentences = prose_sentences(_node_paragraphs(node))
        if sentences:
            documents.append(sentences)
    return documents
