"""reST (Sphinx) sources to prose: directives, code and doctest blocks, tables and comments dropped.

Moved unchanged from the CPU experiment (`compute_efficiency`), which cleans the Python documentation with it;
the Debian corpus uses it for every package that ships Sphinx `_sources` (Python, the Linux kernel).
"""

from __future__ import annotations

import re

from electra_jax.corpus.text import split_sentences

_ADORNMENT = re.compile(r"^([=\-~^*+#\"'`.:_])\1{2,}\s*$")
_DIRECTIVE = re.compile(r"^(\s*)\.\.\s+([\w:.-]+)::(.*)$")
_COMMENT = re.compile(r"^(\s*)\.\.(\s|$)")
_FIELD = re.compile(r"^\s*:[^:`\s][^:`]*:(\s|$)")
_BULLET = re.compile(r"^(\s*)([*\-+\u2022]|#\.|\d+\.|\(\d+\)|[a-z]\.)\s+")
# Directives whose indented content is prose (admonitions, object descriptions); their argument line (a
# signature, a version number) is dropped. Every other directive (code, tables, toctree, index, ...) is dropped
# with its content.
_PROSE_DIRECTIVES = {
    "note", "warning", "seealso", "important", "tip", "hint", "caution", "attention", "danger", "error",
    "admonition", "versionadded", "versionchanged", "deprecated", "deprecated-removed", "impl-detail", "topic",
    "sidebar", "only", "glossary", "centered", "rubric", "availability", "audit-event",
    "function", "method", "class", "attribute", "data", "exception", "module", "decorator", "decoratormethod",
    "classmethod", "staticmethod", "coroutinefunction", "coroutinemethod", "abstractmethod", "opcode",
    "cmdoption", "option", "envvar", "describe", "object", "pdbcommand", "2to3fixer", "monitoring-event",
    "c:function", "c:type", "c:member", "c:macro", "c:var", "c:struct", "c:union", "c:enum", "c:enumerator",
}

# Admonitions whose argument is prose (content may follow without a blank line).
_ADMONITIONS = {"note", "warning", "seealso", "important", "tip", "hint", "caution", "attention", "danger", "error",
                "admonition", "deprecated", "deprecated-removed", "versionadded", "versionchanged", "topic",
                "sidebar", "rubric", "centered", "impl-detail", "only", "glossary", "availability"}


def _role_text(content: str) -> str:
    content = content.strip()
    if content.endswith(">") and "<" in content:
        content = content[: content.rindex("<")].strip() or content[content.rindex("<") + 1:-1]
    return content.lstrip("~!")


def clean_inline_rst(text: str) -> str:
    """Inline reST markup to plain text: :func:`~a.b` -> a.b, `text <url>`_ -> text, ``x`` -> x, **x** -> x."""
    text = re.sub(r":[\w:.+-]+:`([^`]*)`", lambda m: _role_text(m.group(1)), text)
    text = re.sub(r"`([^`<]*?)\s*<[^>`]*>`_{1,2}", r"\1", text)
    text = re.sub(r"``([^`]*)``", r"\1", text)
    text = re.sub(r"`([^`]*)`_{0,2}", r"\1", text)
    text = re.sub(r"\s*\[(#[\w-]*|\d+|\*)\]_", "", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"\1", text)
    text = re.sub(r"(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])", r"\1", text)
    text = re.sub(r"\|([\w][\w .-]*)\|_{0,2}", r"\1", text)
    text = re.sub(r"\\(.)", r"\1", text)
    return " ".join(text.split())


def rst_to_sentences(text: str) -> list[str]:
    """The prose of one reST file, one sentence per item: directives, code, tables and comments dropped."""
    paragraphs: list[str] = []
    current: list[str] = []
    para_indent = 0
    skip_deeper_than: int | None = None  # skip blank lines and lines indented more than this
    skip_to_blank = False  # doctest blocks and directive headers (signatures, options) end at a blank line

    def flush():
        if current:
            paragraphs.append(" ".join(current))
            current.clear()

    for raw in text.splitlines():
        line = raw.expandtabs(8).rstrip()
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if skip_deeper_than is not None:
            if not stripped or indent > skip_deeper_than:
                continue
            skip_deeper_than = None
        if skip_to_blank:
            if stripped:
                continue
            skip_to_blank = False
        if not stripped:
            flush()
            continue
        if _ADORNMENT.match(stripped):
            flush()  # the title above an underline becomes its own line
            continue
        if stripped.startswith(("+-", "+=")) or (stripped.startswith("|") and stripped.endswith("|")):
            flush()  # grid tables
            continue
        directive = _DIRECTIVE.match(line)
        if directive:
            flush()
            name = directive.group(2).lower()
            if name not in _PROSE_DIRECTIVES:
                skip_deeper_than = indent
            elif name not in _ADMONITIONS:
                skip_to_blank = True  # object descriptions: continued signatures and :options: up to a blank line
            else:
                argument = directive.group(3).strip()
                if name in {"versionadded", "versionchanged", "deprecated", "deprecated-removed"}:
                    argument = re.sub(r"^[\d.]+\s*", "", argument)  # the version number is not prose
                prose_argument = name not in {"only", "glossary", "availability", "impl-detail"}
                if prose_argument and re.search(r"[A-Za-z]{3}", argument):
                    current.append(argument)
                    para_indent = indent
            continue
        if _COMMENT.match(line):
            flush()
            skip_deeper_than = indent  # comments, link targets, footnote bodies
            continue
        if _FIELD.match(line):
            flush()
            continue
        if stripped.startswith(">>>"):
            flush()
            skip_to_blank = True
            continue
        bullet = _BULLET.match(line)
        if bullet:
            flush()
            stripped = line[bullet.end():].strip()
        if not current:
            para_indent = indent
        if stripped.endswith("::"):
            stripped = stripped[:-2].rstrip()
            if stripped and not stripped.endswith(":"):
                stripped += ":"
            if stripped:
                current.append(stripped)
            flush()
            skip_deeper_than = para_indent  # the literal block that follows
            continue
        current.append(stripped)
    flush()

    sentences = []
    for paragraph in paragraphs:
        plain = clean_inline_rst(paragraph)
        letters = sum(ch.isalpha() for ch in plain)
        if letters < 0.5 * max(1, len(plain)):
            continue  # mostly symbols: leftovers of code or tables
        sentences.extend(split_sentences(plain))
    return sentences
