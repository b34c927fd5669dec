"""Wikipedia readers: ``wikitext_to_text``, the ``mediawiki-xml`` dump streamer and ``wikipedia`` Parquet.

The XML fixtures are generated here (siteinfo, an article with templates/refs/a table/category and interlanguage
links, redirects, a talk page, empty and deleted revisions; plain and bz2); the real-data test reads
``wikipedia.parquet`` through the ``real_data`` fixture.
"""

from __future__ import annotations

import bz2
import collections
import gzip
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from xml.sax.saxutils import escape

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.errors import InputError, SchemaError
from curate.recipe import SourceConfig
from curate.sources.base import READERS
from curate.sources.wiki import (
    LICENSE,
    is_redirect,
    lang_from_dbname,
    read_mediawiki_xml,
    read_wikipedia,
    wikitext_to_text,
)
from tests.sources._read import read_file, src_config

ARTICLE = """{{Infobox Stadt
| Name = Beispielstadt
| Einwohner = 1234
}}
'''Beispielstadt''' ist eine ''kleine'' [[Stadt]] in [[Deutschland|Süddeutschland]].<ref>{{cite web\
|url=http://x.org|title=Quelle}}</ref> Sie liegt am [[Fluss]].<ref name="b" />
[[Datei:Wappen.png|mini|Das [[Wappen]] der Stadt]]
[[File:Map.svg|thumb|Karte]]

== Geschichte ==
Die Stadt wurde 1200 gegründet.&nbsp;Mehr auf [http://example.org der Website].
<!-- versteckter Kommentar -->


=== Neuzeit ===
{| class="wikitable"
|-
! Jahr !! Einwohner
|-
| 1900 || 500
|}
Heute wohnen hier 1234 Menschen.
__NOTOC__
[[Kategorie:Ort in Bayern]]
[[Category:Towns]]
[[en:Example Town]]
[[zh-yue:例子]]
"""

ARTICLE_TEXT = ("Beispielstadt ist eine kleine Stadt in Süddeutschland. Sie liegt am Fluss.\n\n"
                "Geschichte\n\n"
                "Die Stadt wurde 1200 gegründet.\xa0Mehr auf der Website.\n\n"
                "Neuzeit\n\n"
                "Heute wohnen hier 1234 Menschen.")

NS = "http://www.mediawiki.org/xml/export-0.10/"


def _page(title: str, pid: int, text: str | None, *, ns: int | None = 0, redirect: str | None = None,
          rev: int = 1000, deleted: bool = False, revisions: int = 1) -> str:
    parts = [f"  <page>\n    <title>{escape(title)}</title>\n"]
    if ns is not None:
        parts.append(f"    <ns>{ns}</ns>\n")
    parts.append(f"    <id>{pid}</id>\n")
    if redirect:
        parts.append(f'    <redirect title="{escape(redirect)}" />\n')
    for r in range(revisions):
        last = r == revisions - 1
        body = (' deleted="deleted" />' if deleted else
                f' xml:space="preserve">{escape(text if last else "old revision")}</text>' if text is not None
                else ' bytes="0" />')
        parts.append(f"    <revision>\n      <id>{rev + r}</id>\n      <timestamp>2020-01-0{r + 1}T00:00:00Z"
                     f"</timestamp>\n      <model>wikitext</model>\n      <text{body}\n    </revision>\n")
    parts.append("  </page>\n")
    return "".join(parts)


def _dump(pages: list[str], *, ns_uri: str = NS, dbname: str | None = "dewiki",
          base: str | None = "https://de.wikipedia.org/wiki/Wikipedia:Hauptseite", namespaces: bool = True) -> str:
    site = ["  <siteinfo>\n    <sitename>Wikipedia</sitename>\n"]
    if dbname:
        site.append(f"    <dbname>{dbname}</dbname>\n")
    if base:
        site.append(f"    <base>{base}</base>\n")
    if namespaces:
        site.append('    <namespaces>\n      <namespace key="-2" case="first-letter">Medium</namespace>\n'
                    '      <namespace key="0" case="first-letter" />\n'
                    '      <namespace key="1" case="first-letter">Diskussion</namespace>\n'
                    '      <namespace key="6" case="first-letter">Datei</namespace>\n'
                    '      <namespace key="14" case="first-letter">Kategorie</namespace>\n    </namespaces>\n')
    site.append("  </siteinfo>\n")
    return (f'<mediawiki xmlns="{ns_uri}" version="0.10" xml:lang="de">\n' + "".join(site) + "".join(pages)
            + "</mediawiki>\n")


PAGES = [
    _page("Beispielstadt", 101, ARTICLE, revisions=2),
    _page("Altname", 102, "#WEITERLEITUNG [[Beispielstadt]]", redirect="Beispielstadt"),
    _page("Umleitung", 103, "#weiterleitung [[Beispielstadt]]"),  # no <redirect> element
    _page("Diskussion:Beispielstadt", 104, "Ein Beitrag. ~~~~", ns=1),
    _page("Leer", 105, None),
    _page("Gelöscht", 106, None, deleted=True),
    _page("Nur Vorlage", 107, "{{Begriffsklärung}}"),
    _page("Zweite Seite", 108, "Ein [[Satz]] mit '''Fett'''."),
]


def _src(fmt: str, **kw) -> SourceConfig:
    return src_config(fmt, **kw)


def _read(reader, path: Path, fmt: str, **kw):
    kw.setdefault("pid", 2)
    return read_file(reader, path, fmt, source="wiki", subset="", **kw)


def test_readers_are_registered():
    assert READERS["wikipedia"] is read_wikipedia
    assert READERS["mediawiki-xml"] is read_mediawiki_xml


# ---------------------------------------------------------------------------- wikitext_to_text
def test_wikitext_to_text_article():
    assert wikitext_to_text(ARTICLE) == ARTICLE_TEXT


@pytest.mark.parametrize(("wikitext", "text"), [
    ("a {{lang|fr|b}} c", "a c"),
    ("x<ref>r</ref><ref name=n/> y", "x y"),
    ("[[Paris]] and [[Paris (France)|the city]]", "Paris and the city"),
    ("[[:Category:Towns]] is a link", "Category:Towns is a link"),
    ("[[Image:a.png|thumb|A [[cat]]]]Text", "Text"),
    ("[[Kategorie:X]][[fr:Ville]][[simple:Town]]Text", "Text"),
    ("[[wikt:word|word]]", "word"),
    ("'''''both''''' and ''it''", "both and it"),
    ("a &amp; b &lt;c&gt;", "a & b <c>"),
    ("[http://x.org] [http://y.org label] http://z.org", "label http://z.org"),
    ("==Head==\ntext", "Head\n\ntext"),
    ("one\n\n\n\n\ntwo", "one\n\ntwo"),
    ("* item one\n* item two", "item one\nitem two"),
    ("line<br/>break", "line\nbreak"),
    ("__TOC__ text", "text"),
    ("{|\n| cell\n|}\nafter", "after"),
    ("{{only a template}}", ""),
    ("<math>x^2</math>", "x^2"),
])
def test_wikitext_to_text_cases(wikitext, text):
    assert wikitext_to_text(wikitext) == text


def test_wikitext_to_text_pure_python_tokenizer(monkeypatch):
    """Without mwparserfromhell's C extension the pure-Python tokenizer gives the same text."""
    from curate.sources import wiki

    monkeypatch.setattr(wiki, "CTokenizer", None)
    assert wikitext_to_text(ARTICLE) == ARTICLE_TEXT


def test_wikitext_to_text_custom_prefixes():
    assert wikitext_to_text("[[Plik:x.png|y]]z", drop_prefixes=frozenset({"plik"})) == "z"
    assert wikitext_to_text("[[Foo:bar]]", drop_prefixes=frozenset()) == "Foo:bar"


@pytest.mark.parametrize(("text", "expected"), [
    ("#REDIRECT [[X]]", True), ("#redirect[[X]]", True), ("  # Redirect [[X]]", True),
    ("#WEITERLEITUNG [[X]]", True), ("#REDIRECTION [[X]]", True), ("#перенаправление [[X]]", True),
    ("#重定向 [[X]]", True), ("Redirect is a word", False), ("#REDIRECTED lines", False), ("", False),
    (None, False),
])
def test_is_redirect(text, expected):
    assert is_redirect(text) is expected


@pytest.mark.parametrize(("dbname", "expected"), [
    ("enwiki", ("en", "wiki")), ("dewiki", ("de", "wiki")), ("zh_yuewiki", ("zh-yue", "wiki")),
    ("dewiktionary", ("de", "wiktionary")), ("bewikisource", ("be", "wikisource")), ("wikidata", (None, None)),
])
def test_lang_from_dbname(dbname, expected):
    assert lang_from_dbname(dbname) == expected


# ---------------------------------------------------------------------------- mediawiki-xml
def _check_dump(docs: pa.Table, quar: pa.Table, *, pid: int = 2) -> None:
    rows = docs.to_pylist()
    assert [r["native_id"] for r in rows] == ["101", "108"]
    assert [r["uid"] for r in rows] == [(pid << 32) | 0, (pid << 32) | 7]
    first = rows[0]
    assert first["text"] == ARTICLE_TEXT
    assert first["doc_id"] == "wiki:101"
    assert first["url"] == "https://de.wikipedia.org/wiki/Beispielstadt"
    assert first["lang"] == "de"
    assert first["license"] == LICENSE == "CC-BY-SA-4.0"
    assert first["nbytes"] == len(ARTICLE_TEXT.encode("utf-8"))
    assert json.loads(first["meta"]) == {"title": "Beispielstadt", "url": first["url"], "revision_id": "1001",
                                         "timestamp": "2020-01-02T00:00:00Z"}
    assert rows[1]["text"] == "Ein Satz mit Fett."
    assert rows[1]["url"] == "https://de.wikipedia.org/wiki/Zweite_Seite"
    assert [(q["row"], q["reason"]) for q in quar.to_pylist()] == [
        (1, "redirect"), (2, "redirect"), (3, "non_article_namespace"), (4, "empty_text"), (5, "null_text"),
        (6, "empty_text")]
    assert {q["file"] for q in quar.to_pylist()} == {q["file"] for q in quar.to_pylist()[:1]}


def test_mediawiki_xml_plain_and_bz2(tmp_path):
    xml = _dump(PAGES)
    plain = tmp_path / "dewiki-20200101-pages-articles.xml"
    plain.write_text(xml, encoding="utf-8")
    packed = tmp_path / "dump.xml.bz2"  # no language in the name: it comes from <dbname>
    packed.write_bytes(bz2.compress(xml.encode("utf-8")))
    for path in (plain, packed):
        batches, docs, quar = _read(read_mediawiki_xml, path, "mediawiki-xml")
        assert sum(b.records for b in batches) == len(PAGES)
        _check_dump(docs, quar)
        assert quar.column("file").to_pylist()[0] == str(path)


def test_mediawiki_xml_batches_of_batch_rows(tmp_path):
    path = tmp_path / "dewiki.xml"
    path.write_text(_dump(PAGES), encoding="utf-8")
    batches, docs, quar = _read(read_mediawiki_xml, path, "mediawiki-xml", batch_rows=3, pid=9)
    assert [b.records for b in batches] == [3, 3, 2]
    _check_dump(docs, quar, pid=9)


def test_mediawiki_xml_old_schema_without_ns_and_dbname(tmp_path):
    """export-0.3 has no <ns>: the namespace comes from the title prefix; lang from the file name."""
    pages = [_page("Diskussion:Foo", 1, "talk", ns=None), _page("Foo", 2, "Foo is [[bar]].", ns=None)]
    path = tmp_path / "bgwiki-latest-pages-articles.xml"
    path.write_text(_dump(pages, ns_uri="http://www.mediawiki.org/xml/export-0.3/", dbname=None, base=None),
                    encoding="utf-8")
    _, docs, quar = _read(read_mediawiki_xml, path, "mediawiki-xml")
    assert docs.column("text").to_pylist() == ["Foo is bar."]
    assert docs.column("lang").to_pylist() == ["bg"]
    assert docs.column("url").to_pylist() == ["https://bg.wikipedia.org/wiki/Foo"]
    assert quar.column("reason").to_pylist() == ["non_article_namespace"]
    # without a dbname, the <base> url tells the language
    other = tmp_path / "dump.xml"
    other.write_text(_dump(pages, dbname=None, base="https://fr.wikipedia.org/wiki/Accueil"), encoding="utf-8")
    _, docs, _ = _read(read_mediawiki_xml, other, "mediawiki-xml")
    assert docs.column("url").to_pylist() == ["https://fr.wikipedia.org/wiki/Foo"]
    assert docs.column("lang").to_pylist() == ["fr"]


def test_mediawiki_xml_on_error_raises_for_bad_text_but_not_for_redirects(tmp_path):
    ok = tmp_path / "dewiki-ok.xml"
    ok.write_text(_dump(PAGES[:4] + PAGES[7:]), encoding="utf-8")
    _, docs, quar = _read(read_mediawiki_xml, ok, "mediawiki-xml", on_error="error")
    assert docs.num_rows == 2 and quar.num_rows == 3
    bad = tmp_path / "dewiki-bad.xml"
    bad.write_text(_dump(PAGES), encoding="utf-8")
    with pytest.raises(InputError, match="empty_text") as err:
        _read(read_mediawiki_xml, bad, "mediawiki-xml", on_error="error")
    assert err.value.row == 4 and err.value.file == str(bad)


def test_mediawiki_xml_parser_error_quarantines_the_page(tmp_path, monkeypatch):
    from mwparserfromhell.parser import ParserError

    from curate.sources import wiki

    real = wiki._tokenize

    def flaky(text):
        if "Satz" in text:
            raise ParserError("_handle_token() got unexpected Foo")
        return real(text)

    monkeypatch.setattr(wiki, "_tokenize", flaky)
    path = tmp_path / "dewiki.xml"
    path.write_text(_dump(PAGES), encoding="utf-8")
    _, docs, quar = _read(read_mediawiki_xml, path, "mediawiki-xml")
    assert docs.column("native_id").to_pylist() == ["101"]
    q = quar.to_pylist()[-1]
    assert (q["row"], q["reason"]) == (7, "wikitext_parse_error")


def test_mediawiki_xml_truncated_gzip(tmp_path):
    data = gzip.compress(_dump(PAGES * 200).encode("utf-8"))
    path = tmp_path / "dewiki.xml.gz"
    path.write_bytes(data[: len(data) // 2])
    batches, docs, quar = _read(read_mediawiki_xml, path, "mediawiki-xml", batch_rows=100)
    last = quar.to_pylist()[-1]
    assert last["reason"] == "truncated_file" and last["file"] == str(path)
    read = sum(b.records for b in batches) - 1  # pages read before the break
    assert 0 < read < len(PAGES) * 200
    assert last["row"] == read
    assert docs.num_rows == sum(1 for i in range(read) if i % len(PAGES) in (0, 7))
    clean_data = gzip.compress(_dump((PAGES[:4] + PAGES[7:]) * 300).encode("utf-8"))
    clean = tmp_path / "dewiki-clean.xml.gz"  # no page that is bad under on_error: error before the break
    clean.write_bytes(clean_data[: len(clean_data) // 2])
    with pytest.raises(InputError, match="truncated_file") as err:
        _read(read_mediawiki_xml, clean, "mediawiki-xml", on_error="error")
    assert err.value.file == str(clean)


def test_mediawiki_xml_malformed_xml(tmp_path):
    path = tmp_path / "dewiki.xml"
    path.write_text(_dump(PAGES).replace("<title>Zweite Seite</title>", "<title>Zweite Seite</titel>"),
                    encoding="utf-8")
    batches, docs, quar = _read(read_mediawiki_xml, path, "mediawiki-xml")
    assert sum(b.records for b in batches) == len(PAGES)  # 7 pages read, 1 record for the broken rest
    assert docs.column("native_id").to_pylist() == ["101"]
    last = quar.to_pylist()[-1]
    assert (last["reason"], last["row"]) == ("malformed_xml", 7)
    assert re.search(r"line \d+", last["detail"])
    clean = tmp_path / "dewiki-clean.xml"  # only pages that are fine under on_error: error before the break
    clean.write_text(_dump(PAGES[:4] + PAGES[7:]).replace("</titel>", "").replace(
        "<title>Zweite Seite</title>", "<title>Zweite Seite</titel>"), encoding="utf-8")
    with pytest.raises(InputError, match=r"line \d+") as err:
        _read(read_mediawiki_xml, clean, "mediawiki-xml", on_error="error")
    assert err.value.file == str(clean) and err.value.line is not None


def test_mediawiki_xml_empty_file_is_zero_records(tmp_path):
    path = tmp_path / "dewiki.xml"
    path.write_bytes(b"")
    assert _read(read_mediawiki_xml, path, "mediawiki-xml")[0] == []


def test_mediawiki_xml_streams_without_keeping_pages(tmp_path, monkeypatch):
    """The parse tree is cleared after every page: the root holds no finished page while reading."""
    path = tmp_path / "enwiki.xml"
    path.write_text(_dump([_page(f"P{i}", i, f"Text {i}." * 50) for i in range(1, 201)], dbname="enwiki"),
                    encoding="utf-8")
    held: list[int] = []

    class Spy(ET.XMLPullParser):
        root = None

        def read_events(self):
            for event, elem in super().read_events():
                self.root = elem if self.root is None else self.root
                if event == "start" and elem.tag.endswith("}page"):
                    held.append(len(self.root))
                yield event, elem

    monkeypatch.setattr(ET, "XMLPullParser", Spy)
    _, docs, _ = _read(read_mediawiki_xml, path, "mediawiki-xml", batch_rows=7)
    assert docs.num_rows == 200
    assert set(docs.column("lang").to_pylist()) == {"en"}
    assert len(held) == 200
    assert max(held) <= 1  # only the page being parsed hangs under the root


# ---------------------------------------------------------------------------- wikipedia Parquet
def _wiki_table(**over) -> pa.Table:
    data = {
        "id": ["1", "2", "3", "4", "", "6"],
        "url": ["https://en.wikipedia.org/wiki/A", "https://de.wikipedia.org/wiki/B",
                "https://ko.wikipedia.org/wiki/C", "https://zh-yue.wikipedia.org/wiki/D",
                "https://vi.wikipedia.org/wiki/E", "https://example.org/F"],
        "title": ["A", "B", "C", "D", "E", "F \"quoted\""],
        "text": ["Alpha.", None, "", "   \n", "Epsilon.", "Phi."],
    }
    data.update(over)
    return pa.table(data)


def test_wikipedia_parquet_rows(tmp_path):
    path = tmp_path / "wiki.parquet"
    pq.write_table(_wiki_table(), path)
    batches, docs, quar = _read(read_wikipedia, path, "wikipedia", pid=4, batch_rows=4)
    assert [b.records for b in batches] == [4, 2]
    rows = docs.to_pylist()
    assert [r["uid"] for r in rows] == [(4 << 32) | i for i in (0, 4, 5)]
    assert [r["text"] for r in rows] == ["Alpha.", "Epsilon.", "Phi."]
    assert [r["native_id"] for r in rows] == ["1", "", "6"]  # an empty id is kept; doc_id uses the text hash
    assert rows[0]["doc_id"] == "wiki:1"
    assert re.fullmatch(r"wiki:h[0-9a-f]{16}", rows[1]["doc_id"])
    assert [r["lang"] for r in rows] == ["en", "vi", None]
    assert {r["license"] for r in rows} == {"CC-BY-SA-4.0"}
    assert [json.loads(r["meta"]) for r in rows] == [{"title": "A"}, {"title": "E"}, {"title": 'F "quoted"'}]
    assert [r["nbytes"] for r in rows] == [6, 8, 4]
    assert [(q["row"], q["reason"], q["field"]) for q in quar.to_pylist()] == [
        (1, "null_text", "text"), (2, "empty_text", "text"), (3, "empty_text", "text")]


def test_wikipedia_parquet_row_groups_and_integer_ids(tmp_path):
    path = tmp_path / "wiki.parquet"
    pq.write_table(_wiki_table(id=pa.array([10, 20, 30, 40, 50, 60], pa.int64())), path, row_group_size=2)
    _, docs, quar = _read(read_wikipedia, path, "wikipedia", pid=1, row_groups=(2, 3))
    assert docs.column("native_id").to_pylist() == ["50", "60"]
    assert docs.column("uid").to_pylist() == [(1 << 32) | 0, (1 << 32) | 1]
    assert quar.num_rows == 0


def test_wikipedia_json_lines_with_invalid_utf8(tmp_path):
    path = tmp_path / "wiki.jsonl"
    rows = [json.dumps({"id": "1", "url": "https://de.wikipedia.org/wiki/A", "title": "A", "text": "Gut."}).encode(),
            b'{"id": "2", "url": "https://de.wikipedia.org/wiki/B", "title": "B", "text": "\xc3\x28"}']
    path.write_bytes(b"\n".join(rows) + b"\n")
    _, docs, quar = _read(read_wikipedia, path, "wikipedia")
    assert docs.column("text").to_pylist() == ["Gut."]
    assert docs.column("lang").to_pylist() == ["de"]
    assert [(q["row"], q["reason"]) for q in quar.to_pylist()] == [(1, "invalid_utf8")]


def test_wikipedia_parquet_missing_column(tmp_path):
    path = tmp_path / "wiki.parquet"
    pq.write_table(_wiki_table().drop(["title"]), path)
    with pytest.raises(SchemaError) as err:
        _read(read_wikipedia, path, "wikipedia")
    assert err.value.column == "title" and str(path) in str(err.value) and "['id', 'url', 'text']" in str(err.value)


def test_wikipedia_parquet_on_error_raises(tmp_path):
    path = tmp_path / "wiki.parquet"
    pq.write_table(_wiki_table(), path)
    with pytest.raises(InputError, match="null_text") as err:
        _read(read_wikipedia, path, "wikipedia", on_error="error")
    assert err.value.row == 1


@pytest.mark.real
def test_wikipedia_real(real_data):
    path = real_data / "wikipedia.parquet"
    native = pq.read_table(path)
    batches, docs, quar = _read(read_wikipedia, path, "wikipedia", batch_rows=500)
    assert sum(b.records for b in batches) == native.num_rows == 1528
    assert quar.num_rows == 0 and docs.num_rows == 1528
    assert collections.Counter(docs.column("lang").to_pylist()) == {
        "en": 383, "de": 587, "ko": 250, "vi": 226, "zh": 64, "he": 17, "bg": 1}
    # text, id and url are the native values, in order
    assert docs.column("text").to_pylist() == native.column("text").to_pylist()
    assert docs.column("native_id").to_pylist() == native.column("id").to_pylist()
    assert docs.column("url").to_pylist() == native.column("url").to_pylist()
    assert docs.column("doc_id").to_pylist() == [f"wiki:{i}" for i in native.column("id").to_pylist()]
    assert [json.loads(m)["title"] for m in docs.column("meta").to_pylist()] == native.column("title").to_pylist()
    assert docs.column("uid").to_pylist() == [(2 << 32) | i for i in range(1528)]
    assert set(docs.column("license").to_pylist()) == {"CC-BY-SA-4.0"}
    assert docs.column("nbytes").to_pylist() == [len(t.encode("utf-8")) for t in native.column("text").to_pylist()]
