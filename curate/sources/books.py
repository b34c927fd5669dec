"""Book sources: PG-19 Parquet (``format: pg19``) and raw Project Gutenberg text files (``format: gutenberg-txt``).

Native schemas
--------------
``pg19`` (deepmind/pg19): ``short_book_title`` string, ``publication_date`` int32, ``url`` string, ``text`` string.
``url`` and ``text`` are required; the other two go to ``meta`` when present. PG-19 itself ships bodies with the
Project Gutenberg boilerplate already removed, but copies built from Gutenberg files (like the real-data sample) keep
it, so every row goes through :func:`strip_boilerplate`; ``meta.pg_boilerplate_stripped`` says whether anything was
removed.

``pg19`` files may be Parquet, JSON lines or ``hf://`` datasets (read through :func:`curate.sources.rows.read_rows`).

``gutenberg-txt``: one book per file (``12345-0.txt`` UTF-8, ``12345-8.txt`` ISO-8859-1, ``12345.txt`` either),
optionally ``.gz``/``.bz2``/``.zst`` compressed (by suffix). The bytes are decoded as UTF-8 (BOM dropped) and, when
that fails, as ISO-8859-1, which cannot fail; ``meta.encoding`` records which one was used. A ``-0.txt`` file is
UTF-8 by Project Gutenberg's naming, so undecodable bytes in it are damage, not Latin-1: they become U+FFFD,
``meta.encoding`` says how many, and the ingest ledger counts ``text_invalid_utf8_replaced`` (books) and
``text_invalid_utf8_sequences``, which the audit flags. CRLF line ends become LF before the boilerplate is looked
for (and the text-hygiene policy of :func:`curate.sources.assemble.clean_text` applies, as everywhere). As for format
``text``, an empty file is zero records and a truncated compressed file is one ``truncated_file`` record
(``on_error: error`` raises instead).

Output (``curate.schema.DOC_SCHEMA``)
------------------------------------
=========== =====================================================================================================
native_id   pg19: ``url``; gutenberg-txt: ``http://www.gutenberg.org/ebooks/<n>`` from the header's ebook number,
            else the file stem (``pg1342`` for ``pg1342.txt.gz``)
text        the book body between the PG header (``*** START OF THE/THIS PROJECT GUTENBERG EBOOK ...``, or the old
            ``*END*THE SMALL PRINT!`` line) and the footer (``End of the Project Gutenberg EBook of ...``,
            ``End of Project Gutenberg's ...``, ``*** END OF THE/THIS PROJECT GUTENBERG EBOOK ...``), whitespace
            trimmed; always a substring of the native text (after CRLF normalization for text files)
url         pg19 ``url``; text files: the ebook url when the number is known, else null
lang        ISO 639-1 code of the header's ``Language:`` field (English -> en, ...); null when absent or unmapped
license     ``public-domain-us``, or ``LicenseRef-PG-copyrighted`` when the header carries a copyright notice
meta        JSON: title, author, language, ebook_no, release_date, copyright_notice, pg_boilerplate_stripped
            (preceded by short_book_title, publication_date for pg19; by file, encoding for text files)
=========== =====================================================================================================

Why the copyright check reads only the header: the licence text that every PG book carries (in the footer, and in
the old "small print" header block, which is cut out before the check) talks about copyright in general; only a
notice *in the header* ("This is a COPYRIGHTED Project Gutenberg eBook", "Copyright (C) ...") marks a book that is
not public domain in the US. Measured on the 41 real books: 2 carry such a notice (#16 Peter Pan, #5200
Metamorphosis).

A row whose text is null or empty (or holds nothing but boilerplate) is quarantined (``null_text``/``empty_text``,
the reason codes of :mod:`curate.sources.rawbatch`); ``on_error: error`` raises instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.recipe import SourceConfig
from curate.sources.base import Partition, ReadBatch, ReadContext, register
from curate.sources.arrow_utils import column, constant, json_objects, non_empty
from curate.sources.assemble import assemble
from curate.sources.rawbatch import Col, Normalized, NormContext, RawBatch
from curate.sources.rows import read_one_document_file, read_rows

LICENSE_PUBLIC_DOMAIN = "public-domain-us"
LICENSE_COPYRIGHTED = "LicenseRef-PG-copyrighted"
EBOOK_URL = "http://www.gutenberg.org/ebooks/{}"

#: PG ``Language:`` header values -> ISO 639-1. Languages without a two-letter code (Old English, Middle English,
#: ...) are left out on purpose: they map to a null ``lang`` and keep their name in ``meta.language``.
PG_LANGUAGES: dict[str, str] = {
    "afrikaans": "af", "arabic": "ar", "basque": "eu", "bengali": "bn", "breton": "br", "bulgarian": "bg",
    "catalan": "ca", "chinese": "zh", "croatian": "hr", "czech": "cs", "danish": "da", "dutch": "nl",
    "english": "en", "esperanto": "eo", "estonian": "et", "finnish": "fi", "french": "fr", "frisian": "fy",
    "galician": "gl", "german": "de", "greek": "el", "modern greek": "el", "hebrew": "he", "hindi": "hi",
    "hungarian": "hu", "icelandic": "is", "indonesian": "id", "interlingua": "ia", "irish": "ga", "italian": "it",
    "japanese": "ja", "korean": "ko", "latin": "la", "latvian": "lv", "lithuanian": "lt", "norwegian": "no",
    "occitan": "oc", "persian": "fa", "polish": "pl", "portuguese": "pt", "romanian": "ro", "russian": "ru",
    "sanskrit": "sa", "scottish gaelic": "gd", "gaelic": "gd", "serbian": "sr", "slovak": "sk", "slovenian": "sl",
    "spanish": "es", "swedish": "sv", "tagalog": "tl", "turkish": "tr", "ukrainian": "uk", "welsh": "cy",
    "yiddish": "yi",
}

# ---------------------------------------------------------------------------- boilerplate patterns
# Each marker is matched against single lines found through a plain substring search ("utenberg", "SMALL PRINT"):
# a case-insensitive regex over a whole 2 MB book costs about 7 ms per pattern (0.3 s for the 41 real books), the
# substring scan well under 1 ms.
_START = re.compile(r"\*{2,}[ \t]*START[ \t]+OF[ \t]+(?:THE|THIS)[ \t]+PROJECT[ \t]+GUTENBERG", re.I)
_END = re.compile(r"\*{2,}[ \t]*END[ \t]+OF[ \t]+(?:THE|THIS)[ \t]+PROJECT[ \t]+GUTENBERG", re.I)
# "End of the Project Gutenberg EBook of X", "End of Project Gutenberg's X", "End of Project Gutenberg Etext ..."
_END_LINE = re.compile(
    r"[ \t]*End[ \t]+of[ \t]+(?:the[ \t]+)?Project[ \t]+Gutenberg(?:['\u2019]s|[ \t]+e-?(?:book|text))", re.I)
_SMALL_PRINT_START = re.compile(r"\*START\*[ \t]*THE SMALL PRINT", re.I)
_SMALL_PRINT_END = re.compile(r"\*END\*[ \t]*THE SMALL PRINT", re.I)
_SMALL_PRINT_BLOCK = re.compile(r"\*START\*[ \t]*THE SMALL PRINT.*?\*END\*[ \t]*THE SMALL PRINT[^\n]*", re.I | re.S)
_PG_NEEDLES = ("utenberg", "UTENBERG")
_SP_NEEDLES = ("SMALL PRINT", "small print", "Small Print")


def _find_line(text: str, pattern: re.Pattern[str], needles: tuple[str, ...], start: int = 0,
               stop: int | None = None, *, anchored: bool = False) -> tuple[int, int] | None:
    """``(line_start, line_end)`` of the first line in ``text[start:stop]`` holding a needle that ``pattern`` matches.

    ``anchored`` matches the pattern at the line start; otherwise anywhere in the line.
    """
    stop = len(text) if stop is None else stop
    pos = start
    while pos < stop:
        hits = [h for h in (text.find(n, pos, stop) for n in needles) if h >= 0]
        if not hits:
            return None
        hit = min(hits)
        line_start = text.rfind("\n", 0, hit) + 1
        line_end = text.find("\n", hit)
        line_end = len(text) if line_end < 0 else line_end
        line = text[line_start:line_end]
        if line_start >= start and (pattern.match(line) if anchored else pattern.search(line)):
            return line_start, line_end
        pos = line_end + 1
    return None


_EBOOK_NO = re.compile(r"\[\s*e-?(?:book|text)\s*(?:#|no\.?)\s*(\d+)\s*\]", re.I)
_EBOOK_NO_LOOSE = re.compile(r"\be-?(?:book|text)\s*(?:#|no\.)\s*(\d+)", re.I)
_COPYRIGHT = re.compile(r"\bcopyrighted\b|\bcopyright\s*(?:\(c\)|\u00a9)|\u00a9", re.I)


def _field(header: str, name: str) -> str | None:
    """Value of a ``Name: value`` header field, continuation lines (indented) joined with one space."""
    # The lookbehinds accept a field glued to the previous line's url ("...www.gutenberg.orgTitle: X", seen in #1952).
    m = re.search(rf"(?:^[ \t]*|(?<=\.org)|(?<=\.net)){name}[ \t]*:[ \t]*([^\n]*)((?:\n[ \t]+[^\s][^\n]*)*)",
                  header, re.I | re.M)
    if m is None:
        return None
    value = " ".join((m.group(1) + m.group(2)).split())
    return value or None


def language_code(language: str | None) -> str | None:
    """Map a PG ``Language:`` value to ISO 639-1 (``"English"`` -> ``"en"``); the first of several languages wins.

    Parameters
    ----------
    language
        The header value, e.g. ``"French"`` or ``"English, Latin"``.

    Returns
    -------
    str or None
        The two-letter code, or None when the value is empty or the language has no mapped code.
    """
    if not language:
        return None
    first = re.split(r"\s*(?:,|;|/|\band\b|&)\s*", language.strip(), maxsplit=1)[0]
    return PG_LANGUAGES.get(" ".join(first.lower().split()))


def parse_header(header: str) -> dict[str, Any]:
    """Parse the metadata fields of a Project Gutenberg header.

    Parameters
    ----------
    header
        The text before the ``*** START OF ...`` line.

    Returns
    -------
    dict
        ``title``, ``author``, ``language`` (as written), ``lang`` (ISO 639-1 or None), ``ebook_no`` (int or None),
        ``release_date`` (as written, without the ``[EBook #n]`` tag) and ``copyright_notice`` (bool).
    """
    release = _field(header, "Release Date")
    if release is not None:
        release = " ".join(_EBOOK_NO.sub(" ", release).split()) or None
    m = _EBOOK_NO.search(header) or _EBOOK_NO_LOOSE.search(header)
    language = _field(header, "Language")
    return {
        "title": _field(header, "Title"),
        "author": _field(header, "Author"),
        "language": language,
        "lang": language_code(language),
        "ebook_no": int(m.group(1)) if m else None,
        "release_date": release,
        "copyright_notice": bool(_COPYRIGHT.search(_SMALL_PRINT_BLOCK.sub("", header))),
    }


def strip_boilerplate(text: str) -> tuple[str, dict[str, Any]]:
    """Cut the Project Gutenberg header and licence footer off a book and parse the header.

    The header ends with the ``*** START OF THE PROJECT GUTENBERG EBOOK ...`` line (also ``***START OF THE``,
    ``*** START OF THIS``) or, in old files, the ``*END*THE SMALL PRINT! ...`` line, whichever comes last. The footer
    starts at the first of ``End of the Project Gutenberg EBook of ...`` / ``End of Project Gutenberg's ...`` /
    ``*** END OF THE/THIS PROJECT GUTENBERG EBOOK ...`` / ``*START*THE SMALL PRINT!`` after the header. Text without
    these markers is returned unchanged.

    Parameters
    ----------
    text
        The whole book as distributed by Project Gutenberg (LF line ends).

    Returns
    -------
    body : str
        The text between header and footer, surrounding whitespace trimmed; always a substring of ``text``.
    header_meta : dict
        :func:`parse_header` of the header (all None/False when there is none) plus ``pg_boilerplate_stripped``
        (True when a header or a footer was found and removed).

    Examples
    --------
    >>> body, meta = strip_boilerplate(
    ...     "Title: X\\nLanguage: French\\n\\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\\nBonjour.\\n"
    ...     "*** END OF THE PROJECT GUTENBERG EBOOK X ***\\nlicence")
    >>> body, meta["lang"], meta["pg_boilerplate_stripped"]
    ('Bonjour.', 'fr', True)
    """
    # the first footer line bounds the header search
    limit = len(text)
    for pat, anchored in ((_END, False), (_END_LINE, True)):
        m = _find_line(text, pat, _PG_NEEDLES, 0, limit, anchored=anchored)
        if m is not None:
            limit = m[0]
    header_end = 0
    start = _find_line(text, _START, _PG_NEEDLES, 0, limit)
    if start is not None:
        header_end = start[1]
    sp_end = _find_line(text, _SMALL_PRINT_END, _SP_NEEDLES, 0, limit)
    # Old files put the small print either first (then it ends the header) or last, after the body. Without a
    # footer line after it, only a small print ending in the first half of the file is taken for a header.
    if sp_end is not None and (limit < len(text) or sp_end[0] < len(text) // 2):
        header_end = max(header_end, sp_end[1])

    footer_start = len(text)
    for pat, needles, anchored in ((_END_LINE, _PG_NEEDLES, True), (_END, _PG_NEEDLES, False),
                                   (_SMALL_PRINT_START, _SP_NEEDLES, False)):
        m = _find_line(text, pat, needles, header_end, footer_start, anchored=anchored)
        if m is not None:
            footer_start = m[0]

    meta = parse_header(text[:header_end]) if header_end else {
        "title": None, "author": None, "language": None, "lang": None, "ebook_no": None, "release_date": None,
        "copyright_notice": False,
    }
    meta["pg_boilerplate_stripped"] = header_end > 0 or footer_start < len(text)
    return text[header_end:footer_start].strip(), meta


# ---------------------------------------------------------------------------- normalizing
def _normalize_books(texts: list[str | None], urls: list[str | None], *,
                     extra_meta: dict[str, pa.Array]) -> Normalized:
    """Strip and parse every book of a batch (per-book Python: the boilerplate is found by scanning each text)."""
    n = len(texts)
    bodies: list[str | None] = []
    fields: dict[str, list[Any]] = {k: [] for k in ("title", "author", "language", "ebook_no", "release_date",
                                                       "copyright_notice", "pg_boilerplate_stripped")}
    langs: list[str | None] = []
    ids: list[str | None] = []
    reject: list[str | None] = [None] * n
    detail: list[str | None] = [None] * n
    for i, raw in enumerate(texts):
        if raw is None:
            body, meta = None, dict.fromkeys(fields)
        else:
            body, meta = strip_boilerplate(raw)
            if not body and raw.strip():
                reject[i] = "empty_text"
                detail[i] = "the text holds only Project Gutenberg boilerplate (header/licence), no book body"
        bodies.append(body)
        for k in fields:
            fields[k].append(meta[k])
        langs.append(meta.get("lang"))
        ebook = meta["ebook_no"]
        ids.append(urls[i] or (EBOOK_URL.format(ebook) if ebook is not None else None))
    types = {"ebook_no": pa.int64(), "copyright_notice": pa.bool_(), "pg_boilerplate_stripped": pa.bool_()}
    meta_cols = {**extra_meta, **{k: pa.array(v, types.get(k, pa.string())) for k, v in fields.items()}}
    copyrighted = pc.fill_null(meta_cols["copyright_notice"], False)
    native = pa.array(ids, pa.string())
    return Normalized(
        text=pa.array(bodies, pa.large_string()),
        text_field="text",
        native_id=native,
        url=native,
        lang=pa.array(langs, pa.string()),
        license=pc.if_else(copyrighted, pa.scalar(LICENSE_COPYRIGHTED),
                           pa.scalar(LICENSE_PUBLIC_DOMAIN)),
        meta=json_objects(meta_cols),
        reject=pa.array(reject, pa.string()),
        reject_detail=pa.array(detail, pa.string()),
    )


# ---------------------------------------------------------------------------- pg19
PG19_COLUMNS = [
    Col("short_book_title"),
    Col("publication_date", "any", jtype=pa.int64()),
    Col("url", required=True),
    Col("text", "text", required=True),
]


def normalize_pg19(t: pa.Table, nctx: NormContext) -> Normalized:
    """Map PG-19 columns to document columns, stripping PG boilerplate (see the module docstring)."""
    url = non_empty(column(t, "url"))
    return _normalize_books(column(t, "text").to_pylist(), url.to_pylist(), extra_meta={
        "short_book_title": column(t, "short_book_title"), "publication_date": column(t, "publication_date")})


@register("pg19", row_groups=True)
def read_pg19(part: Partition, src: SourceConfig, ctx: ReadContext) -> Iterator[ReadBatch]:
    """Read deepmind/pg19 files (Parquet, JSON lines or ``hf://``); see the module docstring.

    Parameters
    ----------
    part, src, ctx
        The reader contract's arguments (:mod:`curate.sources.base`); ``ctx.batch_rows`` books per batch.

    Yields
    ------
    ReadBatch
        One per batch of books.

    Raises
    ------
    SchemaError
        ``url`` or ``text`` is missing, or ``text`` is not a string column.
    InputError
        The file is unreadable, or a book is bad and ``on_error: error``.
    """
    yield from read_rows(part, src, ctx, columns=PG19_COLUMNS, text_col="text", normalize=normalize_pg19)


# ---------------------------------------------------------------------------- gutenberg-txt
def _file_stem(path: str) -> str:
    name = os.path.basename(path)
    for ext in (".gz", ".bz2", ".zst", ".zstd", ".txt"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
    return name


@register("gutenberg-txt", one_doc=True)
def read_gutenberg_txt(part: Partition, src: SourceConfig, ctx: ReadContext) -> Iterator[ReadBatch]:
    """Read one Project Gutenberg ``.txt`` file (optionally ``.gz``/``.bz2``/``.zst``) as one document.

    An empty file (also after decompression) is zero records, as for format ``text``; a truncated compressed
    file is one ``truncated_file`` record (``on_error: error`` raises :class:`~curate.errors.InputError`
    naming the file).

    Parameters
    ----------
    part, src, ctx
        The reader contract's arguments (:mod:`curate.sources.base`); a book is one record.

    Yields
    ------
    ReadBatch
        At most one, holding the book or its quarantine record.
    """
    data = read_one_document_file(part, src, what="book")
    if isinstance(data, ReadBatch):
        yield data
        return
    if data is None:
        return
    encoding, replaced = "utf-8", 0
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        if declares_utf8(part.path):
            # a "-0.txt" book is UTF-8 by PG's naming: a stray byte is damage, not Latin-1; keep the book with
            # U+FFFD for each undecodable sequence and count them (meta.encoding, ledger counters)
            text = data.decode("utf-8-sig", "replace")
            replaced = text.count("\ufffd") - data.decode("utf-8-sig", "ignore").count("\ufffd")
            encoding = f"utf-8 ({replaced} invalid sequence(s) replaced by U+FFFD)"
        else:
            # ISO-8859-1 maps every byte, so this cannot fail; PG's "-8.txt" files are in it
            text, encoding = data.decode("latin-1"), "latin-1"
    text = text.replace("\r\n", "\n")
    table = pa.table({"text": pa.array([text], pa.large_string())})
    raw = RawBatch(table=table, rows=np.zeros(1, np.int64), ordinals=np.zeros(1, np.int64), n_records=1)
    norm = _normalize_books([text], [None], extra_meta={
        "file": constant(1, part.path), "encoding": constant(1, encoding)})
    if norm.native_id[0].as_py() is None:  # no ebook number in the header: the file stem names the book
        norm.native_id = constant(1, _file_stem(part.path))
    batch = assemble(part, src, raw, norm, first_record=0)
    if replaced:
        batch.counters["text_invalid_utf8_replaced"] = 1
        batch.counters["text_invalid_utf8_sequences"] = replaced
    yield batch


def declares_utf8(path: str) -> bool:
    """True for Project Gutenberg's UTF-8 file names: ``<n>-0.txt`` (optionally compressed)."""
    return _file_stem(path).endswith("-0")
