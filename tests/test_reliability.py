"""Reliability with real processes (issue 10): kill -9 and resume, a lost Ray node, refusals, path safety.

Every test here drives ``curate run`` the way a user does (a subprocess) and compares the sha256 of every
output with those of a clean, uninterrupted run of the same recipe:

=================== =============================================================================================
compared            ``shards/*`` (``.bin``, ``.idx``, ``.lineage.parquet``, ``.json``), ``manifest.json``,
                    ``ledger.json``, ``documents/*.parquet``, ``quarantine/*.parquet``, ``LICENSES.md``,
                    ``licenses.json``
not compared        ``run.json`` (its ``created`` time), ``work/`` (scratch), ``audit.json`` (not written with
                    ``--no-audit``); a resumed run must also leave no ``*.tmp`` file of a killed attempt anywhere
=================== =============================================================================================

Isolation: a ``curate run`` subprocess starts its own local Ray under a short private ``RAY_TMPDIR`` (Unix
socket paths must stay under 108 bytes), in its own session (``start_new_session``). Every process Ray starts
for it stays in that session (daemons in the driver's process group, each worker in a group of its own), so
SIGKILL to every process of the session kills the whole run at one instant without touching the test session's
Ray (``ray_session``) or anyone else's. ``ray stop`` is never used:
it stops every Ray on the machine. The two-node cluster is two ``ray start --block`` processes, each in its own
session, torn down by killing those process groups.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import yaml

from curate.demo import generate
from curate.io_utils import sha256_file
from curate.pipeline import load_recipe, parse_recipe
from curate.runner import run
from tests.test_e2e import demo_recipe

PY = sys.executable
RAY_BIN = str(Path(PY).with_name("ray"))
#: Seconds a whole ``curate run`` subprocess may take before the test gives up on it.
RUN_TIMEOUT = 240


# ---------------------------------------------------------------------------- helpers
def output_hashes(run_dir: Path) -> dict[str, str]:
    """sha256 of every compared output of a run directory (see the module docstring), by relative path."""
    files = [*sorted((run_dir / "shards").glob("*")), *sorted((run_dir / "documents").glob("*.parquet")),
             *sorted((run_dir / "quarantine").glob("*.parquet"))]
    files += [run_dir / f for f in ("manifest.json", "ledger.json", "LICENSES.md", "licenses.json")]
    return {str(p.relative_to(run_dir)): sha256_file(p) for p in files if p.is_file()}


def assert_same_outputs(got: dict[str, str], want: dict[str, str]) -> None:
    assert sorted(got) == sorted(want), f"files differ: only here {sorted(set(got) - set(want))}, " \
                                        f"only in the clean run {sorted(set(want) - set(got))}"
    diff = sorted(k for k in want if got[k] != want[k])
    assert not diff, f"not byte-identical to the clean run: {diff}"


@contextlib.contextmanager
def private_ray_tmp() -> Iterator[Path]:
    """A short, private Ray temp root (``/tmp/crXXXX``), removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix="cr", dir="/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run_env(ray_tmp: Path) -> dict[str, str]:
    env = dict(os.environ, RAY_TMPDIR=str(ray_tmp), HF_HUB_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0",
               PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)
    return env


def start_run(recipe: Path, out: Path, env: dict[str, str], log: Path, *extra: str) -> subprocess.Popen:
    """``curate run`` as a subprocess in its own session (process group), output to ``log``."""
    cmd = [PY, "-m", "curate.cli", "run", str(recipe), "--out", str(out), "--quiet", "--no-audit", *extra]
    with open(log, "ab") as fh:
        return subprocess.Popen(cmd, env=env, start_new_session=True, stdout=fh, stderr=subprocess.STDOUT,
                                cwd=Path(__file__).resolve().parent.parent)


def session_pids(sid: int) -> list[int]:
    """Pids of the live processes of session ``sid`` (the ``curate run`` process and everything below it)."""
    pids = []
    for p in psutil.process_iter(["pid", "status"]):
        with contextlib.suppress(psutil.Error, OSError):
            if p.info["status"] != psutil.STATUS_ZOMBIE and os.getsid(p.pid) == sid:
                pids.append(p.pid)
    return pids


def run_processes(sid: int, ray_tmp: Path) -> list[psutil.Process]:
    """Live processes of one run: in its session, or started with its private Ray temp root."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if os.getsid(p.pid) == sid or str(ray_tmp) in " ".join(p.info["cmdline"] or []) \
                    or p.environ().get("RAY_TMPDIR") == str(ray_tmp):
                found.append(p)
        except (psutil.Error, OSError):
            continue
    return found


def kill_session(sid: int) -> None:
    """SIGKILL every process of session ``sid``."""
    for _ in range(3):  # again, in case one forked while the others were killed
        for pid in session_pids(sid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def kill_run(proc: subprocess.Popen, ray_tmp: Path) -> None:
    """SIGKILL every process of the run at once and check that none of them (Ray's included) survives.

    Ray keeps its daemons in the driver's process group but gives each worker a process group of its own, all
    in the driver's session: ``killpg`` alone would let the workers finish what they were doing. So every
    process of the session gets SIGKILL, as a node losing power would.
    """
    kill_session(proc.pid)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 20
    while (left := run_processes(proc.pid, ray_tmp)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"processes of the killed run survived: {[(p.pid, _cmdline(p)[:3]) for p in left]}"


def kill_when(proc: subprocess.Popen, ray_tmp: Path, ready: Callable[[], bool], *, what: str) -> bool:
    """Poll ``ready`` every 10 ms and SIGKILL the run as soon as it holds; False if the run ended first."""
    deadline = time.monotonic() + RUN_TIMEOUT
    hit = False
    while proc.poll() is None:
        if ready():
            hit = True
            break
        if time.monotonic() > deadline:
            kill_run(proc, ray_tmp)
            pytest.fail(f"kill point {what!r} not reached in {RUN_TIMEOUT}s")
        time.sleep(0.01)
    kill_run(proc, ray_tmp)
    return hit


def wait_ok(proc: subprocess.Popen, log: Path) -> None:
    try:
        rc = proc.wait(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        kill_session(proc.pid)
        pytest.fail(f"curate run did not finish in {RUN_TIMEOUT}s; log:\n{log.read_text()[-3000:]}")
    assert rc == 0, f"curate run failed (exit {rc}); log:\n{log.read_text()[-3000:]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------- the clean reference run
@pytest.fixture(scope="module")
def reference(tmp_path_factory, ray_session) -> dict:
    """The demo corpus (small, several shards), its recipe file, and a clean run's output hashes."""
    tmp = tmp_path_factory.mktemp("reliability")
    generate(tmp / "data", seed=7, scale=0.4)
    data = demo_recipe(tmp / "data", tmp / "unused", budget_tokens=90_000)
    data["shards"] = {"format": "megatron", "max_tokens": 12_000}
    recipe_file = tmp / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(data, sort_keys=False))
    res = run(load_recipe(recipe_file), out=str(tmp / "clean"), quiet=True)
    n_parts = len(json.loads((res.run_dir / "work" / "partitions.json").read_text()))
    assert len(res.manifest["shards"]) >= 5, "the reference must have several shards to kill between"
    return {"tmp": tmp, "recipe": recipe_file, "data": data, "clean": res.run_dir, "n_parts": n_parts,
            "hashes": output_hashes(res.run_dir)}


# ---------------------------------------------------------------------------- kill -9 and resume
@pytest.mark.slow
def test_sigkill_at_four_points_then_resume_is_byte_identical_10(reference, tmp_path) -> None:
    """SIGKILL ``curate run`` during ingest, later partitions, dedup, the mix's tasks and shard writing; each rerun
    resumes."""
    out = tmp_path / "run"
    log = tmp_path / "run.log"
    parts = out / "work" / "parts"
    n_parts = reference["n_parts"]

    def done_count() -> int:
        return len(list(parts.glob("*.done"))) if parts.is_dir() else 0

    dedup, mixd = out / "work" / "dedup", out / "work" / "mix"
    points: list[tuple[str, Callable[[], bool]]] = [
        ("ingest", lambda: done_count() >= 1),
        ("later partitions", lambda: done_count() >= n_parts // 2 + 1),
        ("dedup", lambda: dedup.is_dir() and not (dedup / "done.json").exists()),
        # inside the mix's tasks: some partitions prepared or leaves selected, the plan (its done marker) not yet
        ("mix", lambda: mixd.is_dir() and any(mixd.glob("*/*.parquet")) and not (mixd / "plan.json").exists()),
        ("shards", lambda: (out / "shards").is_dir() and any((out / "shards").glob("*.json"))),
    ]
    report = []
    first_done: dict[str, int] = {}
    with private_ray_tmp() as ray_tmp:
        env = run_env(ray_tmp)
        for what, ready in points:
            proc = start_run(reference["recipe"], out, env, log)
            hit = kill_when(proc, ray_tmp, ready, what=what)
            state = {"point": what, "hit": hit, "interrupted": not (out / "manifest.json").exists(),
                     "parts_done": done_count(), "dedup_done": (dedup / "done.json").exists(),
                     "shards_done": len(list((out / "shards").glob("*.json"))) if (out / "shards").is_dir() else 0,
                     "temp_files_left": len(list(out.rglob("*.tmp")))}
            report.append(state)
            if what == "ingest":
                first_done = {p.name: p.stat().st_mtime_ns for p in parts.glob("*.done")}
        proc = start_run(reference["recipe"], out, env, log)
        wait_ok(proc, log)
        kill_run(proc, ray_tmp)  # nothing may outlive a finished run either
    print(json.dumps(report, indent=1))
    interrupted = [r["point"] for r in report if r["interrupted"]]
    assert len(interrupted) >= 3, f"only {interrupted} of the kill points interrupted the run: {report}"
    # resumed runs skipped the partitions finished before the first kill: their markers were not rewritten
    assert first_done and all((parts / k).stat().st_mtime_ns == t for k, t in first_done.items())
    assert not list(out.rglob("*.tmp")), "a resumed run removes the temporary files of killed attempts"
    assert_same_outputs(output_hashes(out), reference["hashes"])


# ---------------------------------------------------------------------------- resume refusals and --force
def _cli(*args: str, env: dict | None = None, timeout: int = RUN_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "curate.cli", *args], capture_output=True, text=True, timeout=timeout,
                          env=env, check=False, cwd=Path(__file__).resolve().parent.parent)


def _tiny_recipe(root: Path, **overrides) -> Path:
    """One JSON-lines source of 20 short documents: a whole run is a few seconds."""
    data_file = root / "docs.jsonl"
    if not data_file.exists():
        words = "river stone market garden window paper music light winter harbor".split()
        lines = [json.dumps({"text": " ".join(words[(i + k) % 10] for k in range(40))}) for i in range(20)]
        data_file.write_text("\n".join(lines) + "\n")
    d = {"name": "tiny", "seed": 1, "budget_tokens": 400, "max_doc_tokens": 64,
         "sources": {"s": {"format": "jsonl", "paths": [str(data_file)], "text_column": "text"}},
         "mixture": {"all": {"share": 1.0, "sources": {"s": 1}}}, "shards": {"max_tokens": 100}, **overrides}
    f = root / f"tiny-{d['seed']}.yaml"
    f.write_text(yaml.safe_dump(d, sort_keys=False))
    return f


def test_changed_recipe_is_refused_unless_force_10(ray_session, tmp_path) -> None:
    """Resuming a run directory with another recipe exits 2 naming both fingerprints; --force starts over,
    deleting only what curate writes."""
    out = tmp_path / "run"
    first = _tiny_recipe(tmp_path)
    run(load_recipe(first), out=str(out), quiet=True)
    foreign = out / "notes.txt"
    foreign.write_text("mine, not curate's")
    before = output_hashes(out)
    assert any(k.startswith("shards/") for k in before)
    changed = _tiny_recipe(tmp_path, seed=2)

    res = _cli("run", str(changed), "--out", str(out), "--quiet", "--no-audit")
    assert res.returncode == 2, res.stderr
    fp_old, fp_new = load_recipe(first).fingerprint()[:12], load_recipe(changed).fingerprint()[:12]
    assert res.stderr.startswith(f"curate run: error: {out} holds a run of a different recipe "
                                 f"(fingerprint {fp_old}, this recipe {fp_new})"), res.stderr
    assert "--force" in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert output_hashes(out) == before, "a refused resume must not touch the run"

    # --force, connected to the test session's Ray so no second local Ray has to start
    address = ray_session.get_runtime_context().gcs_address
    res = _cli("run", str(changed), "--out", str(out), "--quiet", "--no-audit", "--force", "--ray-address", address)
    assert res.returncode == 0, res.stderr
    assert foreign.read_text() == "mine, not curate's", "--force deleted a file curate did not write"
    assert json.loads((out / "run.json").read_text())["fingerprint"] == load_recipe(changed).fingerprint()
    assert output_hashes(out) != before


def test_force_on_a_foreign_directory_keeps_foreign_files_10(tmp_path) -> None:
    """A folder with no run.json is no curate run: cleaning it is refused, nothing is deleted (issue 22 item 2)."""
    from curate.errors import ResumeError
    from curate.runner import clean_run_dir

    d = tmp_path / "mine"
    (d / "shards").mkdir(parents=True)
    (d / "shards" / "x.bin").write_bytes(b"1")
    (d / "data.csv").write_text("a,b\n")
    (d / "ledger.json").write_text("{}")
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    with pytest.raises(ResumeError, match="no run.json"):
        clean_run_dir(d)
    assert sorted(p.name for p in d.iterdir()) == ["data.csv", "ledger.json", "shards"]
    assert (d / "shards" / "x.bin").exists() and outside.exists()


def test_resume_removes_only_stale_temporary_files_10(tmp_path) -> None:
    from curate.runner import remove_stale_temps

    d = tmp_path / "run"
    stale = [d / "shards" / "mix_00003.bin.tmp", d / "shards" / ".mix_00003.lineage.parquet.4242.tmp",
             d / "work" / "parts" / "p000001.tok.4242.tmp", d / ".ledger.json.4242.tmp", d / "LICENSES.md.tmp"]
    keep = [d / "shards" / "mix_00000.bin", d / "notes.tmp", d / "mine" / "x.tmp", d / "ledger.json"]
    for f in stale + keep:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"x")
    assert remove_stale_temps(d) == len(stale)
    assert not any(f.exists() for f in stale)
    assert all(f.exists() for f in keep), "files curate did not write stay"


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", "/abs", "a\\b", "", ".hidden"])
def test_shard_name_cannot_escape_the_run_directory_10(name: str, tmp_path) -> None:
    from curate.errors import RecipeError

    data = yaml.safe_load(_tiny_recipe(tmp_path).read_text())
    data["shards"]["name"] = name
    with pytest.raises(RecipeError) as ei:
        parse_recipe(data, base_dir=tmp_path)
    assert ei.value.path == "shards.name", str(ei.value)
    assert "plain file-name prefix" in str(ei.value)


# ---------------------------------------------------------------------------- a lost Ray node
def _start_node(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "ab") as fh:
        return subprocess.Popen(cmd, env=env, start_new_session=True, stdout=fh, stderr=subprocess.STDOUT)


def _tree(proc: subprocess.Popen) -> list[psutil.Process]:
    try:
        root = psutil.Process(proc.pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _stop_node(proc: subprocess.Popen) -> None:
    """Stop one ``ray start --block`` node: SIGKILL it and every descendant (raylet, agents, workers), by pid."""
    procs = _tree(proc)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.kill()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)
    psutil.wait_procs(procs, timeout=20)


@pytest.mark.cluster
@pytest.mark.slow
def test_losing_a_worker_node_mid_run_costs_retries_not_the_run_10(reference, tmp_path) -> None:
    """A two-node cluster on loopback; the worker node is SIGKILLed while it processes partitions."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    out = tmp_path / "run"
    log = tmp_path / "run.log"
    nodes: list[subprocess.Popen] = []
    with private_ray_tmp() as ray_tmp:
        env = run_env(ray_tmp)
        # node death is noticed within ~2 s instead of the default ~30 s
        env.update(RAY_health_check_period_ms="500", RAY_health_check_timeout_ms="1000",
                   RAY_health_check_failure_threshold="3")
        common = ["--num-cpus", "1", "--block", "--disable-usage-stats", "--node-ip-address", "127.0.0.1"]

        def ports() -> list[str]:
            return ["--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
                    "--metrics-export-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port()),
                    "--dashboard-agent-grpc-port", str(free_port()), "--runtime-env-agent-port", str(free_port())]

        try:
            nodes.append(_start_node([RAY_BIN, "start", "--head", "--port", str(port), "--temp-dir", str(ray_tmp),
                                      "--include-dashboard", "false", *common, *ports()],
                                     env, tmp_path / "head.log"))
            _wait_started(nodes[0], tmp_path / "head.log")
            nodes.append(_start_node([RAY_BIN, "start", "--address", address, *common, *ports()],
                                     env, tmp_path / "worker.log"))
            _wait_started(nodes[1], tmp_path / "worker.log")
            worker = nodes[1]
            proc = start_run(reference["recipe"], out, env, log, "--ray-address", address)
            parts = out / "work" / "parts"

            def busy_on_worker() -> bool:
                # a partition task is executing on the worker node (Ray's process title while busy)
                if not parts.is_dir() or not any(parts.glob("*.done")):
                    return False
                return any(_cmdline(p)[:1] == ["ray::process_partition"] for p in _tree(worker))

            deadline = time.monotonic() + RUN_TIMEOUT
            while not busy_on_worker():
                assert proc.poll() is None, f"run ended before the node could be killed:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, "no partition task ever ran on the worker node"
                time.sleep(0.01)
            killed = _tree(worker)
            _stop_node(worker)
            assert not [p for p in killed if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
            assert not (out / "manifest.json").exists(), "the node was lost after the run finished"
            wait_ok(proc, log)
            # the partition that was running on the lost node was retried (Ray's core worker says so)
            assert "process_partition failed" in log.read_text(errors="replace"), log.read_text()[-3000:]
        finally:
            for n in reversed(nodes):
                _stop_node(n)
    assert_same_outputs(output_hashes(out), reference["hashes"])


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def _wait_started(proc: subprocess.Popen, log: Path) -> None:
    """Wait until ``ray start --block`` says the node runs (the raylet has registered with the GCS)."""
    deadline = time.monotonic() + 120
    while "Ray runtime started" not in log.read_text(errors="replace"):
        assert proc.poll() is None, f"ray start failed:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"ray start did not come up:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)
