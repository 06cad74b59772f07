"""HTML pages to prose: code, tables, navigation, headers, footers, forms and headings dropped; paragraphs kept.

Works on the generated HTML that Debian's documentation packages ship (DocBook, Sphinx, Publican, javadoc,
rustdoc, mdBook, LibreOffice help). Block elements end a paragraph; inline elements (links, emphasis, inline
`<code>`) stay in their sentence, so "the <code>COPY</code> command" reads "the COPY command". A paragraph that
is mostly symbols or not English (`looks_like_prose`) is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from html.parser import HTMLParser

from electra_jax.corpus.text import prose_sentences

# Elements dropped with everything inside them.
SKIP_TAGS = frozenset({
    "head", "script", "style", "noscript", "template", "svg", "math", "pre", "table", "nav", "header", "footer",
    "form", "button", "select", "textarea", "h1", "h2", "h3", "h4", "h5", "h6", "dt", "summary", "figure",
    "iframe", "object", "map",
})
# class or id values of navigation, sidebars, tables of contents and other page furniture (exact tokens).
SKIP_CLASSES = frozenset({
    "nav", "navbar", "navheader", "navfooter", "navigation", "breadcrumb", "breadcrumbs", "sidebar", "sphinxsidebar",
    "sphinxsidebarwrapper", "related", "toc", "toctree-wrapper", "contents", "footer", "header", "menu",
    "search", "searchbox", "highlight", "literallayout", "programlisting", "screen", "synopsis", "cmdsynopsis",
    "funcsynopsis", "sect-toc", "headerlink", "copyright", "legalnotice", "index", "genindex", "skip-link",
    "rustdoc-breadcrumbs", "sidebar-elems", "out-of-band", "since", "srclink", "code-header", "docblock-short",
    "item-decl", "example-wrap", "summary", "method-summary", "field-summary", "constructor-summary",
    "member-signature", "type-signature", "package-hierarchy-label", "sub-nav", "top-nav",
    "chapter-toc", "list-of-tables", "list-of-figures", "list-of-examples", "revhistory", "edit-page",
})
# Elements that end a paragraph.
BLOCK_TAGS = frozenset({
    "p", "div", "li", "dd", "dl", "ul", "ol", "blockquote", "section", "article", "main", "aside", "body", "br",
    "hr", "tr", "td", "th", "caption", "figcaption", "title", "html", "center", "address", "details", "fieldset",
})
VOID_TAGS = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
                       "source", "track", "wbr"})


def _close(open_tags: list[str], tag: str) -> None:
    """Closes the innermost open `tag` and whatever was left open inside it (HTML often omits end tags)."""
    if tag in open_tags:
        del open_tags[len(open_tags) - 1 - open_tags[::-1].index(tag):]


def _classes(attrs: list[tuple[str, str | None]]) -> set[str]:
    return {token for name, value in attrs if name in ("class", "id", "role") and value for token in value.split()}


class _ProseParser(HTMLParser):
    def __init__(self, skip_classes: frozenset[str], only_classes: frozenset[str]):
        super().__init__(convert_charrefs=True)
        self.skip_classes = skip_classes
        self.only_classes = only_classes
        self.paragraphs: list[str] = []
        self._current: list[str] = []
        self._skipping: list[str] = []  # open elements inside the outermost skipped one (empty: not skipping)
        self._kept: list[str] = []  # with only_classes: open elements inside the outermost kept one

    def _flush(self) -> None:
        if self._current:
            self.paragraphs.append("".join(self._current))
            self._current = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skipping:
            if tag not in VOID_TAGS:
                self._skipping.append(tag)
            return
        if tag in BLOCK_TAGS:
            self._flush()
        if tag in VOID_TAGS:
            return
        classes = _classes(attrs)
        if tag in SKIP_TAGS or not self.skip_classes.isdisjoint(classes):
            self._flush()
            self._skipping.append(tag)
        elif self._kept or not self.only_classes.isdisjoint(classes):
            self._kept.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if not self._skipping and tag in BLOCK_TAGS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if self._skipping:
            _close(self._skipping, tag)
            return
        if tag in BLOCK_TAGS:
            self._flush()
        _close(self._kept, tag)

    def handle_data(self, data: str) -> None:
        if not self._skipping and (self._kept or not self.only_classes):
            self._current.append(data)


def html_paragraphs(html: str, extra_skip_classes: Iterable[str] = (), only_classes: Iterable[str] = ()
                    ) -> list[str]:
    """The text of every paragraph of an HTML page outside the skipped elements, whitespace-normalized.

    With `only_classes`, only text inside an element whose class, id or role is one of them is kept (javadoc's
    `block` divisions hold its prose; the rest of a page is signatures and summary tables).
    """
    parser = _ProseParser(SKIP_CLASSES | frozenset(extra_skip_classes), frozenset(only_classes))
    parser.feed(html)
    parser.close()
    parser._flush()
    return [text for text in (" ".join(p.split()) for p in parser.paragraphs) if text]


def html_to_sentences(html: str, extra_skip_classes: Iterable[str] = (), only_classes: Iterable[str] = ()
                      ) -> list[str]:
    """The prose sentences of an HTML page."""
    return prose_sentences(html_paragraphs(html, extra_skip_classes, only_classes))
