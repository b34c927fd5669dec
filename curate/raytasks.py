"""The one Ray policy of curate: how tasks and actors retry, and how their errors reach the user.

- A task (dedup's map and reduce steps, the mix plan, a shard) runs on one CPU and is retried up to
  :data:`TASK_RETRIES` times when its worker dies; every task is idempotent (atomic writes, done markers), so a
  retry rewrites the same bytes.
- A partition task is retried without limit (``PARTS_TASK_OPTIONS``): a partition is redone from its input,
  and a lost worker or node must not fail the run.
- :func:`init_ray` starts the embedded local Ray (or joins a cluster) once per process: ``curate run`` and
  ``curate audit`` (and any caller of :func:`curate.audit.audit`) run their tasks on it. ``curate run`` starts
  it in the background (:class:`RayStart`) while the driver imports, reads the recipe and links a remix.
- :func:`warm_workers` starts idle worker processes, with the modules a run's tasks import, ahead of the steps
  that need them (a fresh worker costs about 1 s on 2 cores): at Ray's start; :func:`wait_warm` lets the first
  tasks find them.
- :func:`get` waits for results and turns a Ray task error back into the :class:`~curate.errors.CurateError`
  raised inside (a bad input file, a recipe problem) or the matching ``OutputError`` (disk full), so the CLI
  prints curate's message, not a remote traceback.
- Every task gives the memory it freed back to the OS when it ends (:func:`release_memory`): Ray pools its
  workers, so a worker runs many tasks in turn (dedup reduces, then shard writers, then audit summaries), and
  pyarrow's allocator (mimalloc) keeps what a task freed for the next allocation. Measured: 250 MB of
  freed Arrow buffers stayed in a process until ``release_unused()``, and in the scale bench an idle pooled
  worker held 479 MB of anonymous memory at 1M documents; the next task, whatever its own size, started from there.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from curate.errors import CurateError, output_error

TASK_RETRIES = 3
TASK_OPTIONS: dict[str, Any] = {"num_cpus": 1, "max_retries": TASK_RETRIES}
#: a partition task (``curate.partition.process_partition``) is retried without limit when its worker or node dies
PARTS_TASK_OPTIONS: dict[str, Any] = {"num_cpus": 1, "max_retries": -1}


def remote_task(fn: Callable, **options: Any):
    """``fn`` as a Ray remote function under the task policy (``options`` override it); it releases its freed
    memory when it ends (:func:`releasing`)."""
    import ray

    return ray.remote(**{**TASK_OPTIONS, **options})(releasing(fn))


def _libc_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (None elsewhere: musl, macOS)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _libc_malloc_trim()


def release_memory() -> None:
    """Return the memory this process has freed but its allocators still hold to the OS.

    pyarrow's default pool (mimalloc in the wheels) keeps freed buffers for reuse
    (``MemoryPool.release_unused``), and glibc keeps freed heap pages of numpy and Python
    (``malloc_trim(0)``). Nothing that is still referenced moves; a few ms per call.
    """
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


#: what a kind of task keeps in its worker process for its next tasks of the same kind (``{task name: drop}``,
#: :func:`keep_for_next_task`); dropped when the worker runs a task of another kind
_kept: dict[str, Callable[[], None]] = {}


def keep_for_next_task(owner: str, drop: Callable[[], None]) -> None:
    """Note that tasks named ``owner`` keep something in this worker process for the next ones (the partition
    tasks: their processor, the models, about 250 MB on the demo recipe); ``drop()`` lets it go. The first task of
    another name in this process calls it (:func:`releasing`), so a worker that goes on to the dedup, mix and
    shard tasks does not carry the models through them."""
    _kept[owner] = drop


def releasing(fn: Callable) -> Callable:
    """``fn`` that first drops what other kinds of task kept in this process (:func:`keep_for_next_task`) and calls
    :func:`release_memory` when it returns or raises; same name, so a Ray worker's process title
    (``ray::write_shard``) and the task's name in Ray's state API stay ``fn``'s."""

    @functools.wraps(fn)
    def task(*args: Any, **kwargs: Any) -> Any:
        for owner in [o for o in _kept if o != fn.__name__]:
            _kept.pop(owner)()
        try:
            return fn(*args, **kwargs)
        finally:
            release_memory()

    return task


def unwrap(e: Exception) -> Exception:
    """Return the CurateError inside a Ray task error, so users see our message, not a remote traceback.

    A task that could not write its output (disk full, read-only folder) gives the matching ``OutputError``.
    """
    from ray.exceptions import RayError

    cause = e
    while cause is not None:
        # a RayTaskError(SchemaError) is an instance of SchemaError too, but its message is Ray's header: look inside
        if not isinstance(cause, RayError):
            if isinstance(cause, CurateError):
                return cause
            if (err := output_error(cause)) is not None:
                return err
        cause = getattr(cause, "cause", None)
    return e


def get(refs: Any) -> Any:
    """``ray.get(refs)``, re-raising the user-facing cause of a failed task (:func:`unwrap`)."""
    import ray

    try:
        return ray.get(refs)
    except Exception as e:  # noqa: BLE001 - re-raised with the user-facing cause
        inner = unwrap(e)
        if inner is not e:
            raise inner from None
        raise


def init_ray(ray_address: str | None, *, num_cpus: int | None = None):
    """Start the embedded local Ray (or connect to ``ray_address``) with the environment workers need.

    Workers get ``TOKENIZERS_PARALLELISM=false`` and the driver's Hugging Face / curate settings (offline mode,
    a local mirror of Hub datasets, the filters folder). On a cluster they travel as the job's
    ``runtime_env``. Locally they are set in this process's environment while Ray starts, so the raylet and
    every worker it spawns inherit them, and the environment is restored afterwards: a job with a
    ``runtime_env`` cannot use the workers Ray prestarts at start-up (those have none), so its first task would
    wait for a fresh worker, 1.4-5.4 s on 2 busy cores against 0.35-0.43 s for an idle prestarted one
    (measured, ``ray.init`` then one no-op task).

    While a :class:`RayStart` of this process is under way (``curate run`` begins one before it reads the
    recipe), this waits for it instead of starting another.
    """
    start = start_in_flight()
    if start is not None and not start.in_start_thread():
        return start.result()
    return _init_ray_now(ray_address, num_cpus=num_cpus)


def _init_ray_now(ray_address: str | None, *, num_cpus: int | None = None):
    import ray

    if ray.is_initialized():
        return ray
    env_vars = {"TOKENIZERS_PARALLELISM": "false"}
    # workers see the same Hugging Face settings as the driver (offline mode, a local mirror of Hub datasets)
    for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HOME", "CURATE_HF_MIRROR", "CURATE_FILTERS"):
        if k in os.environ:
            env_vars[k] = os.environ[k]
    if ray_address:
        ray.init(address=ray_address, runtime_env={"env_vars": env_vars}, log_to_driver=False)
        return ray
    saved = {k: os.environ.get(k) for k in env_vars}
    os.environ.update(env_vars)
    cpus = num_cpus or os.cpu_count() or 1
    try:
        # Ray's own soft limit on worker processes (the CPU count): a task backlog makes the raylet prestart
        # workers up to it, and idle ones beyond it are killed after 1 s. Raised (2 x CPUs + 1, for partition
        # actors beside warm workers) it let every burst of queued tasks start 2-3 processes on the demo corpus
        # that no task then used (the mix 1.5 s instead of 0.63 s)
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    _started_local_ray.append(True)
    return ray


#: non-empty once :func:`init_ray` has started the local Ray itself (not a cluster, not a caller's ``ray.init``)
_started_local_ray: list[bool] = []


def shutdown_ray() -> bool:
    """Stop the local Ray that :func:`init_ray` started in this process; True when it stopped one.

    Nothing happens when Ray is not up, when it is a cluster (``--ray-address``: the driver only disconnects
    when it exits) or when the caller started Ray itself (a test session, a notebook's own ``ray.init``): those
    are not curate's to stop. Called by ``curate`` (:func:`curate.cli.exit_process`) once a command's outputs are
    written, instead of Ray's exit hook, which costs about 1.5 s more:

    - the exit hook sleeps 0.5 s first (``ray.shutdown(_exiting_interpreter=True)``, "so that log messages
      finish printing"); an explicit ``ray.shutdown()`` does not;
    - Ray stops its processes one by one, each with SIGTERM and up to 1 s to exit, the GCS before the autoscaler
      monitor; the monitor's SIGTERM handler then tries to report its own death to the stopped GCS and is
      SIGKILLed when the second runs out (measured: ``kill monitor`` 1.02 s of a 1.19 s ``ray.shutdown()``).
      A local run has no autoscaler state to keep, so the monitor is SIGKILLed first (0.014 s, Ray's own
      ``Node.kill_monitor``); the rest of the shutdown then takes 0.4 s (raylet 0.07, GCS 0.03 s).
    """
    start = start_in_flight()
    if start is not None:  # a Ray still starting is waited for, then stopped: never left half started
        start._done.wait()
        start._release(replay=False)
        _starts.clear()
    import ray

    _warm_refs.clear()  # refs of this Ray session: nothing to wait for in the next one
    if not _started_local_ray or not ray.is_initialized():
        return False
    try:  # Ray's private node handle: only a head node this process started has one
        from ray._private import worker as ray_worker

        node = ray_worker._global_node
        if node is not None and node.is_head():
            node.kill_monitor(check_alive=False)
    except Exception as e:  # noqa: BLE001 - another Ray version: ray.shutdown() below stops it the slow way
        logging.getLogger("curate").debug("curate: the Ray monitor was not killed first: %s: %s",
                                          type(e).__name__, e)
    ray.shutdown()
    _started_local_ray.clear()
    return True


# ---------------------------------------------------------------------------- warm workers, Ray in the background
#: what a run's tasks import in their worker: the partition processor, the source registry (rebuilding a recipe
#: from its payload imports it: 0.18-0.5 s of polars and the readers in a worker's first mix task), dedup, the mix,
#: shards, the documents table, the audit's per-shard summaries; :func:`warm_workers` loads them ahead
WORKER_MODULES = ("curate.partition", "curate.sources", "curate.dedup", "curate.mix.task", "curate.mix.writer",
                  "curate.mix.documents", "curate.shard_formats", "curate.shard_summary")


def _import_modules(modules: tuple[str, ...]) -> int:
    """Task body of :func:`warm_workers`: import ``modules``; return the worker's pid.

    At the normal priority and in the task itself. Tried first: the imports in a thread under ``SCHED_IDLE``
    (so as to take no CPU from the partition actors beside them); on 2 cores at load 6-20 they starved for
    7-9 s while holding the workers the dedup tasks then needed, so those started yet more workers. Not done
    either: returning at once and importing in a background thread, which lets the next task's own imports run
    concurrently with them. An import that fails is left for the task that needs the module, which raises it
    again.
    """
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001, S110 - re-raised by the task that imports it
            pass
    return os.getpid()


def warm_count(ray) -> int:
    """How many workers :func:`warm_workers` should start: one per CPU of the cluster (the partition tasks, then
    the dedup and mix tasks, run on them; the mix warms a replacement for the validation carve's worker, which
    exits after its task). Measured on the demo corpus: a spare beside them made ``curate run`` 0.2 s slower, its
    imports sharing the CPUs with the first partitions."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def warm_workers(n: int, modules: tuple[str, ...] = WORKER_MODULES) -> list:
    """Start ``n`` zero-CPU tasks that load ``modules`` into Ray worker processes, without waiting for them.

    A Ray worker process costs about 1 s to start on 2 cores (interpreter, ``import ray``, registration) and
    the first task of a kind a few tenths more for its imports; a step that finds no idle worker waits for both
    (``bench fixed``: a wave of 2 tasks on fresh workers 1.03 s, on warm ones 0.014 s). Called right after Ray's
    start (:class:`RayStart`, or by ``runner.run`` on a caller's Ray) and beside a task whose worker exits after
    it (the validation carve), they leave idle workers behind for the next steps (:func:`_import_modules`);
    one per CPU stays within Ray's soft limit on worker processes, so they are not killed while idle. They write
    nothing and are never retried; the refs are returned (and kept here, so a caller may drop them).
    """
    import ray

    fn = ray.remote(num_cpus=0, max_retries=0)(_import_modules)
    refs = [fn.remote(tuple(modules)) for _ in range(n)]
    # kept: a failed warming task (its node lost) whose ref is dropped unread makes Ray print "Unhandled
    # error" at garbage collection
    _warm_refs.extend(refs)
    return refs


_warm_refs: list = []


def wait_warm(timeout: float = 10.0) -> None:
    """Wait (at most ``timeout`` seconds) for the warming tasks under way, so that the tasks submitted next find
    their workers idle and warm instead of starting more processes beside them (a worker still importing is
    busy to Ray's scheduler, which then starts a fresh one for a new task: two processes paying the same
    start-up on the same CPUs). Best effort: warming only saves time, so a failure to wait is ignored."""
    import ray

    if not _warm_refs:
        return
    try:
        ray.wait(list(_warm_refs), num_returns=len(_warm_refs), timeout=timeout)
    except Exception as e:  # noqa: BLE001 - e.g. refs of a Ray session that has ended since
        logging.getLogger("curate").debug("curate: not waiting for warm workers: %s: %s", type(e).__name__, e)
    _warm_refs.clear()


def warm_this_node(ray) -> list:
    """:func:`warm_workers` with one worker per CPU when the Ray cluster is a single node (the embedded local Ray,
    or a caller's one-node Ray); on a multi-node cluster nothing (zero-CPU tasks are not spread by CPU, so a
    cluster's CPU count of them could start that many processes on one node)."""
    if sum(1 for n in ray.nodes() if n.get("Alive")) != 1:
        return []
    return warm_workers(warm_count(ray))


class RayStart:
    """:func:`init_ray` in a background thread, so that Ray's start (about 4 s) overlaps the driver's own work.

    ``curate run`` begins one before it imports the runner and reads the recipe (:func:`curate.cli.main`);
    ``curate.runner.run`` begins one, if none is under way and Ray is not up, before it links and checks. The
    last one begun is :func:`start_in_flight`: :func:`init_ray` waits for it, :func:`shutdown_ray` waits for it
    and then stops Ray, so an error in the driver never leaves a half-started Ray behind.

    ``result()`` waits for the start and returns the ``ray`` module (or raises what the start raised). The thread
    stays parked afterwards: Ray's processes are started with ``PR_SET_PDEATHSIG``, which Linux ties to the
    *thread* that forked them, so they would be killed if it ended. Right after the start it runs
    :func:`warm_workers` on a single-node Ray (:func:`warm_this_node`; on a cluster nothing is warmed): one worker
    process per CPU starts and imports the modules of a run's tasks. The parts
    phase waits for them (:func:`wait_warm`), so its partition tasks, and after them the dedup, mix and shard
    tasks, run in these processes instead of Ray's starting more beside them (measured on the demo corpus, with
    partition actors in processes of their own and workers warmed at the parts phase's tail: the dedup's first
    wave waited 1.4 s for fresh workers; `curate run` 7.3 s after Ray's start, 5.9 s with these).

    What Ray logs while it starts (its token-authentication warning, "Started a local Ray instance") is held
    back and printed when the driver first waits for the start, where a run printed it before; a command that
    fails before (a bad recipe, a run directory in use) shows its error first and :func:`abandon_start` drops
    the log.
    """

    def __init__(self, ray_address: str | None, *, num_cpus: int | None = None, warm: bool = True) -> None:
        import threading

        self._done = threading.Event()
        self._ray: Any = None
        #: ``time.perf_counter()`` when Ray's start returned (None before): the moment a run is timed from
        self.ready_at: float | None = None
        self._error: BaseException | None = None
        self._warm = warm
        self._held: list[logging.LogRecord] | None = []  # None once released
        self._hold = _HoldLogs(self)
        _quiet_thread_warning()
        self._thread = threading.Thread(target=self._start, args=(ray_address, num_cpus), name="curate-ray-start",
                                        daemon=True)
        _starts[:] = [self]
        self._thread.start()

    def _start(self, ray_address: str | None, num_cpus: int | None) -> None:
        import threading

        try:
            import ray  # noqa: F401 - sets up the "ray" logger's handlers, which then hold the start's records

            for h in logging.getLogger("ray").handlers:
                h.addFilter(self._hold)
            self._ray = _init_ray_now(ray_address, num_cpus=num_cpus)
            self.ready_at = time.perf_counter()
            if self._warm:
                warm_this_node(self._ray)
        except BaseException as e:  # noqa: BLE001 - handed to the caller by result()
            self._error = e
        finally:
            self._done.set()
        threading.Event().wait()  # parked for good: see the class docstring

    def done(self) -> bool:
        """Whether the start has ended (Ray up, or the start failed)."""
        return self._done.is_set()

    def in_start_thread(self) -> bool:
        import threading

        return threading.current_thread() is self._thread

    def result(self):
        """The ``ray`` module once Ray is up; re-raises an error of the start. Prints the start's held log."""
        self._done.wait()
        self._release(replay=True)
        if self._error is not None:
            raise self._error
        return self._ray

    def _release(self, *, replay: bool) -> None:
        held, self._held = self._held, None
        if held is None:
            return
        handlers = logging.getLogger("ray").handlers
        for h in handlers:
            h.removeFilter(self._hold)
        for rec in held if replay else ():
            for h in handlers:
                if rec.levelno >= h.level:
                    h.handle(rec)


class _HoldLogs(logging.Filter):
    """On the "ray" logger's handlers: keeps back the records of a :class:`RayStart`'s thread until released."""

    def __init__(self, start: RayStart) -> None:
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        held = self.start._held
        if held is not None and record.thread == self.start._thread.ident:
            if record not in held:
                held.append(record)
            return False
        return True


def abandon_start() -> bool:
    """For a process about to exit: end a Ray start still under way at once; True when there was one.

    Waiting for it (a few seconds) and stopping Ray properly would keep a failed command's prompt waiting; Ray's
    processes are this process's descendants, so they are SIGKILLed, all at once, collected before the first
    kill (the dashboard and runtime-env agents are the raylet's children: killed after it, they would be
    reparented and linger for a minute). The start's held log is dropped.
    """
    start = start_in_flight()
    if start is None or start.done():
        return False
    start._release(replay=False)
    import signal

    for pid in _descendants(os.getpid()):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:  # gone already
            pass
    return True


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux ``/proc``; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for e in entries:
        if not e.isdigit():
            continue
        try:
            with open(f"/proc/{e}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])  # the name may hold spaces and parentheses
        children.setdefault(ppid, []).append(int(e))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


#: the last :class:`RayStart` of this process, until :func:`shutdown_ray`
_starts: list[RayStart] = []


def start_in_flight() -> RayStart | None:
    """The :class:`RayStart` of this process (under way or done), None when none was begun since the last
    :func:`shutdown_ray`."""
    return _starts[-1] if _starts else None


def _quiet_thread_warning() -> None:
    """Install Ray's SIGTERM handler from the main thread (``ray.init`` only does it there) and drop the
    warning ``ray.init`` logs in another thread."""
    import signal
    import sys
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))  # what ray.init installs

    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return not str(record.msg).startswith("SIGTERM handler is not set")

    lg = logging.getLogger("ray._private.worker")
    if not any(isinstance(f, logging.Filter) and type(f).__name__ == "_Drop" for f in lg.filters):
        lg.addFilter(_Drop())
