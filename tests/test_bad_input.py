"""The bad-input catalogue, end to end (issue 10): every case through ``curate run``, never lost, never a traceback.

The source readers' unit tests (``tests/sources/``) check each case on one reader. Here the same cases go
through the whole pipeline (ingest -> license -> langid -> tokenize -> dedup -> mix -> shards -> documents ->
ledger), and each test asserts the exact quarantine reason or error message and that the ledger balances:

================================= ===========================================================================
case                              expected
================================= ===========================================================================
malformed JSON line, non-object   quarantine ``malformed_json``, detail names the line
invalid UTF-8, unpaired surrogate quarantine ``invalid_utf8`` (JSON lines and ``text`` files)
truncated gzip (native ``madlad``) the lines before the break are documents; one ``truncated_file`` record
truncated zstd                    the same, for a multi-frame zstd stream cut inside its last frame
wrong-typed text value            quarantine ``wrong_type``; null or absent text: ``null_text``
empty / whitespace-only text      quarantine ``empty_text`` (Parquet rows and ``text`` files)
empty files                       zero records, no error (0-byte JSON lines, 0-byte gzip stream, blank
                                  lines only, zero-row Parquet, 0-byte text file); a 0-byte file is an
                                  audit flag ``empty_input_file`` (issue 22)
BOM, CRLF/CR, NUL (issue 22)      the text-hygiene policy: BOM stripped (a JSON-lines first record parses),
                                  newlines normalized, NUL dropped; counted in the ingest ledger
stray byte in a UTF-8 ``-0.txt``  kept with U+FFFD, counted, flagged by the audit (not Latin-1 mojibake)
file not what its name says       one ``wrong_file_type`` record naming the type found (CSV named
                                  ``.parquet``, gzip named ``.jsonl``); a Parquet without footer: one
                                  ``truncated_file`` record, not a run abort
duplicate native ids              counted (ingest ``duplicate_doc_ids``), flagged by the audit
50 MB single document             one document, tokenized, chunked by ``max_doc_tokens`` and mixed
null and duplicate ids            null: ``doc_id`` from the text hash; duplicates keep their ``doc_id``; an
                                  exact copy is removed by dedup with ``dup_of``
whole-file errors                 the run fails with a ``CurateError`` naming file and column (or line); the
                                  CLI exits 1 with one message and no traceback
recipe errors                     ``curate run`` exits 2 with ``<file>: `<yaml path>`: <message>``
================================= ===========================================================================

Ledger balance means: every ledger entry conserves documents (``in == out + dropped + quarantined``), every
stage takes in exactly what the stage before it let out, ``ingest`` takes in every input record, and the
quarantine files hold one row per quarantined record with its reason.
"""

from __future__ import annotations

import copy
import gzip
import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
import zstandard

from curate.cli import main as cli_main
from curate.errors import CurateError, InputError, SchemaError
from curate.ledger import Ledger
from curate.pipeline import parse_recipe
from curate.runner import run

REPO = Path(__file__).resolve().parent.parent
WORDS = ("the river market stone quiet garden window paper music north light seven harbor winter letter "
         "morning village teacher bridge forest yellow silver kitchen engine island mountain story").split()
BIG_BYTES = 50 * 1024 * 1024


def prose(rng: random.Random, n: int) -> str:
    words = [rng.choice(WORDS) for _ in range(n)]
    return " ".join(words).capitalize() + "."


def jl(rows: list) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)


def generic(fmt: str, paths: list[str], **kw) -> dict:
    return {"format": fmt, "paths": paths, "text_column": "text", **kw}


# ---------------------------------------------------------------------------- the corpus of bad records
@pytest.fixture(scope="module")
def catalogue(tmp_path_factory, ray_session) -> dict:
    """Write every per-record case, run the pipeline once over all of them, return the run and expectations."""
    root = tmp_path_factory.mktemp("bad")
    rng = random.Random(10)

    def good(prefix: str, n: int) -> list[dict]:
        return [{"id": f"{prefix}{i}", "text": prose(rng, 60)} for i in range(n)]

    def write(rel: str, data: bytes) -> str:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        return str(p)

    sources: dict[str, dict] = {}
    expect: dict[str, Counter] = {}

    # malformed JSON: an unterminated object (line 3) and a JSON array (line 5); line 4 is blank (no record)
    g = good("m", 10)
    write("malformed/a.jsonl", jl([*g[:2], b'{"id": "m-bad", "text": "unterminated', b"   ", b"[1, 2, 3]", *g[2:]]))
    sources["malformed"] = generic("jsonl", ["malformed/*.jsonl"], id_column="id")
    expect["malformed"] = Counter(malformed_json=2)

    # invalid UTF-8: raw 0xff bytes inside the text, and an unpaired surrogate escape
    g = good("u", 10)
    write("utf8/a.jsonl", jl([g[0], b'{"id": "u-bytes", "text": "caf\xff\xfe latte"}', *g[1:5],
                              b'{"id": "u-sur", "text": "half a pair \\ud800 here"}', *g[5:]]))
    sources["utf8"] = generic("jsonl", ["utf8/*.jsonl"], id_column="id")
    expect["utf8"] = Counter(invalid_utf8=2)

    # wrong-typed, null and absent text
    g = good("t", 10)
    write("types/a.jsonl", jl([*g[:3], {"id": "t-num", "text": 42}, {"id": "t-list", "text": ["a", "b"]},
                               {"id": "t-null", "text": None}, {"id": "t-absent", "body": "no text key"}, *g[3:]]))
    sources["types"] = generic("jsonl", ["types/*.jsonl"], id_column="id")
    expect["types"] = Counter(wrong_type=2, null_text=2)

    # empty and whitespace-only texts in Parquet
    g = good("b", 10)
    texts = [g[0]["text"], "", "   \n\t  ", None, *(x["text"] for x in g[1:])]
    (root / "blank").mkdir()
    pq.write_table(pa.table({"id": [f"b{i}" for i in range(len(texts))], "text": texts}), root / "blank" / "a.parquet")
    sources["blank"] = generic("parquet", ["blank/*.parquet"], id_column="id")
    expect["blank"] = Counter(empty_text=2, null_text=1)

    # truncated gzip, in a native format (MADLAD-400 ships .jsonl.gz): cut inside the last of 40 lines' stream
    lines = jl([{"text": prose(rng, 60)} for _ in range(40)])
    gz = gzip.compress(lines, compresslevel=6)
    write("madlad/de_clean_0000.jsonl.gz", gz[: len(gz) * 3 // 4])
    sources["madlad"] = {"format": "madlad", "paths": ["madlad/*.jsonl.gz"]}
    expect["madlad"] = Counter(truncated_file=1)

    # truncated zstd: three frames of 12 lines each; the file ends inside the third frame
    frames = [zstandard.ZstdCompressor().compress(jl(good(f"z{k}-", 12))) for k in range(3)]
    write("zstd/a.jsonl.zst", frames[0] + frames[1] + frames[2][: len(frames[2]) // 2])
    sources["zstd"] = generic("jsonl", ["zstd/*.jsonl.zst"], id_column="id")
    expect["zstd"] = Counter(truncated_file=1)

    # empty files of every kind next to one good file: zero records each, no error
    write("empty/a.jsonl", b"")
    write("empty/b.jsonl.gz", gzip.compress(b""))
    write("empty/c.jsonl", b"\n   \n\n")
    write("empty/d.jsonl", jl(good("e", 8)))
    sources["empty"] = generic("jsonl", ["empty/*.jsonl", "empty/*.jsonl.gz"], id_column="id")
    expect["empty"] = Counter()

    # null and duplicate ids (integers in Parquet); one exact copy; plus a zero-row Parquet file
    t1, t2, t3 = prose(rng, 60), prose(rng, 60), prose(rng, 60)
    ids = pa.table({"id": pa.array([1, None, 1, 2, 2, None, *range(3, 9)], pa.int64()),
                    "text": [t1, t2, "another text " + t1, t3, t3, "and " + t2, *(prose(rng, 60) for _ in range(6))]})
    (root / "ids").mkdir()
    pq.write_table(ids, root / "ids" / "a.parquet")
    pq.write_table(ids.schema.empty_table(), root / "ids" / "b.parquet")
    sources["ids"] = generic("parquet", ["ids/*.parquet"], id_column="id")
    expect["ids"] = Counter()

    # one document per file (native `text`): good, invalid UTF-8, whitespace only, empty, truncated gzip
    write("txt/a-good.txt", prose(rng, 300).encode())
    write("txt/b-bad.txt", b"line one\nline two \xc3\x28 broken\n")
    write("txt/c-blank.txt", b"  \n\t\n")
    write("txt/d-empty.txt", b"")
    cut = gzip.compress(prose(rng, 400).encode())
    write("txt/e-cut.txt.gz", cut[: len(cut) // 2])
    write("txt/f-good.txt", prose(rng, 300).encode())
    sources["txt"] = {"format": "text", "paths": ["txt/*.txt", "txt/*.txt.gz"]}
    expect["txt"] = Counter(invalid_utf8=1, empty_text=1, truncated_file=1)

    # issue 22 -- text hygiene: a JSON-lines file opening with a BOM keeps its first record; a text file with a
    # BOM, CRLF, a lone CR and NUL is cleaned; a UTF-8 Gutenberg "-0.txt" with a stray byte is flagged
    write("bom/a.jsonl", b"\xef\xbb\xbf" + jl(good("bom", 6)))
    sources["bom"] = generic("jsonl", ["bom/*.jsonl"], id_column="id")
    expect["bom"] = Counter()
    write("crtxt/a.txt", ("\ufeff" + prose(rng, 150) + "\r\n\r\n" + prose(rng, 150) + "\r" + "x\x00y").encode())
    sources["crtxt"] = {"format": "text", "paths": ["crtxt/*.txt"]}
    expect["crtxt"] = Counter()
    book = ("The Project Gutenberg eBook of Bad Byte\n\nTitle: Bad Byte\nLanguage: English\n\n*** START OF THE "
            "PROJECT GUTENBERG EBOOK BAD BYTE ***\n\n" + prose(rng, 300) + " caf\u00e9 "
            + prose(rng, 100) + "\n\n*** END OF THE PROJECT GUTENBERG EBOOK BAD BYTE ***\n").encode()
    cut = book.index(b"caf")
    write("gutenberg/99-0.txt", book[:cut] + b"\xff" + book[cut:])
    sources["gutenberg"] = {"format": "gutenberg-txt", "paths": ["gutenberg/*.txt"]}
    expect["gutenberg"] = Counter()

    # issue 22 -- files that are not what their name says: one record each, naming what they hold; a truncated
    # Parquet file is a record, not a run abort; a 0-byte Parquet file is no record (and an audit flag)
    (root / "wrongpq").mkdir()
    pq.write_table(pa.table({"id": [f"w{i}" for i in range(10)], "text": [prose(rng, 60) for _ in range(10)]}),
                   root / "wrongpq" / "a-good.parquet")
    full = (root / "wrongpq" / "a-good.parquet").read_bytes()
    write("wrongpq/b-csv.parquet", ("id,text\n" + "".join(f"{i},some text {i}\n" for i in range(50))).encode())
    write("wrongpq/c-cut.parquet", full[: len(full) // 2])
    write("wrongpq/d-empty.parquet", b"")
    sources["wrongpq"] = generic("parquet", ["wrongpq/*.parquet"], id_column="id")
    expect["wrongpq"] = Counter(wrong_file_type=1, truncated_file=1)
    write("wronggz/a.jsonl", jl(good("wg", 8)))
    write("wronggz/b.jsonl", gzip.compress(jl(good("wgz", 8))))
    sources["wronggz"] = generic("jsonl", ["wronggz/*.jsonl"], id_column="id")
    expect["wronggz"] = Counter(wrong_file_type=1)

    # a 50 MB single document (one JSON line), next to a few ordinary ones
    big = " ".join(rng.choices(WORDS, k=BIG_BYTES // 6))
    write("big/a.jsonl", jl([{"id": "huge", "text": big}, *good("g", 3)]))
    sources["big"] = generic("jsonl", ["big/*.jsonl"], id_column="id")
    expect["big"] = Counter()

    data = {"name": "bad-input", "seed": 3, "budget_tokens": 4_000, "max_doc_tokens": 256, "tokenizer": "rwkv-world",
            "sources": sources, "dedup": {"exact": True},
            "mixture": {"all": {"share": 1.0, "sources": dict.fromkeys(sources, 1)}},
            "shards": {"format": "megatron", "max_tokens": 2_000}}
    recipe = parse_recipe(data, base_dir=root)
    res = run(recipe, out=str(root / "run"), quiet=True)
    return {"root": root, "data": data, "res": res, "expect": expect, "big_len": len(big)}


def _quarantine(run_dir: Path) -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in sorted((run_dir / "quarantine").glob("*.parquet")))


def test_every_bad_record_is_quarantined_with_its_reason_10(catalogue) -> None:
    q = _quarantine(catalogue["res"].run_dir)
    got: dict[str, Counter] = {}
    for src, reason in zip(q["source"].to_pylist(), q["reason"].to_pylist(), strict=True):
        got.setdefault(src, Counter())[reason] += 1
    for src, want in catalogue["expect"].items():
        assert got.get(src, Counter()) == want, src
    rows = q.to_pylist()

    def one(src: str, reason: str) -> list[dict]:
        return [r for r in rows if r["source"] == src and r["reason"] == reason]

    malformed = sorted(r["row"] for r in one("malformed", "malformed_json"))
    assert malformed == [2, 4], "0-based line indices of the unterminated object and the array"
    assert any(", line 3: malformed JSON at column" in r["detail"] for r in one("malformed", "malformed_json"))
    assert any("expected a JSON object, got a JSON array" in r["detail"] for r in one("malformed", "malformed_json"))
    assert {r["field"] for r in one("utf8", "invalid_utf8")} == {"text"}
    assert {r["detail"].split(": ", 1)[1] for r in one("types", "wrong_type")} == {
        "expected a string, got a number", "expected a string, got a array"}
    assert "truncated or corrupt gzip stream at line" in one("madlad", "truncated_file")[0]["detail"]
    assert "line(s) were read before the break" in one("madlad", "truncated_file")[0]["detail"]
    assert "truncated or corrupt zstd stream at line 25" in one("zstd", "truncated_file")[0]["detail"]
    (csv,) = one("wrongpq", "wrong_file_type")
    assert csv["file"].endswith("b-csv.parquet") and "the file holds CSV text" in csv["detail"]
    assert one("wrongpq", "truncated_file")[0]["file"].endswith("c-cut.parquet")
    (gz,) = one("wronggz", "wrong_file_type")
    assert gz["file"].endswith("b.jsonl") and "the file holds gzip" in gz["detail"]
    assert "not valid UTF-8 at byte 18 (line 2)" in one("txt", "invalid_utf8")[0]["detail"]
    assert one("txt", "invalid_utf8")[0]["file"].endswith("b-bad.txt")
    assert "truncated or corrupt gzip stream" in one("txt", "truncated_file")[0]["detail"]


def test_ledger_balances_and_counts_every_input_record_10(catalogue) -> None:
    run_dir = catalogue["res"].run_dir
    led = Ledger.read(run_dir / "ledger.json")
    assert led.conservation_violations() == []
    q = _quarantine(run_dir)
    docs = pq.read_table(run_dir / "documents")
    doc_counts = Counter(docs["source"].to_pylist())
    q_counts = Counter(q["source"].to_pylist())
    ingest = led.by_source("ingest")
    for src, want in catalogue["expect"].items():
        c = ingest[src]
        assert c.quarantined == dict(want), src
        assert c.docs_in == c.docs_out + sum(want.values()), src
        assert q_counts.get(src, 0) == sum(want.values()), src
        assert doc_counts[src] == c.docs_in, f"{src}: documents/ must list every input record"
    # every stage takes in exactly what the stage before it let out
    order = ["ingest", "license", "langid", "quality", "dedup", "mix"]
    for src in catalogue["expect"]:
        chain = [(st, led.by_source(st)[src]) for st in order if src in led.by_source(st)]
        for (a, ca), (b, cb) in zip(chain, chain[1:]):
            assert cb.docs_in == ca.docs_out, f"{src}: {b} took {cb.docs_in} but {a} let out {ca.docs_out}"
    # the records each case should leave as documents
    assert ingest["empty"].docs_in == 8, "empty files and blank lines are no records"
    assert ingest["ids"].docs_in == 12, "the zero-row Parquet file adds no record"
    assert ingest["txt"].docs_out == 2 and ingest["txt"].docs_in == 5, "the empty text file is no record"
    assert ingest["zstd"].docs_out == 24, "the two complete frames are read"
    assert 0 < ingest["madlad"].docs_out < 40
    # issue 22
    assert ingest["bom"].docs_out == 6, "a leading BOM does not cost the first record"
    assert ingest["wrongpq"].docs_in == 12 and ingest["wrongpq"].docs_out == 10, "one record per bad file"
    assert ingest["wronggz"].docs_in == 9 and ingest["wronggz"].docs_out == 8
    assert {k: ingest["crtxt"].counters.get(k) for k in ("text_bom_stripped", "text_newlines_normalized",
                                                          "text_nul_dropped")} == dict.fromkeys(
        ("text_bom_stripped", "text_newlines_normalized", "text_nul_dropped"), 1)
    assert ingest["gutenberg"].docs_out == 1 and ingest["gutenberg"].counters["text_invalid_utf8_replaced"] == 1
    assert ingest["ids"].counters["duplicate_doc_ids"] == 2, "ids 1 and 2 each appear twice"


def test_audit_flags_duplicate_ids_empty_files_and_replaced_bytes_22(catalogue) -> None:
    from curate import audit as audit_mod

    result = audit_mod.audit(catalogue["res"].run_dir)
    assert result["status"] == "complete"
    flags = {(f["kind"], f["where"]) for f in result["flags"]}
    assert ("duplicate_doc_ids", "ids") in flags
    assert ("invalid_utf8_replaced", "gutenberg") in flags
    empty = [f["message"] for f in result["flags"] if f["kind"] == "empty_input_file"]
    assert any("empty/a.jsonl" in m for m in empty) and any("d-empty.parquet" in m for m in empty), empty
    assert result["text_hygiene"]["crtxt"]["text_nul_dropped"] == 1


def test_truncation_keeps_exactly_the_lines_before_the_break_10(catalogue) -> None:
    q = _quarantine(catalogue["res"].run_dir).to_pylist()
    led = Ledger.read(catalogue["res"].run_dir / "ledger.json").by_source("ingest")
    for src in ("madlad", "zstd"):
        (rec,) = [r for r in q if r["source"] == src]
        assert rec["row"] == led[src].docs_out, f"{src}: every line before the break is a document"


def test_null_and_duplicate_ids_10(catalogue) -> None:
    run_dir = catalogue["res"].run_dir
    docs = pq.read_table(run_dir / "documents").to_pylist()
    ids = [d for d in docs if d["source"] == "ids"]
    by_id = Counter(d["doc_id"] for d in ids)
    assert by_id["ids:1"] == 2 and by_id["ids:2"] == 2, "duplicate native ids keep their doc_id"
    hashed = [d for d in ids if d["native_id"] is None]
    assert len(hashed) == 2 and all(d["doc_id"].startswith("ids:h") and len(d["doc_id"]) == 5 + 16 for d in hashed)
    assert len({d["uid"] for d in ids}) == len(ids), "uids stay unique whatever the ids"
    copies = [d for d in ids if d["doc_id"] == "ids:2"]
    removed = [d for d in copies if d["reason"] == "exact_duplicate"]
    assert len(removed) == 1 and removed[0]["stage"] == "dedup", copies
    assert removed[0]["dup_of"] == next(d["uid"] for d in copies if d is not removed[0])


def test_50mb_document_is_tokenized_chunked_and_mixed_10(catalogue) -> None:
    res = catalogue["res"]
    docs = pq.read_table(res.run_dir / "documents").to_pylist()
    (huge,) = [d for d in docs if d["doc_id"] == "big:huge"]
    assert huge["nbytes"] == catalogue["big_len"]
    assert huge["ntok"] > 1_000_000
    lin = pa.concat_tables(pq.read_table(p, columns=["doc_id", "tokens", "chunk"])
                           for p in sorted((res.run_dir / "shards").glob("*.lineage.parquet"))).to_pylist()
    chunks = [r for r in lin if r["doc_id"] == "big:huge"]
    assert chunks and huge["selected"] == len(chunks)
    assert max(r["tokens"] for r in lin) <= 256 + 1, "max_doc_tokens bounds every sequence"
    assert sum(r["tokens"] for r in lin) == res.manifest["tokens"]


# ---------------------------------------------------------------------------- whole-file errors
def _one_source_recipe(src: dict) -> dict:
    return {"name": "bad-file", "budget_tokens": 100, "sources": {"s": src},
            "mixture": {"all": {"share": 1.0, "sources": {"s": 1}}}}


def _whole_file_cases(root: Path) -> dict[str, tuple[dict, type, list[str]]]:
    (root / "in").mkdir(exist_ok=True)
    p = root / "in"
    pq.write_table(pa.table({"id": ["a", "b"], "text": pa.array([1, 2], pa.int64())}), p / "int_text.parquet")
    pq.write_table(pa.table({"id": ["a"], "body": ["x"]}), p / "no_text.parquet")
    (p / "corrupt.parquet").write_bytes(b"PAR1" + b"\x00garbage" * 100 + b"PAR1")
    (p / "num_text.jsonl").write_bytes(jl([{"text": 1}, {"text": 2}, {"text": 3}]))
    (p / "no_key.jsonl").write_bytes(jl([{"body": "x"}, {"body": "y"}]))
    (p / "bad_line.jsonl").write_bytes(jl([{"text": "fine"}, b"{nope", {"text": "fine"}]))
    cut = gzip.compress(jl([{"text": prose(random.Random(1), 50)} for _ in range(50)]))
    (p / "cut.jsonl.gz").write_bytes(cut[: len(cut) // 2])
    f = str(p)
    return {
        "parquet_wrong_type": (generic("parquet", [f + "/int_text.parquet"]), SchemaError,
                               ["int_text.parquet", "column `text`", "has type int64, expected a string"]),
        "parquet_missing_column": (generic("parquet", [f + "/no_text.parquet"]), SchemaError,
                                   ["no_text.parquet", "column `text`", "required column `text` not found",
                                    "columns found: ['id', 'body']"]),
        "parquet_corrupt": (generic("parquet", [f + "/corrupt.parquet"], on_error="error"), InputError,
                            ["corrupt.parquet", "cannot read Parquet file"]),
        "jsonl_text_never_a_string": (generic("jsonl", [f + "/num_text.jsonl"]), SchemaError,
                                      ["num_text.jsonl", "column `text`",
                                       "holds number values in the first 3 records"]),
        "jsonl_missing_key": (generic("jsonl", [f + "/no_key.jsonl"]), SchemaError,
                              ["no_key.jsonl", "column `text`",
                               "required key `text` is in none of the first 2 records", "keys found: ['body']"]),
        "on_error_error_malformed": (generic("jsonl", [f + "/bad_line.jsonl"], on_error="error"), InputError,
                                     ["bad_line.jsonl, line 2", "malformed_json: malformed JSON at column 2"]),
        "on_error_error_truncated": (generic("jsonl", [f + "/cut.jsonl.gz"], on_error="error"), InputError,
                                     ["cut.jsonl.gz, line", "truncated or corrupt gzip stream at line"]),
    }


WHOLE_FILE = ["parquet_wrong_type", "parquet_missing_column", "parquet_corrupt", "jsonl_text_never_a_string",
              "jsonl_missing_key", "on_error_error_malformed", "on_error_error_truncated"]


@pytest.mark.parametrize("case", WHOLE_FILE)
def test_whole_file_error_fails_the_run_naming_the_file_10(case: str, tmp_path, ray_session) -> None:
    src, err, needles = _whole_file_cases(tmp_path)[case]
    recipe = parse_recipe(_one_source_recipe(src), base_dir=tmp_path)
    with pytest.raises(CurateError) as ei:
        run(recipe, out=str(tmp_path / "run"), quiet=True)
    assert type(ei.value) is err, repr(ei.value)
    for n in needles:
        assert n in str(ei.value), str(ei.value)
    assert not (tmp_path / "run" / "manifest.json").exists()


def _cli(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curate.cli", *args], capture_output=True, text=True,
                          timeout=timeout, check=False, cwd=REPO)


@pytest.mark.parametrize("case", ["parquet_wrong_type", "on_error_error_malformed"])
def test_whole_file_error_cli_exits_1_without_traceback_10(case: str, tmp_path, ray_session) -> None:
    src, _err, needles = _whole_file_cases(tmp_path)[case]
    f = tmp_path / "r.yaml"
    f.write_text(yaml.safe_dump(_one_source_recipe(src)))
    address = ray_session.get_runtime_context().gcs_address  # the test session's Ray: no second Ray to start
    res = _cli("run", str(f), "--out", str(tmp_path / "run"), "--quiet", "--ray-address", address)
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout, res.stderr
    line = next(x for x in res.stderr.splitlines() if x.startswith("curate run: error: "))
    for n in needles:
        assert n in line, line


# ---------------------------------------------------------------------------- recipe errors, through the CLI
def _base(root: Path) -> dict:
    (root / "d").mkdir(exist_ok=True)
    (root / "d" / "a.jsonl").write_bytes(jl([{"text": "hello there"}]))
    return {"name": "r", "budget_tokens": 100, "sources": {"a": generic("jsonl", ["d/*.jsonl"]),
                                                           "b": generic("jsonl", ["d/*.jsonl"])},
            "mixture": {"g": {"share": 0.5, "sources": {"a": 1}}, "h": {"share": 0.5, "sources": {"b": 1}}}}


def _set(path: str, value):
    def mutate(d: dict) -> None:
        *head, last = path.split(".")
        for k in head:
            d = d[k]
        d[last] = value
    return mutate


def _pop(path: str):
    def mutate(d: dict) -> None:
        *head, last = path.split(".")
        for k in head:
            d = d[k]
        d.pop(last)
    return mutate


RECIPE_ERRORS = [
    ("unknown top-level key", _set("budgte_tokens", 5), "budgte_tokens", "unknown key (check its spelling"),
    ("unknown source key", _set("sources.a.pahts", ["x"]), "sources.a.pahts", "unknown key"),
    ("missing key", _pop("budget_tokens"), "budget_tokens", "required key is missing"),
    ("budget not positive", _set("budget_tokens", 0), "budget_tokens", "greater than 0"),
    ("no sources", _set("sources", {}), "sources", "at least one source"),
    ("bad format", _set("sources.a.format", "csv"), "sources.a.format", "got 'csv'"),
    ("jsonl without text_column", _pop("sources.a.text_column"), "sources.a.text_column", "needs `text_column`"),
    ("paths and subsets", _set("sources.a.subsets", {"x": {"paths": ["d/*.jsonl"]}}), "sources.a",
     "either `paths` or `subsets`, not both"),
    ("no paths", _set("sources.a.paths", []), "sources.a.paths", "needs `paths`"),
    ("glob matches nothing", _set("sources.a.paths", ["nowhere/*.jsonl"]), "sources.a.paths[0]",
     "matches no file"),
    ("unknown license preset", _set("sources.a.license", "copyleftish"), "sources.a.license",
     "unknown license preset 'copyleftish'"),
    ("license policy without preset or allow", _set("sources.a.license", {"unknown": "keep"}), "sources.a.license",
     "give `preset` or `allow`"),
    ("langid keep and drop", _set("sources.a.langid", {"keep": ["en"], "drop": ["de"]}), "sources.a.langid",
     "either `keep` or `drop`"),
    ("langid score out of range", _set("sources.a.langid", {"min_score": 2}), "sources.a.langid.min_score",
     "less than or equal to 1"),
    ("unknown quality preset", _set("sources.a.quality", "shiny"), "sources.a.quality", "unknown quality preset"),
    ("fasttext without model", _set("sources.a.quality", {"fasttext": {}}), "sources.a.quality.fasttext.model",
     "needs `model:"),
    ("fasttext model missing", _set("sources.a.quality", {"fasttext": {"model": "no.bin"}}),
     "sources.a.quality.fasttext.model", "quality model not found"),
    ("bad on_error", _set("sources.a.on_error", "ignore"), "sources.a.on_error", "got 'ignore'"),
    ("shares do not sum to 1", _set("mixture.g.share", 0.7), "mixture", "must sum to 1, got 1.2"),
    ("unknown source in mixture", _set("mixture.g.sources", {"a": 1, "zz": 1}), "mixture.g.sources.zz",
     "unknown source 'zz'"),
    ("source in two groups", _set("mixture.h.sources", {"a": 1}), "mixture.h.sources.a", "already in group 'g'"),
    ("source left out", _set("mixture", {"g": {"share": 1.0, "sources": {"a": 1}}}), "sources.b",
     "in no mixture group"),
    ("negative weight", _set("mixture.g.sources", {"a": -1}), "mixture.g.sources.a", "weights must be >= 0"),
    ("all-zero weights", _set("mixture.g.sources", {"a": 0}), "mixture.g.sources", "must not all be 0"),
    ("undeclared subset", _set("mixture.g.sources", {"a/x": 1}), "mixture.g.sources.a/x", "declares no subsets"),
    ("unknown dedup priority", _set("dedup", {"keep_priority": ["zz"]}), "dedup.keep_priority[0]",
     "unknown source 'zz'"),
    ("hf tokenizer missing", _set("tokenizer", {"hf": "none/tokenizer.json"}), "tokenizer.hf",
     "tokenizer file not found"),
    ("langid model missing", _set("langid", {"model": "none/lid.bin"}), "langid.model",
     "language-ID model not found"),
    ("plugin not a module name", _set("plugins", ["../evil.py"]), "plugins[0]", "importable module names"),
    ("shard name escapes the run dir", _set("shards", {"name": "../../x"}), "shards.name",
     "plain file-name prefix"),
    ("source name with a slash", lambda d: d["sources"].update({"a/b": d["sources"].pop("b")}), "sources.a/b",
     "cannot contain '/'"),
]


@pytest.mark.parametrize(("mutate", "path", "needle"), [c[1:] for c in RECIPE_ERRORS],
                         ids=[c[0] for c in RECIPE_ERRORS])
def test_recipe_error_exits_2_naming_the_yaml_path_10(mutate, path: str, needle: str, tmp_path, capsys) -> None:
    data = copy.deepcopy(_base(tmp_path))
    mutate(data)
    f = tmp_path / "r.yaml"
    f.write_text(yaml.safe_dump(data))
    assert cli_main(["run", str(f), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"curate run: error: {f}: `{path}`: "), err
    assert needle in err, err
    assert not (tmp_path / "run").exists(), "nothing is written for an invalid recipe"


@pytest.mark.parametrize(("text", "needle"), [
    ("- a\n- b\n", "a recipe must be a YAML mapping, got list"),
    ("name: [unclosed\n", "not valid YAML"),
    ("name: !!python/object/apply:os.system ['echo pwned']\n", "not valid YAML"),
])
def test_recipe_file_that_is_not_a_mapping_exits_2_10(text: str, needle: str, tmp_path, capsys) -> None:
    f = tmp_path / "r.yaml"
    f.write_text(text)
    assert cli_main(["run", str(f)]) == 2
    assert needle in capsys.readouterr().err


def test_recipe_errors_exit_2_without_traceback_in_a_real_process_10(tmp_path) -> None:
    data = _base(tmp_path)
    data["mixture"]["g"]["share"] = 0.7
    f = tmp_path / "r.yaml"
    f.write_text(yaml.safe_dump(data))
    for args in (["run", str(f)], ["run", str(tmp_path / "missing.yaml")], ["plan", str(f)]):
        res = _cli(*args, timeout=120)
        assert res.returncode == 2, (args, res.stderr)
        assert "Traceback" not in res.stderr, res.stderr
        assert res.stderr.startswith(f"curate {args[0]}: error: "), res.stderr
