"""Issue 22, item 5: ``--verify`` covers lineage, the documents table, quarantine and the ledger.

The manifest lists the size and sha256 of every file the audit trusts; a forged doc_id or licence in a
lineage file, a flipped byte in a documents table or an edited ledger is a named violation, and a Parquet file
that no longer decodes is a ``corrupt_file`` violation, never a traceback.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[2]


def _copy(res, tmp_path: Path) -> Path:
    d = tmp_path / "run"
    shutil.copytree(res.run_dir, d)
    return d


def _audit(d: Path, *extra: str) -> tuple[int, dict, str]:
    out = subprocess.run([sys.executable, "-m", "curate.cli", "audit", str(d), "--json", *extra],
                         capture_output=True, text=True, check=False, cwd=REPO, timeout=120)
    return out.returncode, (json.loads(out.stdout) if out.stdout.strip() else {}), out.stderr


def _where(result: dict, kind: str) -> set[str]:
    return {v["where"] for v in result.get("violations", []) if v["kind"] == kind}


def test_manifest_lists_every_trusted_file_22(audit_run) -> None:
    *_, res = audit_run
    files = res.manifest["files"]
    assert {f"shards/{s['lineage']}" for s in res.manifest["shards"]} <= set(files)
    docs = {f"documents/{p.name}" for p in (res.run_dir / "documents").glob("*.parquet")}
    quar = {f"quarantine/{p.name}" for p in (res.run_dir / "quarantine").glob("*.parquet")}
    assert docs and docs <= set(files) and quar <= set(files) and "ledger.json" in files
    assert all(len(v["sha256"]) == 64 and v["bytes"] > 0 for v in files.values())


def test_forged_doc_id_in_lineage_fails_verify_22(audit_run, tmp_path) -> None:
    *_, res = audit_run
    d = _copy(res, tmp_path)
    rel = f"shards/{res.manifest['shards'][0]['lineage']}"
    t = pq.read_table(d / rel)
    ids = t["doc_id"].to_pylist()
    ids[0] = "refinedweb:forged"
    lic = t["license"].to_pylist()
    lic[1] = "MIT"
    t = t.set_column(t.schema.get_field_index("doc_id"), "doc_id", pa.array(ids, pa.string()))
    t = t.set_column(t.schema.get_field_index("license"), "license", pa.array(lic, pa.string()))
    pq.write_table(t, d / rel, compression="zstd")
    code, result, err = _audit(d, "--verify")
    assert code == 1 and "Traceback" not in err
    assert rel in _where(result, "file_checksum") | _where(result, "file_size"), result["violations"]


def test_flipped_byte_in_documents_table_fails_verify_22(audit_run, tmp_path) -> None:
    *_, res = audit_run
    d = _copy(res, tmp_path)
    rel = sorted(f"documents/{p.name}" for p in (d / "documents").glob("*.parquet"))[0]
    b = bytearray((d / rel).read_bytes())
    b[len(b) // 2] ^= 0x01
    (d / rel).write_bytes(bytes(b))
    assert _audit(d)[0] == 0, "same size, not read without --verify"
    code, result, err = _audit(d, "--verify")
    assert code == 1 and "Traceback" not in err
    (v,) = [v for v in result["violations"] if v["kind"] == "file_checksum"]
    assert v["where"] == rel and "documents table" in v["message"]


def test_edited_ledger_fails_verify_even_when_it_balances_22(audit_run, tmp_path) -> None:
    *_, res = audit_run
    d = _copy(res, tmp_path)
    led = json.loads((d / "ledger.json").read_text())
    row = next(r for r in led if r["bytes_in"] >= 10)
    row["bytes_in"] = int(str(row["bytes_in"])[:-1] + str((int(str(row["bytes_in"])[-1]) + 1) % 10))
    (d / "ledger.json").write_text(json.dumps(led, indent=1, sort_keys=True))
    code, result, _ = _audit(d, "--verify")
    assert code == 1
    assert "ledger.json" in _where(result, "file_checksum") | _where(result, "file_size")


def test_corrupt_lineage_parquet_is_a_named_violation_not_a_traceback_22(audit_run, tmp_path) -> None:
    *_, res = audit_run
    d = _copy(res, tmp_path)
    entry = res.manifest["shards"][1]
    p = d / "shards" / entry["lineage"]
    b = bytearray(p.read_bytes())
    for i in range(8, len(b) - 16, 7):  # damage every 7th byte of the data pages: zstd can no longer decode
        b[i] ^= 0xFF
    p.write_bytes(bytes(b))
    for extra in ((), ("--verify",)):
        code, result, err = _audit(d, *extra)
        assert code == 1 and "Traceback" not in err, err
        corrupt = [v for v in result["violations"] if v["kind"] == "corrupt_file"]
        assert corrupt and corrupt[0]["where"] == f"shards/{entry['lineage']}", result["violations"]
        assert "the lineage cannot be read" in corrupt[0]["message"]


def test_damaged_ledger_json_is_a_named_violation_22(audit_run, tmp_path) -> None:
    *_, res = audit_run
    d = _copy(res, tmp_path)
    (d / "ledger.json").write_text('[{"stage": "ingest", ')
    code, result, err = _audit(d)
    assert code == 1 and "Traceback" not in err
    assert "ledger.json" in _where(result, "corrupt_file")
