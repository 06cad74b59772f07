"""The Debian corpus (electra_jax.corpus): each markup cleaner on a hand-written sample against hand-derived
sentences, deduplication and the held-out split against hand counts, the fetcher with a fake apt, and the
command end to end on a tiny fake package cache (no apt, no network)."""

import gzip
import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from electra_jax.corpus import dictionary, documents, html, info, pod, rst, text
from electra_jax.corpus.debian import DebianFetcher, licence_summary
from electra_jax.corpus.sources import FAMILIES, SOURCES, SOURCES_BY_NAME, read_source

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------------------
# Markup families


def test_rst_markup_becomes_plain_sentences():
    sample = "\n".join([
        ":mod:`json` --- JSON encoder",
        "==============================",
        "",
        ".. module:: json",
        "   :synopsis: Encode and decode the JSON format.",
        "",
        "The :func:`~json.dumps` function returns a ``str``. See `the spec <https://json.org>`_ for details.",
        "Encoding basic objects::",
        "",
        "    >>> import json",
        "    >>> json.dumps([1, 2])",
        "",
        ".. function:: dump(obj, fp, *, \\",
        "              skipkeys=False)",
        "",
        "   Serialize *obj* as a **JSON** stream to *fp*.",
        "",
        "   .. versionchanged:: 3.6",
        "      All optional parameters are now keyword-only.",
        "",
        ".. code-block:: python",
        "",
        "   print('not prose')",
        "",
        "* A bullet item that is prose.",
        "",
        ">>> x = 1",
        "",
        ".. _label-target:",
        "",
        "Last sentence here.",
    ])
    assert rst.rst_to_sentences(sample) == [
        "json --- JSON encoder",
        "The json.dumps function returns a str.",
        "See the spec for details.",
        "Encoding basic objects:",
        "Serialize obj as a JSON stream to fp.",
        "All optional parameters are now keyword-only.",
        "A bullet item that is prose.",
        "Last sentence here.",
    ]


def test_wikitext_articles_are_documents():
    sample = "\n".join([" ", " = First = ", " ", " It is red @-@ tipped . It has <unk> claws . ", " ",
                        " = = Section = = ", " More text here . ", " = Second = ", " Another article starts . "])
    assert text.wikitext_documents(sample) == [["It is red-tipped .", "It has claws .", "More text here ."],
                                               ["Another article starts ."]]


def test_prose_tests():
    assert text.is_sentence("It ends here.") and text.is_sentence('He said "stop!"')
    assert text.is_sentence("For example:")
    assert not text.is_sentence("Copying files") and not text.is_sentence("foo(bar)")
    assert not text.is_sentence("Figure 6.10.") and not text.is_sentence("Example 11-4.")
    assert text.is_sentence("word " * 199 + "end.") and not text.is_sentence("word " * 200 + "end.")  # 1,000 chars
    assert text.looks_like_prose("The program reads its input from a file and writes the result.")
    assert not text.looks_like_prose("x = y + 1; z = f(x); w = [1, 2, 3];")  # mostly symbols
    assert not text.looks_like_prose("Der Hund ist nicht hier und die Katze ist auch weg.")  # not English
    assert not text.looks_like_prose("my $foo = Foo->new; $foo->run; print $foo->{bar} if $foo;")  # code
    assert text.looks_like_prose("If $x is set, the value of $x->{y} is returned to the caller.")
    assert text.english_share("the cat of the house") == 3 / 5  # the, of, the


PAGE = """<html><head><title>Page title</title><style>p {color: red}</style></head>
<body>
<div class="navheader"><a href="a.html">Prev</a> Next chapter is here.</div>
<nav>Home | Docs</nav>
<h1>Copying files</h1>
<p>The <code>cp</code> command copies files. It never moves them.</p>
<pre>cp a.txt b.txt</pre>
<table><tr><td>Option</td><td>Meaning is here.</td></tr></table>
<ul><li>Each item is read as a sentence.</li><li>short label</li></ul>
<p>Entities such as &lt;tags&gt; &amp; accents caf&eacute; are decoded.<br>A line break starts a new paragraph.
<script>var x = "Not prose.";</script>
<p>x = y + 1; z = f(x);</p>
<p>Der Hund ist nicht hier und die Katze ist auch weg.</p>
<div class="sidebar"><p>Unclosed paragraphs<p>inside a sidebar are dropped.</div>
<p>After the sidebar comes prose.</p>
<div class="footer">Copyright 2024 by somebody. All rights reserved.</div>
</body></html>"""


def test_html_keeps_paragraph_prose_only():
    assert html.html_to_sentences(PAGE) == [
        "The cp command copies files.", "It never moves them.", "Each item is read as a sentence.",
        "Entities such as <tags> & accents café are decoded.", "A line break starts a new paragraph.",
        "After the sidebar comes prose."]


def test_html_only_classes_keeps_javadoc_blocks():
    page = ('<div class="block">Returns the sum of both values.</div>'
            '<table class="summary"><tr><td><div class="block">A summary copy is skipped.</div></td></tr></table>'
            '<dl class="notes"><dt>Parameters:</dt><dd><code>a</code> - the first value.</dd></dl>'
            '<div class="block">Second <b>bold</b> text is kept.</div>')
    assert html.html_to_sentences(page, only_classes=("block",)) == [
        "Returns the sum of both values.", "Second bold text is kept."]


POD_SAMPLE = """package Foo;
sub x { 1 }

=head1 NAME

Foo - a module that does B<nothing> useful

=head1 DESCRIPTION

This module returns C<< $x->{y} >> when asked, and I<never> dies.
See L<the syntax page|perlsyn> and L<perlsyn/"For Loops"> for details.

    my $foo = Foo->new;
    $foo->run;

=over 4

=item *

Each bullet is a paragraph of prose.

=item * An item can carry its text on the same line.

=item $obj->method(ARGS)

Calls the method E<lt>with argumentsE<gt> given.

=back

=begin html

<p>This HTML is not for text readers.</p>

=end html

=for comment This is a comment for maintainers.

=cut

sub y { "Not documentation." }
"""


def test_pod_keeps_ordinary_paragraphs_and_items():
    assert pod.pod_to_sentences(POD_SAMPLE) == [
        "This module returns $x->{y} when asked, and never dies.",
        'See the syntax page and "For Loops" in perlsyn for details.',
        "Each bullet is a paragraph of prose.",
        "An item can carry its text on the same line.",
        "Calls the method <with arguments> given."]


INFO_SAMPLE = """This is foo.info, produced by makeinfo version 6.8 from foo.texi.

INFO-DIR-SECTION Utilities
START-INFO-DIR-ENTRY
* Foo: (foo).   Frobnicate files.
END-INFO-DIR-ENTRY

\x1f
File: foo.info,  Node: Top,  Next: Invoking,  Up: (dir)

Foo manual
**********

This manual documents Foo, a program that frobnicates files.

* Menu:

* Invoking::    How to run it.
* Concept Index::  Index of concepts.

\x1f
File: foo.info,  Node: Invoking,  Prev: Top,  Up: Top

1 Invoking Foo
==============

The program reads its input from a file (*note Files::) and writes the
result to the standard output.

     foo --frobnicate input.txt > output.txt

   • Each option is read before any file is opened.
   • Options may be abbreviated.

   *Note Exit Status: Status, for the codes it returns.

'-U NAME'
'--undefine=NAME'
     This deletes any predefined meaning NAME might have.

 -- Function: frob (FILE)
     Frobnicates FILE in place.

   ---------- Footnotes ----------

   (1) A footnote is prose too.

\x1f
Tag Table:
Node: Top74
Node: Invoking300
\x1f
End Tag Table
"""


def test_info_nodes_become_documents():
    assert info.info_documents(INFO_SAMPLE) == [
        ["This manual documents Foo, a program that frobnicates files."],
        ["The program reads its input from a file (see Files) and writes the result to the standard output.",
         "Each option is read before any file is opened.", "Options may be abbreviated.",
         "See Exit Status, for the codes it returns.", "This deletes any predefined meaning NAME might have.",
         "Frobnicates FILE in place.", "A footnote is prose too."]]


GCIDE_ENTRY = """Accredit \\Ac*cred"it\\, v. t. [imp. & p. p. {Accredited}; p. pr.
   & vb. n. {Accrediting}.] [F. accr['e]diter; [`a] (L. ad) +
   cr['e]dit credit. See {Credit}.]
   1. To put or bring into credit; to invest with credit or
      authority; to sanction.
      [1913 Webster]

            His censure will . . . accredit his praises.
                                                  --Cowper.
      [1913 Webster]

   2. To send with letters credential, as an ambassador, envoy,
      or diplomatic agent; to authorize, as a messenger or
      delegate.
      [1913 Webster]

   3. To believe; to credit; to put trust in.
      [WordNet 1.5]

   Syn: To trust; credit.
        [1913 Webster]

   Note: Usage varies; the word is rare in (Bot.) speech. [Obs.]
      [1913 Webster]
"""


def test_gcide_entry_keeps_definitions_notes_and_quotations():
    assert dictionary.gcide_entry_sentences(GCIDE_ENTRY) == [
        "Accredit: To put or bring into credit; to invest with credit or authority; to sanction.",
        "His censure will . . . accredit his praises.",
        "Accredit: To send with letters credential, as an ambassador, envoy, or diplomatic agent; to authorize, as a "
        "messenger or delegate.",
        "Usage varies; the word is rare in (Bot.) speech."]


def test_gcide_accents_and_field_labels():
    entry = "Cafe \\Ca*f['e]\\, n. (Cookery)\n   A coffee house; a caf['e] or restaurant.\n   [1913 Webster]\n"
    assert dictionary.gcide_entry_sentences(entry) == ["Cafe: A coffee house; a cafe or restaurant."]


def test_dictd_index_offsets_are_base64():
    data = b"first entry text\nsecond entry\n" + b"x" * 34 + b"gamma entry\n"
    index = ("00-database-short\tA\tB\n"  # metadata, left out
             "alpha\tA\tR\n"  # offset 0, length 17
             "beta\tR\tN\n"  # offset 17 ("R" = 17), length 13 ("N")
             "Alpha\tA\tR\n"  # another headword for the same entry: read once
             "gamma\tBA\tM\n")  # offset 1 * 64 + 0 = 64, length 12
    assert dictionary.dictd_entries(index, data) == [
        ("alpha", "first entry text\n"), ("beta", "second entry\n"), ("gamma", "gamma entry\n")]


def test_wordnet_synsets_read_as_definitions_and_examples():
    line = ("05436080 08 n 02 chromatin 0 chromatin_granule 0 005 @ 05263850 n 0000 #p 05434927 n 0000 | the readily "
            "stainable substance of a cell nucleus; during mitotic division it condenses into chromosomes; "
            '"chromatin stains deeply; it is dense"  ')
    assert dictionary.wordnet_synset_sentences(line) == [
        "chromatin, chromatin granule: the readily stainable substance of a cell nucleus; during mitotic division it "
        "condenses into chromosomes.", "Chromatin stains deeply; it is dense."]
    adjective = '01234567 00 s 01 galore(ip) 0 000 | in great numbers; "food galore"'
    assert dictionary.wordnet_synset_sentences(adjective) == ["galore: in great numbers.", "Food galore."]
    assert dictionary.wordnet_synset_sentences("  1 This software and database is being provided to you") == []


def test_king_james_verses_join_into_chapter_sentences(tmp_path):
    program = tmp_path / "kjv" / "usr" / "bin" / "bible"
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\ncat <<'EOF'\n"
                       "Ge1:1 In the beginning God created the heaven and the earth.\n"
                       "Ge1:2 And the earth was without form, and void;\n"
                       "Ge1:3 and darkness was upon the face of the deep.\n"
                       "Ge2:1 Thus the heavens were finished.\nEOF\n")
    program.chmod(0o755)
    roots = {"bible-kjv-text": tmp_path / "data", "bible-kjv": tmp_path / "kjv"}
    docs = list(read_source(SOURCES_BY_NAME["kjv"], roots))
    assert [(d.key, d.sentences) for d in docs] == [
        ("kjv/Ge1", ["In the beginning God created the heaven and the earth.",
                     "And the earth was without form, and void; and darkness was upon the face of the deep."]),
        ("kjv/Ge2", ["Thus the heavens were finished."])]


def test_every_source_names_a_known_family_once():
    assert {source.family for source in SOURCES} <= set(FAMILIES)
    assert len(SOURCES_BY_NAME) == len(SOURCES)


# ---------------------------------------------------------------------------------------------------------
# Deduplication, joining and the held-out split


def test_deduplication_against_hand_counts():
    dedup = documents.Deduplicator(near_duplicate_share=0.8, min_dedup_words=4)
    assert dedup.block(["blocked sentence, from GLUE here"]) == 1
    counts = documents.DedupCounts()
    offered = [
        ["The quick brown fox jumps over the dog.", "For example:", "This page is part of the manual."],
        ["THE QUICK brown fox jumps over the dog!", "For example:", "This page is part of the manual"],  # same text
        ["A different page starts here today.", "For example:", "This page is part of the manual."],
        ["The quick brown fox jumps over the dog.", "This page is part of the manual.", "Tiny."],  # 71 of 76 seen
        ["Blocked sentence from GLUE here.", "Fresh sentence number one is here."],
        ["Repeat this line of text.", "Repeat this line of text."],
    ]
    kept = [dedup.filter(sentences, counts) for sentences in offered]
    assert kept == [offered[0], None, ["A different page starts here today.", "For example:"], None,
                    ["Fresh sentence number one is here."], ["Repeat this line of text."]]
    assert dataclasses_dict(counts) == {"documents": 6, "duplicate_documents": 1, "near_duplicate_documents": 1,
                                        "duplicate_sentences": 2, "blocked_sentences": 1}


def dataclasses_dict(counts):
    return {name: getattr(counts, name) for name in counts.__dataclass_fields__}


def test_short_documents_are_joined_in_order():
    docs = [documents.Document(f"k{i}", ["x" * size]) for i, size in enumerate((5, 5, 12, 3))]
    joined = list(documents.join_short_documents(docs, min_chars=10))
    assert [(d.key, d.chars, len(d.sentences)) for d in joined] == [("k0", 10, 2), ("k2", 12, 1), ("k3", 3, 1)]


def test_heldout_split_is_five_percent_by_document_and_order_free():
    keys = [f"source/page{i}.html#0" for i in range(4000)]
    held = {key for key in keys if documents.is_held_out(key, 0.05)}
    # Binomial(4000, 0.05): mean 200, standard deviation 13.8; 3 sd either side.
    assert 159 <= len(held) <= 241
    shuffled = random.Random(1).sample(keys, len(keys))
    assert {key for key in shuffled if documents.is_held_out(key, 0.05)} == held
    # The rule, computed independently: the first 8 bytes of BLAKE2b of the key, little-endian, mod 10000 < 500.
    for key in keys[:200]:
        bucket = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") % 10000
        assert (key in held) == (bucket < 500)
    assert not any(documents.is_held_out(key, 0.0) for key in keys)


# ---------------------------------------------------------------------------------------------------------
# The Debian fetcher, with a fake apt


class FakeApt:
    """apt-cache show / apt-get download / dpkg -x over a dict of packages {name: version}; logs commands."""

    def __init__(self, packages):
        self.packages = packages
        self.commands = []

    def __call__(self, command, cwd):
        self.commands.append(command[:2])
        if command[:2] == ["apt-cache", "show"]:
            name = command[-1]
            if name not in self.packages:
                raise RuntimeError(f"E: No packages found for {name}")
            return f"Package: {name}\nVersion: {self.packages[name]}\nArchitecture: all\n"
        if command[:2] == ["apt-get", "download"]:
            name, version = command[2].split("=")
            (Path(cwd) / f"{name}_{version.replace(':', '%3a')}_all.deb").write_bytes(b"deb of " + name.encode())
            return ""
        if command[0] == "dpkg":
            deb, target = Path(command[2]), Path(command[3])
            name = deb.name.split("_")[0]
            (target / "usr/share/doc" / name).mkdir(parents=True)
            (target / "usr/share/doc" / name / "copyright").write_text("License: GPL-2+\n")
            return ""
        raise AssertionError(command)


def test_fetcher_downloads_unpacks_once_then_reuses(tmp_path):
    apt = FakeApt({"wordnet-base": "1:3.0-37"})
    fetcher = DebianFetcher(tmp_path / "cache", runner=apt, system_archives=())
    package = fetcher.fetch("wordnet-base")
    assert apt.commands == [["apt-cache", "show"], ["apt-get", "download"], ["dpkg", "-x"]]
    assert package.version == "1:3.0-37" and package.deb.name == "wordnet-base_1%3a3.0-37_all.deb"
    assert package.sha256 == hashlib.sha256(b"deb of wordnet-base").hexdigest()
    assert (package.root / "usr/share/doc/wordnet-base/copyright").is_file()
    again = fetcher.fetch("wordnet-base")
    assert apt.commands[3:] == [["apt-cache", "show"]]  # neither downloaded nor unpacked again
    assert again.root == package.root


def test_fetcher_reuses_a_deb_in_the_system_archive(tmp_path):
    archive = tmp_path / "archives"
    archive.mkdir()
    (archive / "bible-kjv-text_4.38_all.deb").write_bytes(b"cached")
    (archive / "bible-kjv-text_4.37_all.deb").write_bytes(b"older version, not apt's candidate")
    apt = FakeApt({"bible-kjv-text": "4.38"})
    package = DebianFetcher(tmp_path / "cache", runner=apt, system_archives=(archive,)).fetch("bible-kjv-text")
    assert apt.commands == [["apt-cache", "show"], ["dpkg", "-x"]]
    assert package.deb == archive / "bible-kjv-text_4.38_all.deb"


def test_fetcher_without_apt_uses_the_cache_or_says_what_to_do(tmp_path):
    DebianFetcher(tmp_path, runner=FakeApt({"perl-doc": "1:5.36.0-7"}), system_archives=()).fetch("perl-doc")

    def no_apt(command, cwd):
        raise RuntimeError("`apt-cache` is not installed")

    offline = DebianFetcher(tmp_path, runner=no_apt, system_archives=())
    package = offline.fetch("perl-doc")
    assert package.version == "1:5.36.0-7" and package.sha256 == hashlib.sha256(b"deb of perl-doc").hexdigest()
    with pytest.raises(RuntimeError, match="holds no unpacked dict-gcide_VERSION"):
        offline.fetch("dict-gcide")
    apt = FakeApt({})
    assert DebianFetcher(tmp_path, runner=apt, offline=True).fetch("perl-doc").root == package.root
    assert apt.commands == []


def test_licence_summary():
    dep5 = ("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: x\n\n"
            "Files: *\nCopyright: 2001 Someone\nLicense: GPL-2+\n\nFiles: debian/*\nLicense: MIT\n")
    assert licence_summary(dep5) == "GPL-2+"
    no_star = ("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
               "Files: C*.md\n src/*\nLicense: MIT or Apache-2.0\n\nFiles: fonts/*\nLicense: SIL-OPEN-FONT\n")
    assert licence_summary(no_star) == "MIT or Apache-2.0"  # the first Files stanza
    assert licence_summary("Copying is permitted under the GNU Free Documentation License.") == "names GFDL"
    assert licence_summary("The program is GPL; the copyright for the text has expired.") == "names GPL, public domain"
    assert licence_summary("All rights reserved.").startswith("unknown")


# ---------------------------------------------------------------------------------------------------------
# The command, end to end on a fake package cache


def _package(cache, name, version, files, licence="License: GPL-2+"):
    root = cache / "unpacked" / f"{name}_{version}"
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    copyright_path = root / "usr/share/doc" / name / "copyright"
    copyright_path.parent.mkdir(parents=True, exist_ok=True)
    copyright_path.write_text(f"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
                              f"Files: *\n{licence}\n")
    (cache / "debs").mkdir(parents=True, exist_ok=True)
    (cache / "debs" / f"{name}_{version}_all.deb").write_bytes(b"fake " + name.encode())
    (root / ".unpacked").write_text(json.dumps({"deb": f"{name}_{version}_all.deb", "version": version}))


def _read_documents(path):
    return [block.split("\n") for block in path.read_text().rstrip("\n").split("\n\n")] if path.exists() else []


def test_command_end_to_end_on_a_fake_cache(tmp_path, uncased_vocab):
    cache = tmp_path / "cache"
    pg = "usr/share/doc/postgresql-doc-15/html/"
    _package(cache, "postgresql-doc-15", "15.1-1", {
        pg + "a.html": PAGE, pg + "copy.html": PAGE.replace("Page title", "Another title"),  # the same page again
        pg + "b.html": "<p>Vacuum reclaims the storage that is occupied by dead tuples.</p>"},
        licence="License: PostgreSQL")
    _package(cache, "perl-doc", "5.36.0-7", {"usr/share/perl/5.36.0/pod/perlfoo.pod": POD_SAMPLE,
                                             "usr/share/perl/5.36.0/pod/perltoc.pod": "=head1 X\n\nExcluded toc.\n"})
    _package(cache, "bash-doc", "5.2.15-2", {"usr/share/info/foo.info.gz": gzip.compress(INFO_SAMPLE.encode())})
    glue = tmp_path / "glue" / "SST-2"
    glue.mkdir(parents=True)
    (glue / "train.tsv").write_text("sentence\tlabel\nit never moves them .\t1\n")
    output = tmp_path / "corpus"
    stats_path = tmp_path / "results" / "corpus_stats.json"
    command = [sys.executable, "-m", "electra_jax.corpus", f"--output_dir={output}", f"--cache_dir={cache}",
               "--offline", "--sources=postgresql-doc-15,perl-doc,bash-doc", f"--vocab={uncased_vocab}",
               f"--glue_dir={tmp_path / 'glue'}", "--min_document_chars=1", "--num_train_files=2",
               "--heldout_fraction=0.3", f"--stats={stats_path}"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    # Hand-derived documents: a.html (its copy is dropped as a duplicate, and the GLUE sentence "It never moves
    # them." is removed), b.html, the one POD file (perltoc.pod is excluded), the two info nodes.
    expected = [
        ["The cp command copies files.", "Each item is read as a sentence.",
         "Entities such as <tags> & accents café are decoded.", "A line break starts a new paragraph.",
         "After the sidebar comes prose."],
        ["Vacuum reclaims the storage that is occupied by dead tuples."],
        pod.pod_to_sentences(POD_SAMPLE),
        *info.info_documents(INFO_SAMPLE),
    ]
    train = [doc for shard in sorted((output / "train").glob("train_*.txt")) for doc in _read_documents(shard)]
    heldout = _read_documents(output / "heldout" / "heldout.txt")
    assert len(list((output / "train").glob("train_*.txt"))) == 2
    assert sorted(train + heldout) == sorted(expected)  # every document once, in exactly one split

    stats = json.loads(stats_path.read_text())
    assert stats == json.loads((output / "corpus_stats.json").read_text())
    by_name = {entry["name"]: entry for entry in stats["sources"]}
    assert set(by_name) == {"postgresql-doc-15", "perl-doc", "bash-doc"}
    pg_stats = by_name["postgresql-doc-15"]
    assert (pg_stats["version"], pg_stats["licence"]) == ("15.1-1", "PostgreSQL")
    assert pg_stats["deb_sha256"] == hashlib.sha256(b"fake postgresql-doc-15").hexdigest()
    assert pg_stats["removed"]["duplicate_documents"] == 1 and pg_stats["removed"]["glue_sentences"] == 1
    assert by_name["bash-doc"]["train"]["documents"] + by_name["bash-doc"]["heldout"]["documents"] == 2
    for split, docs in (("train", train), ("heldout", heldout)):
        assert stats["totals"][split]["documents"] == len(docs)
        assert stats["totals"][split]["sentences"] == sum(len(d) for d in docs)
        assert stats["totals"][split]["characters"] == sum(len(s) for d in docs for s in d)

    table = subprocess.run([sys.executable, "-m", "electra_jax.corpus", f"--table={stats_path}"], cwd=REPO,
                           capture_output=True, text=True, timeout=120).stdout.splitlines()
    assert len(table) == 2 + 3 + 1  # header, separator, a row per source, the total
    assert table[-1].startswith("| **total** |") and f"| {stats['totals']['train']['tokens']:,} |" in table[-1]

    # Token counts against HF transformers' BERT tokenizer on the written lines.
    transformers = pytest.importorskip("transformers")
    bert = transformers.BertTokenizer.from_pretrained(str(uncased_vocab.parent))
    for split, docs in (("train", train), ("heldout", heldout)):
        assert stats["totals"][split]["tokens"] == sum(len(bert.tokenize(s)) for d in docs for s in d)


def test_command_names_a_missing_package_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "electra_jax.corpus", f"--output_dir={tmp_path / 'out'}",
                           f"--cache_dir={tmp_path / 'empty'}", "--offline", "--sources=gcide", "--vocab=",
                           "--glue_dir="], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "corpus: cannot fetch Debian package 'dict-gcide'" in done.stderr and "Traceback" not in done.stderr
