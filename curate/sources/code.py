"""Source code: ``the-stack-v1`` (bigcode/the-stack and its dedup/smol variants) and ``the-stack-v2``.

Both read Parquet (detected by magic bytes) or JSON lines (``.jsonl[.gz|.zst|.bz2]``) in the dataset's own
columns, and also ``hf://`` paths. ``lang`` is null for every code document: language ID is skipped for code,
the programming language is in ``meta``.

the-stack-v1
------------
Native columns: ``content``, ``hexsha``, ``size``, ``ext``, ``lang``, ``avg_line_length``, ``max_line_length``,
``alphanum_fraction`` and, for each of the variants ``max_stars``, ``max_issues`` and ``max_forks``,
``<variant>_repo_name``, ``<variant>_repo_path``, ``<variant>_repo_head_hexsha``, ``<variant>_repo_licenses``
(a list of SPDX ids) and ``<variant>_count``. Required: ``content`` and ``max_stars_repo_licenses``.

=========== ===================================================================================================
column      value
=========== ===================================================================================================
text        ``content``, unchanged
native_id   ``hexsha`` (the git blob SHA-1)
url         ``https://github.com/<repo>/blob/<head_hexsha>/<path>`` from the first variant that has all three
license     JSON list (``json.dumps`` of the sorted, de-duplicated union of the three variants' license lists),
            e.g. ``["Apache-2.0", "MIT"]``; ``[]`` when no variant lists a license. A file appears under up to
            three repositories; the license stage requires *every* id in the list to pass, so the union is the
            conservative reading.
lang        null
meta        ``{"lang", "ext", "size", "repo", "path", "stars", "licenses": {"max_stars": [...],
            "max_issues": [...], "max_forks": [...]}, "avg_line_length", "max_line_length",
            "alphanum_fraction"}``; ``repo``/``path`` come from the first variant that has them
=========== ===================================================================================================

the-stack-v2
------------
Native columns: ``blob_id``, ``path``, ``repo_name``, ``revision_id``, ``detected_licenses``,
``license_type``, ``language``, ``extension``, ``src_encoding``, ``is_vendor``, ``is_generated``,
``length_bytes``, ``star_events_count``, ``gha_license_id`` and, in some mirrors, ``content``. Required:
``blob_id``. The published dataset carries no text: the content of each blob is fetched separately (from
Software Heritage's S3 bucket, gzip-compressed, named by ``blob_id``). So the text is taken from a
``content`` column when the file has one and the row's value is not null, else read from the file
``<blob_dir>/<blob_id>`` (also ``<blob_id>.gz``, ``.zst``, ``.bz2``; decompressed) and decoded with the row's
``src_encoding`` (UTF-8 when null). A row whose content is in neither place is never an empty document: it is
quarantined as ``missing_content`` (or raises ``InputError`` with ``on_error: error``); undecodable content is
``invalid_utf8`` (UTF-8) or ``decode_error`` (another encoding).

=========== ===================================================================================================
column      value
=========== ===================================================================================================
text        ``content`` or the decoded blob
native_id   ``blob_id``
url         ``https://github.com/<repo_name>/blob/<revision_id>/<path>`` when all three are present
license     JSON list of ``detected_licenses`` (sorted, de-duplicated; ``[]`` when none)
lang        null
meta        ``{"repo", "path", "language", "extension", "license_type", "src_encoding", "is_vendor",
            "is_generated", "length_bytes", "revision_id", "stars", "gha_license_id"}``
=========== ===================================================================================================
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from curate.errors import SchemaError
from curate.recipe import SourceConfig
from curate.sources.base import Partition, ReadBatch, ReadContext, register
from curate.sources.arrow_utils import coalesce, column, json_objects, json_string_lists, non_empty, to_string
from curate.sources.decompress import BrokenStream, read_all
from curate.sources.rawbatch import Col, Normalized, NormContext
from curate.sources.rows import read_rows

VARIANTS = ("max_stars", "max_issues", "max_forks")


def _github_url(repo: pa.Array, rev: pa.Array, path: pa.Array) -> pa.Array:
    path = pc.utf8_ltrim(to_string(path), characters="/")
    return pc.binary_join_element_wise(pa.scalar("https://github.com/"), non_empty(repo), pa.scalar("/blob/"),
                                       non_empty(rev), pa.scalar("/"), non_empty(path), "")


# ---------------------------------------------------------------------------- the-stack v1
V1_COLUMNS = [
    Col("content", "text", required=True),
    Col("hexsha"),
    Col("lang"),
    Col("ext"),
    Col("size", "any", jtype=pa.int64()),
    Col("avg_line_length", "any", jtype=pa.float64()),
    Col("max_line_length", "any", jtype=pa.int64()),
    Col("alphanum_fraction", "any", jtype=pa.float64()),
    *[c for v in VARIANTS for c in (
        Col(f"{v}_repo_name"),
        Col(f"{v}_repo_path"),
        Col(f"{v}_repo_head_hexsha"),
        Col(f"{v}_repo_licenses", "list", required=(v == "max_stars")),
        Col(f"{v}_count", "any", jtype=pa.int64()),
    )],
]


def normalize_the_stack_v1(t: pa.Table, nctx: NormContext) -> Normalized:
    """Map the-stack v1 columns to document columns (see the module docstring)."""
    lic = {v: column(t, f"{v}_repo_licenses") for v in VARIANTS}
    urls = [_github_url(column(t, f"{v}_repo_name"), column(t, f"{v}_repo_head_hexsha"),
                        column(t, f"{v}_repo_path")) for v in VARIANTS]
    licenses = pa.StructArray.from_arrays(
        [pc.cast(a, pa.list_(pa.string())) if not pa.types.is_null(a.type) else pa.nulls(len(a), pa.list_(pa.string()))
         for a in lic.values()], names=list(VARIANTS))
    meta = json_objects({
        "lang": column(t, "lang"),
        "ext": column(t, "ext"),
        "size": column(t, "size"),
        "repo": coalesce(*[column(t, f"{v}_repo_name") for v in VARIANTS]),
        "path": coalesce(*[column(t, f"{v}_repo_path") for v in VARIANTS]),
        "stars": column(t, "max_stars_count"),
        "licenses": licenses,
        "avg_line_length": column(t, "avg_line_length"),
        "max_line_length": column(t, "max_line_length"),
        "alphanum_fraction": column(t, "alphanum_fraction"),
    })
    return Normalized(
        text=column(t, "content"),
        text_field="content",
        native_id=column(t, "hexsha"),
        url=pc.coalesce(*urls),
        lang=None,
        license=json_string_lists(list(lic.values())),
        meta=meta,
    )


@register("the-stack-v1", code=True, row_groups=True)
def read_the_stack_v1(part: Partition, src: SourceConfig, ctx: ReadContext) -> Iterator[ReadBatch]:
    """Read bigcode/the-stack (v1) files; see the module docstring."""
    yield from read_rows(part, src, ctx, columns=V1_COLUMNS, text_col="content", normalize=normalize_the_stack_v1)


# ---------------------------------------------------------------------------- the-stack v2
V2_COLUMNS = [
    Col("blob_id", required=True),
    Col("content", "any", jtype=pa.string()),
    Col("path"),
    Col("repo_name"),
    Col("revision_id"),
    Col("detected_licenses", "list"),
    Col("license_type"),
    Col("language"),
    Col("extension"),
    Col("src_encoding"),
    Col("is_vendor", "any", jtype=pa.bool_()),
    Col("is_generated", "any", jtype=pa.bool_()),
    Col("length_bytes", "any", jtype=pa.int64()),
    Col("star_events_count", "any", jtype=pa.int64()),
    Col("gha_license_id"),
]
BLOB_SUFFIXES = ("", ".gz", ".zst", ".bz2")


def _find_blob(blob_dir: str, blob_id: str) -> str | None:
    for suf in BLOB_SUFFIXES:
        p = os.path.join(blob_dir, blob_id + suf)
        if os.path.isfile(p):
            return p
    return None


def _decode(data: bytes, encoding: str | None) -> tuple[str | None, str | None, str | None]:
    """Decode blob bytes; return ``(text, reject_reason, detail)``."""
    enc = encoding or "utf-8"
    try:
        is_utf8 = codecs.lookup(enc).name == "utf-8"
    except LookupError:
        return None, "decode_error", f"unknown src_encoding {enc!r}"
    try:
        return data.decode(enc), None, None
    except UnicodeDecodeError as e:
        reason = "invalid_utf8" if is_utf8 else "decode_error"
        return None, reason, f"content is not valid {enc} at byte {e.start}"


def _v2_content(t: pa.Table, nctx: NormContext) -> tuple[pa.Array, pa.Array | None, pa.Array | None]:
    """The text column of a v2 batch, with reject reasons/details for rows without usable content."""
    n = t.num_rows
    content = column(t, "content")
    ct = content.type
    if not (pa.types.is_string(ct) or pa.types.is_large_string(ct) or pa.types.is_string_view(ct)
            or pa.types.is_binary(ct) or pa.types.is_large_binary(ct) or pa.types.is_null(ct)):
        msg = f"column `content` has type {ct}, expected a string or binary"
        raise SchemaError(msg, file=nctx.file, column="content")
    is_text = not (pa.types.is_binary(ct) or pa.types.is_large_binary(ct))
    if is_text and pc.all(pc.is_valid(content)).as_py() and n:
        return pc.cast(content, pa.large_string()), None, None

    # Rows needing per-row work (a blob read or a decode): this is I/O, not vectorizable
    values = content.to_pylist() if not is_text else pc.cast(content, pa.large_string()).to_pylist()
    blob_ids = to_string(column(t, "blob_id")).to_pylist()
    encodings = to_string(column(t, "src_encoding")).to_pylist()
    blob_dir = nctx.ctx.resolve_path(nctx.src.blob_dir) if nctx.src.blob_dir else None
    texts: list[str | None] = []
    reasons: list[str | None] = []
    details: list[str | None] = []
    for v, bid, enc in zip(values, blob_ids, encodings, strict=True):
        text = reason = detail = None
        if isinstance(v, str):
            text = v
        elif isinstance(v, bytes):
            text, reason, detail = _decode(v, enc)
        elif not bid:
            reason, detail = "missing_content", "no content and no blob_id"
        elif blob_dir is None:
            reason, detail = "missing_content", ("content is null and the source sets no `blob_dir`; download the "
                                                 "blobs and set `blob_dir` to their folder")
        else:
            p = _find_blob(blob_dir, bid)
            if p is None:
                tried = ", ".join(BLOB_SUFFIXES[1:])
                reason, detail = "missing_content", f"blob {bid} not found in {blob_dir} (also tried {tried})"
            else:
                try:
                    text, reason, detail = _decode(read_all(p), enc)
                except BrokenStream as e:
                    reason, detail = "missing_content", f"blob file {p}: {e.message()}"
                except OSError as e:
                    reason, detail = "missing_content", f"blob file {p} cannot be read: {e}"
        texts.append(text)
        reasons.append(reason)
        details.append(detail)
    return (pa.array(texts, pa.large_string()), pa.array(reasons, pa.string()), pa.array(details, pa.string()))


def normalize_the_stack_v2(t: pa.Table, nctx: NormContext) -> Normalized:
    """Map the-stack v2 columns to document columns, reading blobs where needed (see the module docstring)."""
    text, reject, detail = _v2_content(t, nctx)
    meta = json_objects({
        "repo": column(t, "repo_name"),
        "path": column(t, "path"),
        "language": column(t, "language"),
        "extension": column(t, "extension"),
        "license_type": column(t, "license_type"),
        "src_encoding": column(t, "src_encoding"),
        "is_vendor": column(t, "is_vendor"),
        "is_generated": column(t, "is_generated"),
        "length_bytes": column(t, "length_bytes"),
        "revision_id": column(t, "revision_id"),
        "stars": column(t, "star_events_count"),
        "gha_license_id": column(t, "gha_license_id"),
    })
    return Normalized(
        text=text,
        text_field="content",
        native_id=column(t, "blob_id"),
        url=_github_url(column(t, "repo_name"), column(t, "revision_id"), column(t, "path")),
        lang=None,
        license=json_string_lists([column(t, "detected_licenses")]),
        meta=meta,
        reject=reject,
        reject_detail=detail,
    )


@register("the-stack-v2", code=True, row_groups=True)
def read_the_stack_v2(part: Partition, src: SourceConfig, ctx: ReadContext) -> Iterator[ReadBatch]:
    """Read bigcode/the-stack-v2 metadata files and their content; see the module docstring."""
    yield from read_rows(part, src, ctx, columns=V2_COLUMNS, text_col="content", normalize=normalize_the_stack_v2)
