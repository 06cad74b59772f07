"""Sentences and plain text: the splitter every reader shares, the prose test, and plain-text documents.

`split_sentences` and the WikiText/plain-text readers are the CPU experiment's corpus helpers, moved here
unchanged, so `compute_efficiency`'s corpus (and the results committed from it) stays byte for byte the same.
"""

from __future__ import annotations

import re
from pathlib import Path

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\"'`])")
_WIKI_TITLE = re.compile(r"^ ?= [^=].* = ?$")
_WIKI_SUBTITLE = re.compile(r"^ ?(= ){2,}.*(= ?){2,}$")
_WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")
_SENTENCE_FINAL = re.compile(r"[.!?:][\"'\u201d\u2019)\]]*$")
_CODE_TOKEN = re.compile(r"[=;{}$]|\(\)|->|::|\w\(|^\)")
_CAPTION = re.compile(r"^(Table|Figure|Example|Section|Chapter|Step)\s+[\dA-Z][\d.\-]*\.?$")

# The most frequent English function words. Running English prose has 35-50% of its words in this list;
# code, command lines, tables of numbers and other languages have almost none.
ENGLISH_FUNCTION_WORDS = frozenset("""
a about above after again against all also an and any are as at be because been before being below between
both but by can could did do does doing down during each either few for from further had has have having he
her here hers him his how i if in into is it its itself may might more most must my no nor not of off on once
only or other our out over own same shall she should so some such than that the their them then there these
they this those through to too under until up upon very was we were what when where which while who whom why
will with would you your
""".split())


def split_sentences(text: str) -> list[str]:
    """Whitespace-normalized sentences of `text` (split after . ! ? before a capital, digit or quote), 2+ words."""
    text = " ".join(text.split())
    return [s for s in (part.strip() for part in _SENTENCE_END.split(text)) if len(s.split()) >= 2]


def english_share(text: str) -> float:
    """The fraction of the words of `text` that are English function words (0 for text without words)."""
    words = _WORD.findall(text.lower())
    return sum(word in ENGLISH_FUNCTION_WORDS for word in words) / len(words) if words else 0.0


def looks_like_prose(text: str, min_english_share: float = 0.15, min_words: int = 6,
                     max_code_share: float = 0.3) -> bool:
    """True for a paragraph of English prose: mostly letters and, when long enough to tell, English words, with
    few code-like tokens (`x = f(y);`, `$var`, `a->b`): prose that names `len(s)` passes, a line of code does not.

    Paragraphs under `min_words` words (list items, captions) pass on the letter test alone; the document-level
    test in `electra_jax.corpus.build` catches sources whose short paragraphs are not English.
    """
    letters = sum(ch.isalpha() for ch in text)
    if letters < 0.5 * max(1, len(text)):
        return False  # mostly symbols: code, tables, paths
    tokens = text.split()
    if len(tokens) < min_words:
        return True
    code_share = sum(_CODE_TOKEN.search(token) is not None for token in tokens) / len(tokens)
    return english_share(text) >= min_english_share and code_share <= max_code_share


def is_sentence(text: str, max_chars: int = 1000) -> bool:
    """True when `text` ends as a sentence does (. ! ? or :, then closing quotes or brackets), is not a caption's
    number ("Figure 6.10.") and is not over `max_chars` long: not a heading, a label, a line of a list of names,
    or a table flattened into one run-on line."""
    return (len(text) <= max_chars and _SENTENCE_FINAL.search(text) is not None
            and _CAPTION.match(text) is None)


def prose_sentences(paragraphs: list[str]) -> list[str]:
    """The sentences of the paragraphs that look like English prose, headings and labels left out."""
    sentences: list[str] = []
    for paragraph in paragraphs:
        paragraph = " ".join(paragraph.split())
        if paragraph and looks_like_prose(paragraph):
            sentences.extend(s for s in split_sentences(paragraph) if is_sentence(s))
    return sentences


def wikitext_documents(text: str) -> list[list[str]]:
    """WikiText's tokenized articles: one document per top-level ' = Title = ' heading, subheadings dropped."""
    documents: list[list[str]] = []
    current: list[str] = []
    for line in text.splitlines():
        if _WIKI_TITLE.match(line) and not _WIKI_SUBTITLE.match(line):
            if current:
                documents.append(current)
            current = []
            continue
        if not line.strip() or _WIKI_SUBTITLE.match(line):
            continue
        line = line.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".").replace("<unk>", "")
        current.extend(split_sentences(line))
    if current:
        documents.append(current)
    return documents


def plain_documents(text: str, paragraphs_per_document: int = 60) -> list[list[str]]:
    """Plain text: paragraphs are blocks between blank lines; a long file is cut every N paragraphs."""
    blocks = [b for b in re.split(r"\n\s*\n", text) if b.strip()]
    documents = []
    for start in range(0, len(blocks), paragraphs_per_document):
        sentences = []
        for block in blocks[start:start + paragraphs_per_document]:
            for line in block.splitlines():
                sentences.extend(split_sentences(line))
        if sentences:
            documents.append(sentences)
    return documents


def text_documents(path: Path) -> list[list[str]]:
    """The documents of one text file: WikiText articles for *.tokens files, else plain-text paragraphs."""
    from electra_jax.data.example_builder import read_text_file  # UTF-8 with the Latin-1 fallback

    text = read_text_file(str(path))
    if path.name.endswith(".tokens"):
        return wikitext_documents(text)
    return plain_documents(text)
