"""Wikipedia sources: wikimedia/wikipedia rows (``format: wikipedia``) and MediaWiki XML dumps (``mediawiki-xml``).

wikipedia
---------
Native columns (wikimedia/wikipedia): ``id``, ``url``, ``title``, ``text`` (plain text already); all four are
required. Files may be Parquet, JSON lines or ``hf://`` datasets (read through
:func:`curate.sources.rows.read_rows`). ``lang`` comes from the url host (``https://de.wikipedia.org/...`` -> de),
since the dataset has no language column (one config per language edition).

mediawiki-xml
-------------
A MediaWiki export (``pages-articles.xml``, optionally ``.bz2``/``.gz``/``.zst`` by suffix; any export schema
version: the ``{http://www.mediawiki.org/xml/export-0.10/}`` namespace and others). The decompressed stream is
fed to ElementTree's pull parser (the one behind ``iterparse``) 64 KiB at a time and every ``<page>`` element is
cleared as soon as it is read, so memory stays at about one page however large the dump. Of a page with several
``<revision>`` elements (history dumps) the last one is used. Wikitext becomes plain text with
:func:`wikitext_to_text`.

Every ``<page>`` is one input record. Redirects (a ``<redirect>`` element, or text starting with ``#REDIRECT`` or a
localized form such as ``#WEITERLEITUNG``) and pages outside the article namespace (``<ns>`` != 0: talk, user,
template pages, ...; dumps without ``<ns>`` are matched on the title prefix against ``<siteinfo><namespaces>``) are
not documents: each becomes a quarantine record with reason ``redirect`` or ``non_article_namespace`` so that
``records == docs + quarantine``. They occur in every dump, so they are set aside even under ``on_error: error``.
A dump that breaks off (truncated or corrupt compression, XML that is not well-formed) keeps the pages before the
break plus one ``truncated_file``/``malformed_xml`` record for the rest, or raises under ``on_error: error``.

Output (``curate.schema.DOC_SCHEMA``)
------------------------------------
=========== =====================================================================================================
native_id   page id
url         wikipedia: the ``url`` column. XML: ``https://<lang>.wikipedia.org/wiki/<title with _>`` (other
            projects: their host, ``de.wiktionary.org``)
lang        wikipedia: the url host. XML: from ``<siteinfo><dbname>`` (``enwiki`` -> en, ``zh_yuewiki`` ->
            zh-yue), else the host of ``<siteinfo><base>``, else the file name
            (``dewiki-latest-pages-articles.xml.bz2`` -> de); null (and a null url) when none tells
license     ``CC-BY-SA-4.0``
meta        wikipedia: ``{"title"}``; XML: ``{"title", "url", "revision_id", "timestamp"}`` (attribution)
=========== =====================================================================================================

Records with null or empty text (for XML also: wikitext that converts to nothing) are quarantined as
``null_text``/``empty_text`` (the reason codes of :mod:`curate.sources.rawbatch`), a page whose wikitext mwparserfromhell
fails on as ``wikitext_parse_error``; ``on_error: error`` raises instead.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from mwparserfromhell.nodes import HTMLEntity
from mwparserfromhell.parser import CTokenizer, ParserError
from mwparserfromhell.parser import tokens as mwt

from curate.errors import InputError, SchemaError
from curate.recipe import SourceConfig
from curate.schema import DOC_SCHEMA
from curate.sources.base import Partition, ReadBatch, ReadContext, register
from curate.sources.arrow_utils import column, constant, json_objects, to_string
from curate.sources.assemble import make_doc_ids, uids
from curate.sources.decompress import BrokenStream, iter_decompressed
from curate.sources.rawbatch import Col, Normalized, NormContext, quarantine_from_records, quarantine_record, raise_for
from curate.sources.rows import read_rows

LICENSE = "CC-BY-SA-4.0"

#: Wikimedia project suffixes of a dbname (``enwiktionary``) and their host (``en.wiktionary.org``).
PROJECTS = {
    "wiki": "wikipedia.org", "wiktionary": "wiktionary.org", "wikibooks": "wikibooks.org",
    "wikinews": "wikinews.org", "wikiquote": "wikiquote.org", "wikisource": "wikisource.org",
    "wikiversity": "wikiversity.org", "wikivoyage": "wikivoyage.org",
}
_DBNAME = re.compile(rf"^([a-z][a-z0-9_]*?)({'|'.join(sorted(PROJECTS, key=len, reverse=True))})$")
_FILE_DBNAME = re.compile(rf"^([a-z][a-z0-9_]*?)({'|'.join(sorted(PROJECTS, key=len, reverse=True))})[-_.]")
_URL_LANG = (r"^(?:https?:)?//(?P<lang>[a-z][a-z0-9-]*)\.(?:m\.)?(?:"
             + "|".join(re.escape(h) for h in sorted(set(PROJECTS.values()))) + r")(?:[:/]|$)")

#: Link prefixes (casefolded) whose links are media or categories, not text: the canonical names and their
#: translations in the larger Wikipedias. The XML reader adds the dump's own names for namespaces -2, 6 and 14.
MEDIA_CATEGORY_PREFIXES = frozenset({
    "file", "image", "media", "category",
    "datei", "bild", "kategorie",  # de
    "fichier", "catégorie",  # fr
    "archivo", "imagen", "categoría",  # es
    "immagine", "categoria",  # it, pt
    "ficheiro", "arquivo", "imagem",  # pt
    "bestand", "afbeelding", "categorie",  # nl
    "plik", "grafika", "kategoria",  # pl
    "файл", "изображение", "категория", "медиа",  # ru, bg
    "tập tin", "hình", "thể loại",  # vi
    "파일", "분류",  # ko
    "文件", "檔案", "图像", "圖像", "分类", "分類", "媒体",  # zh
    "ファイル", "画像", "カテゴリ",  # ja
    "קובץ", "תמונה", "קטגוריה",  # he
    "ملف", "صورة", "تصنيف",  # ar
    "tiedosto", "kuva", "luokka",  # fi
    "fil", "kategori",  # sv, da, no
    "soubor", "dosya", "resim",  # cs, tr
})
#: Interlanguage link prefix (``[[de:Foo]]``): a lowercase language code, optionally with subtags (``zh-yue``,
#: ``zh-classical``, ``be-x-old``), or ``simple`` (Simple English). Interwiki prefixes such as ``wikt:`` or ``s:``
#: do not match, so those links keep their text.
_INTERLANG = re.compile(r"^(?:[a-z]{2,3}(?:-[a-z0-9]{1,10}){0,2}|simple)$")
#: Tags whose content is not running text.
_DROP_TAGS = frozenset({"ref", "references", "table", "gallery", "imagemap", "timeline", "graph", "templatedata",
                        "templatestyles", "score", "includeonly", "maplink", "mapframe", "section"})
_BLOCK_TAGS = frozenset({"p", "div", "blockquote", "poem", "center", "li", "dd", "dt", "ul", "ol", "dl", "pre"})
_LINE_BREAK_TAGS = frozenset({"br", "hr"})

_LEFTOVER_TABLE = re.compile(r"^[ \t]*\{\|.*?^[ \t]*\|\}[^\n]*", re.M | re.S)
_LEFTOVER_TABLE_LINE = re.compile(r"^[ \t]*(?:\{\||\|\}|\|-)[^\n]*$", re.M)
_MAGIC_WORD = re.compile(r"__[A-Z]+__")
_QUOTE_MARKUP = re.compile(r"'{2,}")
_SPACES = re.compile(r"[ \t]{2,}")
_LINE_EDGES = re.compile(r"[^\S\n]*\n[^\S\n]*")
_BLANK_LINES = re.compile(r"\n{3,}")

#: ``#REDIRECT`` and its localized magic words (de, fr, es, it, pt, nl, ru, pl, sv, da/no, fi, tr, vi, ja, zh, ko,
#: he, ar, bg).
_REDIRECT = re.compile(
    r"^\s*#\s*(?:REDIRECT|WEITERLEITUNG|REDIRECTION|REDIRECCI[OÓ]N|RINVIA|RIMANDA|REDIRECIONAMENTO|REDIRECIONAR"
    r"|DOORVERWIJZING|ПЕРЕНАПРАВЛЕНИЕ|ПЕРЕНАПР|PATRZ|PRZEKIERUJ|OMDIRIGERING|HENVISNING|OHJAUS|UUDELLEENOHJAUS"
    r"|YÖNLENDİRME|YÖNLENDİR|ĐỔI|転送|リダイレクト|重定向|넘겨주기|הפניה|تحويل|ПРЕНАСОЧВАНЕ|ВИЖ)(?![^\W\d_])",
    re.I,
)


# ---------------------------------------------------------------------------- wikitext -> plain text
# The text is rendered straight from mwparserfromhell's token stream (its C tokenizer) instead of from the node tree
# that ``mwparserfromhell.parse`` builds: the tree builder is pure Python and took over 90% of the parse time.
# Measured with mwparserfromhell 0.7.2: 4.6x faster on an 8.6 KB prose page with links and refs, 2.6x on a page
# dense with tables and templates. On 15,000 random markup snippets both give the same text except where a link's
# shown text is only markup (``[[A|<ref/>]]``: the tree renders "", this renders "A") and for HTML entities in
# link titles and bare urls (decoded here, kept as written by the tree renderer).


def _skip(toks: list, i: int, open_t: type, close_t: type) -> int:
    """Index after the ``close_t`` that matches an ``open_t`` just before ``i`` (the stream is well nested)."""
    depth = 0
    n = len(toks)
    while i < n:
        t = type(toks[i])
        if t is open_t:
            depth += 1
        elif t is close_t:
            if depth == 0:
                return i + 1
            depth -= 1
        i += 1
    return n


def _skip_tag_body(toks: list, i: int) -> int:
    """Index after the ``TagCloseClose`` ending a tag whose ``TagCloseOpen`` is just before ``i``."""
    depth = 0
    n = len(toks)
    while i < n:
        t = type(toks[i])
        if t is mwt.TagOpenOpen:
            depth += 1
        elif t is mwt.TagCloseSelfclose:
            depth -= 1
        elif t is mwt.TagCloseClose:
            if depth == 0:
                return i + 1
            depth -= 1
        i += 1
    return n


class _Renderer:
    """Plain text from a token list; each handler consumes one construct and returns its text."""

    def __init__(self, toks: list, drop: frozenset[str]) -> None:
        self.toks = toks
        self.n = len(toks)
        self.i = 0
        self.drop = drop

    def until(self, stops: tuple[type, ...]) -> str:
        """Render up to (not including) the next token of a ``stops`` type at this nesting level."""
        toks, n, out, text_t, handlers = self.toks, self.n, [], mwt.Text, _HANDLERS
        i = self.i
        while i < n:
            tok = toks[i]
            t = type(tok)
            if t is text_t:
                out.append(tok["text"])
                i += 1
                continue
            if t in stops:
                break
            self.i = i + 1
            handler = handlers.get(t)
            if handler is not None:
                out.append(handler(self, tok))
            i = self.i
        self.i = i
        return "".join(out)

    def expect(self, t: type) -> bool:
        i = self.i
        if i < self.n and type(self.toks[i]) is t:
            self.i = i + 1
            return True
        return False

    def template(self, _tok: Any) -> str:
        self.i = _skip(self.toks, self.i, mwt.TemplateOpen, mwt.TemplateClose)
        return ""

    def argument(self, _tok: Any) -> str:
        self.i = _skip(self.toks, self.i, mwt.ArgumentOpen, mwt.ArgumentClose)
        return ""

    def comment(self, _tok: Any) -> str:
        self.i = _skip(self.toks, self.i, mwt.CommentStart, mwt.CommentEnd)
        return ""

    def wikilink(self, _tok: Any) -> str:
        title = self.until((mwt.WikilinkSeparator, mwt.WikilinkClose)).strip()
        text = self.until((mwt.WikilinkClose,)) if self.expect(mwt.WikilinkSeparator) else ""
        self.expect(mwt.WikilinkClose)
        shown = title.lstrip(":").strip()
        if not title.startswith(":"):  # a leading colon makes [[:Category:X]] an ordinary, visible link
            prefix, sep, _ = shown.partition(":")
            prefix = prefix.strip()
            if sep and (prefix.casefold() in self.drop or _INTERLANG.match(prefix)):
                return ""
        return text if text.strip() else shown

    def external_link(self, tok: Any) -> str:
        url = self.until((mwt.ExternalLinkSeparator, mwt.ExternalLinkClose))
        title = self.until((mwt.ExternalLinkClose,)) if self.expect(mwt.ExternalLinkSeparator) else None
        self.expect(mwt.ExternalLinkClose)
        if title is not None:
            return title
        return "" if tok.get("brackets") else url  # [http://x] renders as a footnote number; a bare url is text

    def entity(self, _tok: Any) -> str:
        toks = self.toks
        numeric = self.expect(mwt.HTMLEntityNumeric)
        hexa = numeric and self.expect(mwt.HTMLEntityHex)
        value = toks[self.i]["text"] if self.i < len(toks) and type(toks[self.i]) is mwt.Text else ""
        self.i = _skip(toks, self.i, mwt.HTMLEntityStart, mwt.HTMLEntityEnd)
        try:
            return HTMLEntity(value, named=not numeric, hexadecimal=bool(hexa)).normalize()
        except ValueError:
            return ""

    def heading(self, _tok: Any) -> str:
        title = self.until((mwt.HeadingEnd,))
        self.expect(mwt.HeadingEnd)
        return f"\n\n{title}\n\n"

    def tag(self, tok: Any) -> str:
        name = self.until((mwt.TagAttrStart, mwt.TagCloseOpen, mwt.TagCloseSelfclose)).strip().lower()
        while self.expect(mwt.TagAttrStart):  # attributes are not text
            self.until((mwt.TagAttrStart, mwt.TagCloseOpen, mwt.TagCloseSelfclose))
        if self.expect(mwt.TagCloseSelfclose):
            contents = None
        else:
            self.expect(mwt.TagCloseOpen)
            if name in _DROP_TAGS:
                self.i = _skip_tag_body(self.toks, self.i)
                return ""
            contents = self.until((mwt.TagOpenClose,))
            self.expect(mwt.TagOpenClose)
            self.until((mwt.TagCloseClose,))  # the closing tag's name
            self.expect(mwt.TagCloseClose)
        if name in _DROP_TAGS:
            return ""
        if name in _LINE_BREAK_TAGS:
            return "\n"
        if name in _BLOCK_TAGS and tok.get("wiki_markup") is None:
            return f"\n{contents or ''}\n"
        return contents or ""


_HANDLERS: dict[type, Any] = {
    mwt.TemplateOpen: _Renderer.template,
    mwt.ArgumentOpen: _Renderer.argument,
    mwt.CommentStart: _Renderer.comment,
    mwt.WikilinkOpen: _Renderer.wikilink,
    mwt.ExternalLinkOpen: _Renderer.external_link,
    mwt.HTMLEntityStart: _Renderer.entity,
    mwt.HeadingStart: _Renderer.heading,
    mwt.TagOpenOpen: _Renderer.tag,
}


def _tokenize(wikitext: str) -> list:
    # A tokenizer must not be shared between threads; making one costs about a microsecond.
    if CTokenizer is not None:
        return CTokenizer().tokenize(wikitext, 0, False)
    from mwparserfromhell.parser.tokenizer import Tokenizer

    return Tokenizer().tokenize(wikitext, 0, False)


def wikitext_to_text(wikitext: str, *, drop_prefixes: frozenset[str] | None = None) -> str:
    """Convert MediaWiki wikitext to plain text.

    Templates, ``<ref>`` tags, tables, galleries and comments are removed; ``[[File:...]]``, ``[[Image:...]]``,
    ``[[Category:...]]`` (and their localized names) and interlanguage links (``[[de:Foo]]``) are removed; other
    links keep their shown text; headings stand on their own line; bold/italic quote markup, magic words
    (``__TOC__``) and table markup that the parser could not match are stripped; lines are trimmed and runs of
    blank lines collapse to one.

    Parameters
    ----------
    wikitext
        The page source.
    drop_prefixes
        Casefolded link prefixes whose links are dropped; default :data:`MEDIA_CATEGORY_PREFIXES`.

    Returns
    -------
    str
        The plain text ("" when nothing is left).

    Examples
    --------
    >>> wikitext_to_text("'''Paris''' is the [[capital city|capital]] of [[France]].{{citation needed}}"
    ...                  "<ref>Atlas</ref>\\n== History ==\\n[[Category:Cities]]")
    'Paris is the capital of France.\\n\\nHistory'
    """
    drop = MEDIA_CATEGORY_PREFIXES if drop_prefixes is None else drop_prefixes
    text = _Renderer(_tokenize(wikitext), drop).until(())
    text = _LEFTOVER_TABLE.sub("", text)
    text = _LEFTOVER_TABLE_LINE.sub("", text)
    text = _MAGIC_WORD.sub("", text)
    text = _QUOTE_MARKUP.sub("", text)
    text = _LINE_EDGES.sub("\n", _SPACES.sub(" ", text))
    return _BLANK_LINES.sub("\n\n", text).strip()


def is_redirect(wikitext: str | None) -> bool:
    """True when ``wikitext`` starts with ``#REDIRECT`` or a localized redirect magic word (``#WEITERLEITUNG``)."""
    return bool(wikitext) and _REDIRECT.match(wikitext) is not None


def lang_from_dbname(name: str) -> tuple[str | None, str | None]:
    """Split a dbname (``enwiki``, ``zh_yuewiki``, ``dewiktionary``) into ``(lang, project)``; Nones if it is none."""
    m = _DBNAME.match(name)
    if m is None:
        return None, None
    return m.group(1).replace("_", "-"), m.group(2)


# ---------------------------------------------------------------------------- wikimedia/wikipedia
WIKIPEDIA_COLUMNS = [
    Col("id", required=True),
    Col("url", required=True),
    Col("title", required=True),
    Col("text", "text", required=True),
]


def normalize_wikipedia(t: pa.Table, nctx: NormContext) -> Normalized:
    """Map wikimedia/wikipedia columns to document columns; ``lang`` from the url host (vectorized)."""
    url = to_string(column(t, "url"))
    return Normalized(
        text=column(t, "text"),
        text_field="text",
        native_id=column(t, "id"),
        url=url,
        lang=pc.struct_field(pc.extract_regex(url, _URL_LANG), "lang"),
        license=LICENSE,
        meta=json_objects({"title": column(t, "title")}),
    )


@register("wikipedia", row_groups=True)
def read_wikipedia(part: Partition, src: SourceConfig, ctx: ReadContext) -> Iterator[ReadBatch]:
    """Read wikimedia/wikipedia files (Parquet, JSON lines or ``hf://``); see the module docstring.

    Parameters
    ----------
    part, src, ctx
        The reader contract's arguments (:mod:`curate.sources.base`); ``ctx.batch_rows`` rows per batch.

    Yields
    ------
    ReadBatch
        One per batch of rows.

    Raises
    ------
    SchemaError
        ``id``, ``url``, ``title`` or ``text`` is missing, or ``text`` is not a string column.
    InputError
        The file is unreadable, or a row is bad and ``on_error: error``.
    """
    yield from read_rows(part, src, ctx, columns=WIKIPEDIA_COLUMNS, text_col="text", normalize=normalize_wikipedia)


# ---------------------------------------------------------------------------- MediaWiki XML
def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _child_text(elem: ET.Element, name: str) -> str | None:
    for child in elem:
        if _local(child.tag) == name:
            return child.text
    return None


class _Site:
    """What ``<siteinfo>`` (or the file name) tells about the wiki: language, url prefix, namespace names."""

    def __init__(self, path: str) -> None:
        m = _FILE_DBNAME.match(os.path.basename(path))
        self.lang, self.project = (m.group(1).replace("_", "-"), m.group(2)) if m else (None, None)
        self.host = f"{self.lang}.{PROJECTS[self.project]}" if m else None
        self.namespaces: dict[str, int] = {}  # casefolded name -> key, for dumps without <ns>
        self.drop_prefixes = MEDIA_CATEGORY_PREFIXES

    def read(self, siteinfo: ET.Element) -> None:
        dbname = _child_text(siteinfo, "dbname")
        lang, project = lang_from_dbname(dbname.strip()) if dbname else (None, None)
        base = (_child_text(siteinfo, "base") or "").strip()
        if lang is not None:
            self.lang, self.project = lang, project
            self.host = f"{lang}.{PROJECTS[project]}"
        elif base:
            self.host = urlparse(base).netloc or self.host
            m = re.match(_URL_LANG, f"//{self.host}")
            self.lang = m.group("lang") if m else self.lang
        extra = set()
        for child in siteinfo:
            if _local(child.tag) != "namespaces":
                continue
            for ns in child:
                key = int(ns.get("key", "0"))
                name = (ns.text or "").strip()
                if name and key != 0:
                    self.namespaces[name.casefold()] = key
                    if key in (-2, 6, 14):
                        extra.add(name.casefold())
        self.drop_prefixes = MEDIA_CATEGORY_PREFIXES | extra

    def url(self, title: str) -> str | None:
        return f"https://{self.host}/wiki/{title.replace(' ', '_')}" if self.host else None

    def namespace_of(self, title: str) -> int:
        prefix, sep, _ = title.partition(":")
        return self.namespaces.get(prefix.strip().casefold(), 0) if sep else 0


def _read_page(page: ET.Element) -> dict[str, Any]:
    info: dict[str, Any] = {"title": None, "ns": None, "id": None, "redirect": False, "revision_id": None,
                            "timestamp": None, "text": None, "has_text": False}
    for child in page:
        name = _local(child.tag)
        if name == "title":
            info["title"] = (child.text or "").strip()
        elif name == "ns":
            info["ns"] = (child.text or "").strip()
        elif name == "id":
            info["id"] = (child.text or "").strip()
        elif name == "redirect":
            info["redirect"] = True
        elif name == "revision":  # the last revision wins (history dumps list them oldest first)
            info["revision_id"] = info["timestamp"] = info["text"] = None
            info["has_text"] = False
            for field in child:
                fname = _local(field.tag)
                if fname == "id":
                    info["revision_id"] = (field.text or "").strip()
                elif fname == "timestamp":
                    info["timestamp"] = (field.text or "").strip()
                elif fname == "text":
                    info["has_text"] = field.get("deleted") is None
                    info["text"] = field.text if info["has_text"] else None
                    if info["has_text"] and info["text"] is None:
                        info["text"] = ""  # <text bytes="0" /> is an empty revision
    return info


class _Pending:
    """Pages of the batch being built: documents as column lists, skipped pages as quarantine records."""

    def __init__(self) -> None:
        self.records = 0
        self.index: list[int] = []
        self.native_id: list[str | None] = []
        self.text: list[str] = []
        self.url: list[str | None] = []
        self.lang: list[str | None] = []
        self.title: list[str] = []
        self.revision_id: list[str | None] = []
        self.timestamp: list[str | None] = []
        self.quarantine: list[dict[str, Any]] = []

    def batch(self, part: Partition) -> ReadBatch:
        n = len(self.index)
        text = pa.array(self.text, pa.large_string())
        native = pa.array(self.native_id, pa.string())
        url = pa.array(self.url, pa.string())
        docs = pa.Table.from_arrays([
            uids(part.pid, np.asarray(self.index, dtype=np.int64)),
            make_doc_ids(part.source, native, text),
            native,
            constant(n, part.source),
            constant(n, part.subset),
            text,
            url,
            pa.array(self.lang, pa.string()),
            constant(n, LICENSE),
            json_objects({"title": pa.array(self.title, pa.string()), "url": url,
                          "revision_id": pa.array(self.revision_id, pa.string()),
                          "timestamp": pa.array(self.timestamp, pa.string())}),
            pc.cast(pc.binary_length(text), pa.int64()),
        ], schema=DOC_SCHEMA)
        return ReadBatch(docs=docs, quarantine=quarantine_from_records(self.quarantine), records=self.records)


def _add_page(part: Partition, src: SourceConfig, site: _Site, page: dict[str, Any], index: int,
              pending: _Pending) -> None:
    """Convert one page to a document or a quarantine record (raising for bad text under ``on_error: error``)."""
    pending.records += 1
    title = page["title"] or ""
    raw = page["text"]
    nbytes = len(raw.encode("utf-8")) if raw else 0
    where = f"page {page['id']} {title!r}"
    try:
        ns = int(page["ns"]) if page["ns"] not in (None, "") else site.namespace_of(title)
    except ValueError:
        ns = site.namespace_of(title)
    rec = None
    if ns != 0:  # expected in every dump: never an error
        pending.quarantine.append(quarantine_record(part, row=index, field="ns", reason="non_article_namespace",
                                                    msg=f"{where} is in namespace {ns}", nbytes=nbytes))
        return
    if page["redirect"] or is_redirect(raw):
        pending.quarantine.append(quarantine_record(part, row=index, field="redirect", reason="redirect",
                                                    msg=f"{where} is a redirect", nbytes=nbytes))
        return
    if raw is None:
        rec = quarantine_record(part, row=index, field="text", reason="null_text",
                                msg=f"{where} has no revision text (missing or deleted)")
    else:
        try:
            text = wikitext_to_text(raw, drop_prefixes=site.drop_prefixes) if raw.strip() else ""
        except ParserError as e:  # mwparserfromhell's "internal error while parsing": this page only
            text = None
            rec = quarantine_record(part, row=index, field="text", reason="wikitext_parse_error",
                                    msg=f"{where}: mwparserfromhell could not parse the wikitext ({e})",
                                    nbytes=nbytes)
        if text == "":
            msg = f"{where} has empty wikitext" if not raw.strip() else f"{where} converts to empty text"
            rec = quarantine_record(part, row=index, field="text", reason="empty_text", msg=msg, nbytes=nbytes)
    if rec is not None:
        if src.on_error == "error":
            raise_for(rec)
        pending.quarantine.append(rec)
        return
    url = site.url(title) if title else None
    pending.index.append(index)
    pending.native_id.append(page["id"] or None)
    pending.text.append(text)
    pending.url.append(url)
    pending.lang.append(site.lang)
    pending.title.append(title)
    pending.revision_id.append(page["revision_id"])
    pending.timestamp.append(page["timestamp"])


#: Bytes handed to the XML parser at a time: events are drained after each feed, so at most this much parsed
#: XML (plus the page being read) is held, however large the decompressor's chunks are.
FEED_BYTES = 1 << 16


@register("mediawiki-xml")
def read_mediawiki_xml(part: Partition, src: SourceConfig, ctx: ReadContext) -> Iterator[ReadBatch]:
    """Stream a MediaWiki XML export dump (plain or ``.gz``/``.bz2``/``.zst``), one ``<page>`` per record.

    The decompressed bytes (:func:`curate.sources.decompress.iter_decompressed`) are fed to
    ``xml.etree.ElementTree.XMLPullParser`` (the pull parser behind ``iterparse``) in slices of
    :data:`FEED_BYTES`; each finished ``<page>`` is read and cleared from the tree at once.

    When the dump breaks off (a truncated or corrupt compressed stream, or XML that is not well-formed), the pages
    before the break are kept and one more record stands for the rest: ``truncated_file`` or ``malformed_xml``
    (row = index of the first page not read). With ``on_error: error`` an :class:`~curate.errors.InputError`
    naming the file (and line, for XML errors) is raised instead, after the complete pages were yielded. An empty
    file is zero records.

    Parameters
    ----------
    part, src, ctx
        The reader contract's arguments (:mod:`curate.sources.base`); ``ctx.batch_rows`` pages per batch.

    Yields
    ------
    ReadBatch
        One per ``ctx.batch_rows`` pages (the last may be shorter).
    """
    if src.subset_by:
        msg = ("format `mediawiki-xml` has no columns, so `subset_by` cannot be used; "
               "declare `subsets:` with paths instead")
        raise SchemaError(msg, file=part.path, column=src.subset_by)
    site = _Site(part.path)
    pending = _Pending()
    index = 0
    fed = False
    parser = ET.XMLPullParser(events=("start", "end"))
    root: ET.Element | None = None

    def drain() -> Iterator[ReadBatch]:
        nonlocal root, index, pending
        for event, elem in parser.read_events():
            if root is None:
                root = elem
            if event != "end":
                continue
            name = _local(elem.tag)
            if name == "siteinfo":
                site.read(elem)
                root.clear()
            elif name == "page":
                page = _read_page(elem)
                root.clear()  # drop the finished page (and its text) from the tree
                _add_page(part, src, site, page, index, pending)
                index += 1
                if pending.records >= ctx.batch_rows:
                    yield pending.batch(part)
                    pending = _Pending()

    broken: tuple[str, str, int | None] | None = None
    try:
        for chunk in iter_decompressed(part.path):
            for off in range(0, len(chunk), FEED_BYTES):
                parser.feed(chunk[off : off + FEED_BYTES])
                fed = True
                yield from drain()
        if fed:
            parser.close()
            yield from drain()
    except BrokenStream as e:
        broken = ("truncated_file", f"{e.message()}; the pages before it were read", None)
    except ET.ParseError as e:
        line, col = getattr(e, "position", (None, None))
        broken = ("malformed_xml", f"not well-formed XML at line {line}, column {col} ({e}); "
                                   "the pages before it were read", line)
    except OSError as e:
        msg = f"cannot read file ({e})"
        raise InputError(msg, file=part.path) from None
    if broken is not None and src.on_error == "error":
        if pending.records:
            yield pending.batch(part)
        reason, msg, line = broken
        raise InputError(f"{reason}: {msg}", file=part.path, line=line)
    if broken is not None:
        pending.records += 1
        pending.quarantine.append(quarantine_record(part, row=index, field=None, reason=broken[0], msg=broken[1]))
    if pending.records:
        yield pending.batch(part)


__all__ = ["LICENSE", "MEDIA_CATEGORY_PREFIXES", "WIKIPEDIA_COLUMNS", "is_redirect", "lang_from_dbname",
           "normalize_wikipedia", "read_mediawiki_xml", "read_wikipedia", "wikitext_to_text"]
