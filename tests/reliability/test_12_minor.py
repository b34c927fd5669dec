"""Issue 22, item 12: duplicate native ids are counted (ledger ``duplicate_doc_ids``, an audit flag), and a
corrupt compressed stream says how many lines were read before the break and estimates how many were lost."""

from __future__ import annotations

import gzip
import json
import random

import pyarrow as pa

from curate import audit as audit_mod
from curate.ledger import Ledger
from curate.partition import duplicate_doc_ids
from tests.sources import read


def test_duplicate_native_ids_are_counted_per_source_22() -> None:
    t = pa.table({"source": ["a"] * 5 + ["b"] * 2, "subset": [""] * 7,
                  "doc_id": ["a:1", "a:1", "a:2", "a:h0", "a:h0", "b:1", "b:2"],
                  "native_id": ["1", "1", "2", None, None, "1", "2"]})
    assert duplicate_doc_ids(t) == {("a", ""): 1}, "text-hash ids (no native id) are dedup's business"


def test_audit_flags_duplicate_doc_ids_from_the_ledger_22() -> None:
    led = Ledger()
    led.get("ingest", "web", "").counters["duplicate_doc_ids"] = 3
    (flag,) = audit_mod.duplicate_id_flags(led)
    assert flag["where"] == "web" and flag["message"].startswith("web: 3 document(s) share their doc_id")


def test_corrupt_gzip_says_lines_read_and_lines_lost_22(tmp_path) -> None:
    rng = random.Random(12)
    lines = b"".join(json.dumps({"text": f"line {i} " + rng.randbytes(150).hex()}).encode() + b"\n"
                     for i in range(2_000))
    raw = bytearray(gzip.compress(lines, compresslevel=1))  # about 400 KB: several decompressor feeds
    mid = len(raw) // 2
    raw[mid: mid + 64] = bytes(64)
    p = tmp_path / "a.jsonl.gz"
    p.write_bytes(bytes(raw))
    docs, q, records = read(p, "jsonl", text_column="text")
    # deflate may decode some garbage before it notices the damage: those lines are quarantined on their own
    (rec,) = [r for r in q.to_pylist() if r["reason"] == "truncated_file"]
    assert records == docs.num_rows + q.num_rows
    read_lines = rec["row"]
    assert f"{read_lines:,} line(s) were read before the break" in rec["detail"]
    assert "compressed bytes" in rec["detail"] and "more line(s) lost" in rec["detail"]
    est = int(rec["detail"].split("about ")[1].split(" more")[0].replace(",", ""))
    assert 0 < read_lines < 2_000 and 0.5 * (2_000 - read_lines) <= est <= 1.5 * (2_000 - read_lines), rec["detail"]


def test_gzip_cut_at_the_end_loses_only_the_line_in_progress_22(tmp_path) -> None:
    lines = b"".join(json.dumps({"text": f"line {i}"}).encode() + b"\n" for i in range(50))
    raw = gzip.compress(lines)
    p = tmp_path / "a.jsonl.gz"
    p.write_bytes(raw[: len(raw) - 12])
    _, q, _ = read(p, "jsonl", text_column="text")
    assert "the break is at the end of the file" in q.column("detail")[0].as_py()
