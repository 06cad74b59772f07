"""Perl's POD (Plain Old Documentation) to prose, as perlpodspec defines it.

Kept: ordinary paragraphs and the text of `=item` bullets, with formatting codes reduced to their text
(`B<bold>` -> bold, `C<code>` -> code, `L<text|perlsyn>` -> text, `L<perlsyn/"For Loops">` -> "For Loops" in
perlsyn, `E<gt>` -> >). Dropped: headings, verbatim (indented) paragraphs, which are code, `=begin`/`=for`
regions for other formatters, index entries (`X<>`), and everything outside POD in a .pm or .pl file.
"""

from __future__ import annotations

import html.entities
import re

from electra_jax.corpus.text import prose_sentences

_CODE_START = re.compile(r"([A-Z])(<+)")
_POD_ESCAPES = {"lt": "<", "gt": ">", "verbar": "|", "sol": "/"}


def _escape(name: str) -> str:
    name = name.strip()
    if name in _POD_ESCAPES:
        return _POD_ESCAPES[name]
    try:
        if name.lower().startswith("0x"):
            return chr(int(name, 16))
        if name.isdigit():
            return chr(int(name, 8) if name.startswith("0") else int(name))
    except (ValueError, OverflowError):
        return ""
    return html.entities.html5.get(name + ";", "")


def _link_text(content: str) -> str:
    if "|" in content:
        return content.split("|", 1)[0]
    if "://" in content:
        return content
    name, _, section = content.partition("/")
    section = section.strip('"')
    if not section:
        return name.strip('"')
    return f'"{section}" in {name}' if name else f'"{section}"'


def _end_of_code(text: str, start: int, brackets: int) -> tuple[int, int]:
    """(end of the content, end of the code) for a code whose content starts at `start`."""
    if brackets > 1:  # C<< text >>: ends at whitespace followed by as many '>'
        match = re.compile(r"\s" + ">" * brackets).search(text, start)
        return (match.start(), match.end()) if match else (len(text), len(text))
    depth = 1
    position = start
    while position < len(text):
        if _CODE_START.match(text, position):
            depth += 1
            position = _CODE_START.match(text, position).end()
            continue
        if text[position] == ">":
            depth -= 1
            if depth == 0:
                return position, position + 1
        position += 1
    return len(text), len(text)


def pod_inline(text: str) -> str:
    """Formatting codes reduced to the text a reader sees."""
    out: list[str] = []
    position = 0
    while True:
        match = _CODE_START.search(text, position)
        if match is None:
            out.append(text[position:])
            return "".join(out)
        out.append(text[position:match.start()])
        code, brackets = match.group(1), len(match.group(2))
        content_end, code_end = _end_of_code(text, match.end(), brackets)
        content = text[match.end():content_end]
        if brackets > 1:
            content = content.strip()
        if code == "E":
            out.append(_escape(content))
        elif code in "XZ":
            pass
        elif code == "L":
            out.append(_link_text(pod_inline(content)))
        else:  # B I C F S and unknown codes: their text
            out.append(pod_inline(content))
        position = code_end


def pod_paragraphs(text: str) -> list[str]:
    """The prose paragraphs of a POD document (or of the POD inside Perl code), formatting codes reduced."""
    paragraphs: list[str] = []
    in_pod = False
    skip_region = ""  # inside =begin FORMAT ... =end FORMAT for another formatter
    for block in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n")):
        if not block.strip():
            continue
        if block.startswith("="):
            command, argument = (block[1:].split(None, 1) + [""])[:2]
            argument = " ".join(argument.split())
            if command == "cut":
                in_pod = False
                continue
            in_pod = True
            if skip_region:
                if command == "end" and argument.split()[:1] == [skip_region]:
                    skip_region = ""
                continue
            if command == "begin":
                skip_region = (argument.split() or ["?"])[0]
            elif command == "item":
                # "=item * text" and "=item 2. text" carry prose; "=item $obj->method(ARGS)" is a signature and
                # "=item Term" a heading: neither ends as a sentence.
                item = re.sub(r"^(\*|\d+\.?)\s*", "", argument)
                if item:
                    paragraphs.append(pod_inline(item))
            continue
        if not in_pod or skip_region or block[0] in " \t":
            continue  # Perl code, another formatter's region, or a verbatim (code) paragraph
        paragraphs.append(pod_inline(block))
    return paragraphs


def pod_to_sentences(text: str) -> list[str]:
    """The prose sentences of a POD document."""
    return prose_sentences(pod_paragraphs(text))
