"""Documents: deduplication, joining short documents, and the deterministic held-out split.

Deduplication works on normalized text (lower-cased, letters and digits only, so case, punctuation and spacing
do not hide a copy):
  * a document whose normalized text was seen before is dropped (the same page in two packages);
  * so is a document most of whose characters (`near_duplicate_share`, 80%) are in sentences seen before (the
    same page with a changed header, or a chapter that repeats what the single-page edition holds);
  * in the documents kept, a sentence of `min_dedup_words` (4) or more words that was seen before is dropped
    (navigation lines, licence notices and boilerplate repeated on every page). Shorter sentences ("For
    example:") are ordinary English and stay.
A document goes to the held-out part when a hash of its key (source and position) falls in the lowest 5% of
the hash range: the split is fixed per document, whatever else is in the corpus or in what order it is read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable, Iterator

_NOT_ALPHANUMERIC = re.compile(r"[^0-9a-z]+")
_HASH_BUCKETS = 10_000


@dataclasses.dataclass
class Document:
    key: str  # "source/relative/path#index": stable across builds, decides the held-out split
    sentences: list[str]

    @property
    def chars(self) -> int:
        return sum(len(s) for s in self.sentences)


def normalize(text: str) -> str:
    return _NOT_ALPHANUMERIC.sub(" ", text.lower()).strip()


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


@dataclasses.dataclass
class DedupCounts:
    documents: int = 0
    duplicate_documents: int = 0
    near_duplicate_documents: int = 0
    duplicate_sentences: int = 0
    blocked_sentences: int = 0  # matched the blocklist (GLUE text)


class Deduplicator:
    """Drops documents and sentences seen before, in the order documents are offered."""

    def __init__(self, near_duplicate_share: float = 0.8, min_dedup_words: int = 4):
        self.near_duplicate_share = near_duplicate_share
        self.min_dedup_words = min_dedup_words
        self._documents: set[int] = set()
        self._sentences: set[int] = set()
        self._blocked: set[int] = set()

    def block(self, sentences: Iterable[str]) -> int:
        """Sentences (of any length) that must never appear, e.g. GLUE's; returns how many were added."""
        before = len(self._blocked)
        self._blocked.update(_digest(normalize(s)) for s in sentences if normalize(s))
        return len(self._blocked) - before

    def filter(self, sentences: list[str], counts: DedupCounts) -> list[str] | None:
        """The sentences to keep of one document, or None when the whole document is a duplicate."""
        counts.documents += 1
        normalized = [normalize(s) for s in sentences]
        document_digest = _digest("\n".join(normalized))
        if document_digest in self._documents:
            counts.duplicate_documents += 1
            return None
        self._documents.add(document_digest)
        digests = [_digest(n) for n in normalized]
        dedupable = [len(n.split()) >= self.min_dedup_words for n in normalized]
        seen_chars = sum(len(s) for s, d, check in zip(sentences, digests, dedupable)
                         if check and d in self._sentences)
        if seen_chars >= self.near_duplicate_share * max(1, sum(map(len, sentences))):
            counts.near_duplicate_documents += 1
            return None
        kept = []
        for sentence, digest, check in zip(sentences, digests, dedupable):
            if digest in self._blocked:
                counts.blocked_sentences += 1
            elif check and digest in self._sentences:
                counts.duplicate_sentences += 1
            else:
                kept.append(sentence)
                if check:
                    self._sentences.add(digest)
        return kept


def join_short_documents(documents: Iterable[Document], min_chars: int) -> Iterator[Document]:
    """Joins each run of consecutive documents shorter than `min_chars` into one (keyed by its first), so
    dictionary entries, short help pages and info nodes make documents long enough for two-segment examples."""
    pending: Document | None = None
    for document in documents:
        if pending is None:
            pending = Document(document.key, list(document.sentences))
        else:
            pending.sentences.extend(document.sentences)
        if pending.chars >= min_chars:
            yield pending
            pending = None
    if pending is not None and pending.sentences:
        yield pending


def is_held_out(key: str, fraction: float) -> bool:
    """True for the documents of the held-out split: a hash of the key below `fraction` of the hash range."""
    return _digest(key) % _HASH_BUCKETS < round(fraction * _HASH_BUCKETS)
