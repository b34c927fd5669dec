"""The one Ray policy (curate/raytasks.py): task options, and a failed task's error as the user should see it."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from curate import raytasks
from curate.errors import OutputError, SchemaError


def _schema_error() -> None:
    raise SchemaError("required column `text` not found", file="in.parquet", column="text")


def _disk_full() -> None:
    raise OSError(errno.ENOSPC, "No space left on device", "/run/shards/mix_00000.bin")


def _bug() -> None:
    raise ValueError("a bug, not the user's input")


def test_remote_task_takes_the_policy_and_overrides_it(ray_session) -> None:
    assert raytasks.TASK_OPTIONS == {"num_cpus": 1, "max_retries": raytasks.TASK_RETRIES}
    opts = raytasks.remote_task(_bug)._default_options
    assert (opts["num_cpus"], opts["max_retries"]) == (1, raytasks.TASK_RETRIES)
    opts = raytasks.remote_task(_bug, max_calls=1, max_retries=0)._default_options
    assert (opts["num_cpus"], opts["max_retries"], opts["max_calls"]) == (1, 0, 1)


def test_get_reraises_curate_s_own_error_not_ray_s(ray_session) -> None:
    ref = raytasks.remote_task(_schema_error, max_retries=0).remote()
    with pytest.raises(SchemaError) as ei:
        raytasks.get(ref)
    assert type(ei.value) is SchemaError, "the error raised in the task, not Ray's wrapper"
    assert str(ei.value) == "in.parquet, column `text`: required column `text` not found"


def test_get_turns_a_failed_write_into_an_output_error_naming_the_file(ray_session) -> None:
    with pytest.raises(OutputError, match=r"cannot write /run/shards/mix_00000\.bin: .*\(ENOSPC\).*rerun"):
        raytasks.get(raytasks.remote_task(_disk_full, max_retries=0).remote())


def test_any_other_error_stays_ray_s_with_its_traceback(ray_session) -> None:
    from ray.exceptions import RayTaskError

    with pytest.raises(RayTaskError, match="a bug, not the user's input"):
        raytasks.get(raytasks.remote_task(_bug, max_retries=0).remote())
    e = ValueError("plain")
    assert raytasks.unwrap(e) is e


def _anon_kb(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    raise AssertionError("no RssAnon in /proc/<pid>/status")


def _hold_and_free_arrow() -> tuple[int, int]:
    """Allocate 256 MB in pyarrow's pool and free it; return (pid, anonymous kB while it was held)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    a = pc.multiply(pa.array(np.arange(32_000_000)), 3)
    held = _anon_kb()
    del a
    return os.getpid(), held


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads RssAnon from /proc")
def test_a_task_gives_its_freed_memory_back_before_the_worker_runs_the_next_16(ray_session) -> None:
    """pyarrow's mimalloc pool keeps what a task freed (measured: 250 MB stayed until ``release_unused``), and Ray
    pools its workers: the next task on that worker, and the idle worker, held it (479 MB idle at 1M scale-bench
    documents). A curate task releases it when it ends, before its result is returned."""
    pid, held = raytasks.get(raytasks.remote_task(_hold_and_free_arrow, max_retries=0).remote())
    after = _anon_kb(pid)
    assert held - after > 200_000, (held, after)


def test_the_released_task_keeps_its_name_and_its_result() -> None:
    fn = raytasks.releasing(_hold_and_free_arrow)
    assert (fn.__name__, fn.__qualname__, fn.__module__) == ("_hold_and_free_arrow", "_hold_and_free_arrow",
                                                             __name__)  # the worker's process title, ray::<name>
    assert raytasks.releasing(lambda x, *, y: x + y)(2, y=3) == 5
    with pytest.raises(ValueError, match="a bug"):
        raytasks.releasing(_bug)()


# ---------------------------------------------------------------------------- warm workers, Ray in the background
def test_warm_workers_import_in_zero_cpu_tasks_and_skip_a_missing_module(ray_session) -> None:
    import os
    import sys

    assert raytasks._import_modules(("json", "curate.no_such_module")) == os.getpid()
    assert "curate.no_such_module" not in sys.modules
    refs = raytasks.warm_workers(2, ("curate.dedup",))
    pids = ray_session.get(refs, timeout=120)
    assert len(pids) == 2 and all(isinstance(p, int) and p != os.getpid() for p in pids)
    assert raytasks.warm_count(ray_session) == int(ray_session.cluster_resources()["CPU"])


def test_a_task_of_another_kind_drops_what_a_kind_kept_for_its_next_tasks(monkeypatch) -> None:
    monkeypatch.setattr(raytasks, "_kept", {})
    dropped = []

    def process_partition() -> str:
        return "same kind"

    def write_shard() -> str:
        return "other kind"

    raytasks.keep_for_next_task("process_partition", lambda: dropped.append(1))
    assert raytasks.releasing(process_partition)() == "same kind" and not dropped
    assert raytasks.releasing(write_shard)() == "other kind" and dropped == [1]
    assert raytasks._kept == {}
    assert raytasks.releasing(write_shard)() == "other kind" and dropped == [1]  # dropped once


def test_wait_warm_returns_once_the_warming_tasks_are_done(ray_session) -> None:
    refs = raytasks.warm_workers(2, ("json",))
    raytasks.wait_warm(timeout=120)
    ready, _ = ray_session.wait(refs, num_returns=len(refs), timeout=0)
    assert len(ready) == 2
    assert raytasks._warm_refs == []  # waited for once
    raytasks.wait_warm(timeout=120)  # nothing under way: returns at once


def test_workers_are_warmed_on_a_single_node_only(ray_session, monkeypatch) -> None:
    """On a multi-node cluster a CPU count of zero-CPU tasks could all start processes on one node: none then."""
    refs = raytasks.warm_this_node(ray_session)
    assert len(refs) == int(ray_session.cluster_resources()["CPU"])
    raytasks.wait_warm(timeout=120)

    class TwoNodes:
        @staticmethod
        def nodes():
            return [{"Alive": True}, {"Alive": True}, {"Alive": False}]

    assert raytasks.warm_this_node(TwoNodes) == []


def test_ray_start_hands_the_start_s_error_to_result(monkeypatch) -> None:
    def fail(address, *, num_cpus=None):
        raise ConnectionError(f"no Ray at {address}")

    monkeypatch.setattr(raytasks, "_init_ray_now", fail)
    monkeypatch.setattr(raytasks, "_starts", [])  # this session's own Ray is not affected
    start = raytasks.RayStart("10.0.0.1:6379", num_cpus=1)
    assert raytasks.start_in_flight() is start
    with pytest.raises(ConnectionError, match="no Ray at 10.0.0.1:6379"):
        start.result()
    assert start.done()
    with pytest.raises(ConnectionError, match="no Ray at"):  # init_ray waits for the start under way
        raytasks.init_ray("10.0.0.1:6379")


@pytest.mark.slow
def test_ray_started_in_a_thread_outlives_the_start_and_warms_workers() -> None:
    """Ray's processes die with the thread that forked them (PR_SET_PDEATHSIG): the start thread stays parked."""
    import subprocess
    import sys
    from pathlib import Path

    from tests.test_reliability import private_ray_tmp, run_env

    code = (
        "import time, ray\n"
        "from curate.raytasks import RayStart, shutdown_ray\n"
        "r = RayStart(None, num_cpus=1, warm=True).result()\n"
        "time.sleep(2)\n"  # well past the start: the raylet and the GCS must still be there
        "print('value', ray.get(ray.remote(num_cpus=1)(lambda: 7).remote(), timeout=120))\n"
        "print('stopped', shutdown_ray())\n"
    )
    root = Path(__file__).resolve().parent.parent
    with private_ray_tmp() as ray_tmp:
        env = {**run_env(ray_tmp), "PYTHONPATH": str(root)}
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                           cwd=root)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "value 7" in p.stdout and "stopped True" in p.stdout, p.stdout + p.stderr[-2000:]
    assert "SIGTERM handler is not set" not in p.stderr
