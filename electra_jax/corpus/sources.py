"""The Debian sources of the corpus: which package, which files in it, and which markup family reads them.

A source is one package (or part of one) read by one family. Each family is a function
`(source, roots) -> documents`, registered in FAMILIES, so adding a markup is one reader and one entry.
Every source was looked at by hand (samples of its output read as English prose; translations, indexes,
tables of contents and single-page copies of multi-page books are excluded). `python -m electra_jax.corpus
--list_sources` prints this table.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import gzip
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

from electra_jax.corpus.dictionary import dictd_entries, gcide_entry_sentences, wordnet_synset_sentences
from electra_jax.corpus.documents import Document
from electra_jax.corpus.html import html_to_sentences
from electra_jax.corpus.info import info_documents
from electra_jax.corpus.pod import pod_to_sentences
from electra_jax.corpus.rst import rst_to_sentences
from electra_jax.corpus.text import is_sentence, looks_like_prose, split_sentences


@dataclasses.dataclass(frozen=True)
class Source:
    name: str
    package: str
    family: str  # a key of FAMILIES
    kind: str  # book, dictionary or documentation (for the statistics)
    include: tuple[str, ...]  # globs relative to the unpacked package
    exclude: tuple[str, ...] = ()  # fnmatch patterns on the same relative paths
    helpers: tuple[str, ...] = ()  # more packages the reader needs (a decoder, the copyright file)
    only_classes: tuple[str, ...] = ()  # html: keep only the text inside these classes
    licence_from: str = ""  # the package whose copyright file covers this one (default: `package`)


def source_files(source: Source, root: Path) -> list[Path]:
    """The files of a source in sorted order: matched by an include glob and by no exclude pattern."""
    found = {path for pattern in source.include for path in root.glob(pattern) if path.is_file()}
    return sorted(path for path in found
                  if not any(fnmatch.fnmatch(str(path.relative_to(root)), p) for p in source.exclude))


def read_text(path: Path) -> str:
    """A text file (gzip-compressed when it ends in .gz) as UTF-8, falling back to Latin-1."""
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _per_file(reader: Callable[[str], list[list[str]]]) -> Callable[[Source, dict[str, Path]], Iterator[Document]]:
    """A family that reads each file on its own: `reader(text)` gives the file's documents."""
    def read(source: Source, roots: dict[str, Path]) -> Iterator[Document]:
        root = roots[source.package]
        for path in source_files(source, root):
            relative = path.relative_to(root)
            for index, sentences in enumerate(reader(read_text(path))):
                if sentences:
                    yield Document(f"{source.name}/{relative}#{index}", sentences)
    return read


def _rst_documents(text: str) -> list[list[str]]:
    return [[s for s in rst_to_sentences(text) if is_sentence(s) and looks_like_prose(s)]]


def _gcide(source: Source, roots: dict[str, Path]) -> Iterator[Document]:
    folder = roots[source.package] / "usr" / "share" / "dictd"
    entries = dictd_entries(read_text(folder / "gcide.index"), gzip.decompress((folder / "gcide.dict.dz").read_bytes()))
    for index, (headword, entry) in enumerate(entries):
        yield Document(f"{source.name}/{headword}#{index}", gcide_entry_sentences(entry))


def _wordnet(source: Source, roots: dict[str, Path]) -> Iterator[Document]:
    root = roots[source.package]
    for path in source_files(source, root):
        for index, line in enumerate(read_text(path).splitlines()):
            sentences = wordnet_synset_sentences(line)
            if sentences:
                yield Document(f"{source.name}/{path.name}#{index}", sentences)


_VERSE = re.compile(r"^(\S*?[A-Za-z]+)(\d+):(\d+) (.*)$")


def _king_james(source: Source, roots: dict[str, Path]) -> Iterator[Document]:
    """The King James Bible, one document per chapter. Its text ships compressed in Debian's own format; the
    `bible` program of the bible-kjv package (unpacked, not installed) prints it, one verse per line."""
    program = roots["bible-kjv"] / "usr" / "bin" / "bible"
    data_dir = roots[source.package] / "usr" / "lib"
    try:
        printed = subprocess.run([str(program), "-f", "-p", str(data_dir), "gen1:1-rev22:21"], capture_output=True,
                                 text=True, check=True, timeout=300).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise RuntimeError(f"the bible-kjv program {program} could not print the text ({e}); it is an amd64 "
                           "binary needing libreadline8; leave the kjv source out with --sources") from e
    chapters: dict[tuple[str, str], list[str]] = {}
    for line in printed.splitlines():
        match = _VERSE.match(line)
        if match:
            chapters.setdefault((match.group(1), match.group(2)), []).append(match.group(4))
    for (book, chapter), verses in chapters.items():  # in the Bible's order (dicts keep insertion order)
        sentences = [s for s in split_sentences(" ".join(verses)) if is_sentence(s)]
        yield Document(f"{source.name}/{book}{chapter}", sentences)


def _html_family(source: Source, roots: dict[str, Path]) -> Iterator[Document]:
    yield from _per_file(lambda text: [html_to_sentences(text, only_classes=source.only_classes)])(source, roots)


FAMILIES: dict[str, Callable[[Source, dict[str, Path]], Iterator[Document]]] = {
    "html": _html_family,
    "rst": _per_file(_rst_documents),
    "pod": _per_file(lambda text: [pod_to_sentences(text)]),
    "info": _per_file(info_documents),
    "gcide": _gcide,
    "wordnet": _wordnet,
    "kjv": _king_james,
}


def read_source(source: Source, roots: dict[str, Path]) -> Iterator[Document]:
    """Every document of a source, in a fixed order."""
    return FAMILIES[source.family](source, roots)


def _info(package: str, *include: str, exclude: tuple[str, ...] = ()) -> Source:
    return Source(package, package, "info", "documentation", include or ("usr/share/info/**/*.info*",), exclude)


_DOCS = "usr/share/doc"
SOURCES: tuple[Source, ...] = (
    # Books and dictionaries.
    Source("kjv", "bible-kjv-text", "kjv", "book", (), helpers=("bible-kjv",)),
    Source("gcide", "dict-gcide", "gcide", "dictionary", ()),
    Source("wordnet", "wordnet-base", "wordnet", "dictionary",
           tuple(f"usr/share/wordnet/data.{pos}" for pos in ("noun", "verb", "adj", "adv"))),
    # Sphinx reST sources.
    Source("python3.11-doc", "python3.11-doc", "rst", "documentation",
           (f"{_DOCS}/python3.11/html/_sources/**/*.rst.txt",)),
    Source("linux-doc", "linux-doc-6.1", "rst", "documentation", (f"{_DOCS}/linux-doc-6.1/html/_sources/**/*.rst.txt",),
           exclude=("*/_sources/translations/*",)),
    Source("ghc-users-guide", "ghc-doc", "rst", "documentation",
           (f"{_DOCS}/ghc-doc/html/users_guide/_sources/**/*.rst.txt",)),
    Source("python-sklearn-doc", "python-sklearn-doc", "rst", "documentation",
           (f"{_DOCS}/python-sklearn-doc/html/_sources/**/*.rst.txt",),
           exclude=("*/auto_examples/*", "*/modules/generated/*")),
    # POD.
    Source("perl-doc", "perl-doc", "pod", "documentation", ("usr/share/perl/*/pod/*.pod",),
           exclude=("*/perltoc.pod",)),
    # HTML.
    Source("postgresql-doc-15", "postgresql-doc-15", "html", "documentation",
           (f"{_DOCS}/postgresql-doc-15/html/*.html",), exclude=("*/bookindex.html",)),
    Source("openjdk-17-doc", "openjdk-17-doc", "html", "documentation",
           (f"{_DOCS}/openjdk-17-jre-headless/api/**/*.html",),
           exclude=("*/class-use/*", "*/package-tree.html", "*/package-use.html", "*/index-files/*",
                    "*/overview-tree.html", "*-list.html", "*/allclasses-index.html", "*/allpackages-index.html"),
           only_classes=("block",)),
    Source("rust-books", "rust-doc", "html", "documentation",
           tuple(f"{_DOCS}/rust-doc/html/{book}/**/*.html" for book in (
               "book", "reference", "nomicon", "rust-by-example", "edition-guide", "embedded-book", "rustc",
               "rustdoc", "unstable-book")),
           exclude=("*/print.html", "*/toc.html", "*/404.html")),
    Source("rust-std", "rust-doc", "html", "documentation", (f"{_DOCS}/rust-doc/html/std/**/*.html",),
           only_classes=("docblock",)),
    Source("libreoffice-help-en-us", "libreoffice-help-en-us", "html", "documentation",
           ("usr/share/libreoffice/help/en-US/text/**/*.html",)),
    Source("gimp-help-en", "gimp-help-en", "html", "documentation", ("usr/share/gimp/2.0/help/en/**/*.html",),
           helpers=("gimp-help-common",), licence_from="gimp-help-common"),
    Source("racket-doc", "racket-doc", "html", "documentation", (f"{_DOCS}/racket/**/*.html",)),
    Source("erlang-doc", "erlang-doc", "html", "documentation", (f"{_DOCS}/erlang-doc/**/*.html",)),
    Source("debian-handbook", "debian-handbook", "html", "documentation",
           (f"{_DOCS}/debian-handbook/html/en-US/*.html",)),
    Source("debian-reference-en", "debian-reference-en", "html", "documentation",
           ("usr/share/debian-reference/*.en.html",)),
    Source("git-doc", "git-doc", "html", "documentation", (f"{_DOCS}/git-doc/*.html",)),
    Source("python-django-doc", "python-django-doc", "html", "documentation",
           (f"{_DOCS}/python-django-doc/html/**/*.html",),
           exclude=("*/genindex.html", "*/py-modindex.html", "*/search.html", "*/_modules/*", "*/contents.html")),
    # GNU info manuals.
    _info("bash-doc"), _info("r-doc-info"), _info("coreutils"), _info("sed"), _info("grep"), _info("findutils"),
    _info("m4"), _info("flex"), _info("wget"), _info("diffutils"), _info("gnu-standards"), _info("autoconf-doc"),
    _info("texinfo"), _info("libtool-doc"), _info("guile-3.0-doc"), _info("octave-doc"), _info("maxima-doc"),
    _info("gnutls-doc"), _info("sbcl-doc"), _info("debian-policy"), _info("developers-reference"),
)
SOURCES_BY_NAME = {source.name: source for source in SOURCES}
