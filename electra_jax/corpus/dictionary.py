"""Dictionaries to prose: GCIDE (Webster's 1913 and its supplements) from its dictd files, and WordNet's glosses.

GCIDE entries keep their definitions, usage notes and the literary quotations that illustrate them; the
headword's pronunciation, etymology, labels such as [Obs.], source tags, synonym lists and attributions
(--Shak.) are dropped, and each definition reads "Headword: definition." Senses GCIDE took from WordNet 1.5
are left out, since WordNet 3.0 is its own source. WordNet synsets read "word, synonym: gloss." followed by
their example sentences.
"""

from __future__ import annotations

import re

from electra_jax.corpus.text import is_sentence, split_sentences

_BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# GCIDE's ASCII accents: ['e] e-acute, [`a], [=o] macron, [.a], [~n], ["o], [,c], [a^] breve, and [ae], [oe]
# ligatures. BERT's uncased WordPiece strips accents anyway, so each becomes its letters.
_ACCENT = re.compile(r"\[(?:[`'=.~\-\",*^]([A-Za-z]{1,2})|([A-Za-z]{1,2})\^|(ae|oe|AE|OE|ng|th))\]")
_SOURCE_TAG = re.compile(r"^\s*\[(?:\d{4} Webster|Webster|WordNet|PJC|Century|Chambers|RH|MW|JC|DC|AS)[^\]]*\]\s*$")
_SENSE_NUMBER = re.compile(r"^\s*(?:\d+\.|\([a-z]\))\s+")
_PRONUNCIATION = re.compile(r"\([^()\s]*[*\"][^()\s]*\)")
_ATTRIBUTION = re.compile(r"\s*--\s*[A-Z(].*$")
_FIELD_LABEL = re.compile(r"^(?:\([A-Z][\w.& ]*\)\s*)+")


def _decode_base64_number(text: str) -> int:
    value = 0
    for char in text:
        value = value * 64 + _BASE64.index(char)
    return value


def dictd_entries(index: str, data: bytes) -> list[tuple[str, str]]:
    """(headword, entry text) of a dictd dictionary in file order, each entry once, the 00-database-* entries
    (the dictionary's own metadata) left out."""
    spans = {}
    for line in index.splitlines():
        fields = line.split("\t")
        if len(fields) < 3 or fields[0].startswith(("00-database", "00database")):
            continue
        offset, length = _decode_base64_number(fields[1]), _decode_base64_number(fields[2])
        spans.setdefault(offset, (length, fields[0]))
    return [(word, data[offset:offset + length].decode("utf-8", errors="replace"))
            for offset, (length, word) in sorted(spans.items())]


def _remove_brackets(text: str) -> str:
    """Drops every [...] group, nested or spanning lines (etymologies, labels such as [Obs.])."""
    out, depth = [], 0
    for char in text:
        if char == "[":
            depth += 1
        elif char == "]" and depth:
            depth -= 1
        elif not depth:
            out.append(char)
    return "".join(out)


def _clean_gcide(text: str) -> str:
    text = _remove_brackets(text)
    text = re.sub(r"\\[^\\]*\\", "", text)  # \Ac*cred"it\: the headword with its syllables and stress
    text = _PRONUNCIATION.sub("", text)
    text = re.sub(r"[{}]", "", text)  # {cross-references} keep their words
    text = text.replace("\u00b7", "").replace("||", "")
    return " ".join(text.split())


def gcide_entry_sentences(entry: str) -> list[str]:
    """The sentences of one GCIDE entry: definitions prefixed by the headword, notes and quotations as they are."""
    lines = _ACCENT.sub(lambda m: m.group(1) or m.group(2) or m.group(3), entry).split("\n")
    headword_match = re.match(r"\s*([^\\\n]+?)\s*\\", lines[0])
    headword = headword_match.group(1).strip() if headword_match else ""
    # The heading: lines at column 0 plus the continuation of an etymology bracket left open.
    heading_end, depth = 0, 0
    while heading_end < len(lines) and (heading_end == 0 or depth > 0 or lines[heading_end][:1] not in (" ", "")):
        depth += lines[heading_end].count("[") - lines[heading_end].count("]")
        heading_end += 1

    blocks: list[tuple[bool, list[str]]] = []  # (is a definition, its lines)
    current: list[str] = []

    def flush(keep: bool = True) -> None:
        if current and keep:
            indent = len(current[0]) - len(current[0].lstrip())
            blocks.append((indent <= 5 or bool(_SENSE_NUMBER.match(current[0])), list(current)))
        current.clear()

    for line in lines[heading_end:]:
        if _SOURCE_TAG.match(line):
            flush(keep="WordNet" not in line)  # a tag closes the text it credits
        elif not line.strip():
            flush()
        else:
            if _SENSE_NUMBER.match(line):
                flush()
            current.append(_ATTRIBUTION.sub("", line))
    flush()

    sentences = []
    for is_definition, block in blocks:
        text = _clean_gcide(_SENSE_NUMBER.sub("", "\n".join(block), count=1))
        if not text or text.startswith(("Syn:", "Syn.", "See ", "Cf.")):
            continue
        if text.startswith("Note:"):
            text, is_definition = text[len("Note:"):].strip(), False
        text = _FIELD_LABEL.sub("", text)  # (Bot.), (Chem.): the field a sense belongs to
        if is_definition and headword and text[:1].isupper():
            text = f"{headword}: {text}"
        sentences.extend(s for s in split_sentences(text) if is_sentence(s))
    return sentences


def _sentence_case(text: str) -> str:
    text = text.strip().strip('"').strip()
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if re.search(r"[.!?]$", text) else text + "."


def wordnet_synset_sentences(line: str) -> list[str]:
    """A line of a WordNet data.* file as "word, synonym: gloss." and its example sentences; [] for the
    licence header and malformed lines."""
    if line.startswith("  ") or " | " not in line:
        return []
    fields, gloss = line.split(" | ", 1)
    parts = fields.split()
    try:
        word_count = int(parts[3], 16)
    except (IndexError, ValueError):
        return []
    words = [re.sub(r"\([a-z]+\)$", "", parts[4 + 2 * i]).replace("_", " ") for i in range(word_count)]
    examples = re.findall(r'"([^"]+)"', gloss)
    definitions = [p.strip() for p in re.sub(r'"[^"]*"', "", gloss).split(";") if p.strip()]
    sentences = []
    if definitions:
        sentences.append(f"{', '.join(words)}: {'; '.join(definitions)}".rstrip(".") + ".")
    sentences.extend(_sentence_case(example) for example in examples)
    return [s for s in sentences if len(s.split()) >= 2]
