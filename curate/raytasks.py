"""The one Ray policy of curate: how tasks and actors retry, and how their errors reach the user.

- A task (dedup's map and reduce steps, the mix plan, a shard) runs on one CPU and is retried up to
  :data:`TASK_RETRIES` times when its worker dies; every task is idempotent (atomic writes, done markers), so a
  retry rewrites the same bytes.
- A partition actor restarts without limit and retries its calls (``ACTOR_OPTIONS``): a partition is redone
  from its input, and a lost actor must not fail the run.
- :func:`init_ray` starts the embedded local Ray (or joins a cluster) once per process: ``curate run`` and
  ``curate audit`` (and any caller of :func:`curate.audit.audit`) run their tasks on it.
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
from collections.abc import Callable
from typing import Any

from curate.errors import CurateError, output_error

TASK_RETRIES = 3
TASK_OPTIONS: dict[str, Any] = {"num_cpus": 1, "max_retries": TASK_RETRIES}
ACTOR_OPTIONS: dict[str, Any] = {"num_cpus": 1, "max_restarts": -1, "max_task_retries": -1}


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


def releasing(fn: Callable) -> Callable:
    """``fn`` that calls :func:`release_memory` when it returns or raises; same name, so a Ray worker's process
    title (``ray::write_shard``) and the task's name in Ray's state API stay ``fn``'s."""

    @functools.wraps(fn)
    def task(*args: Any, **kwargs: Any) -> Any:
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
    """
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
    try:
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False)
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
    import ray

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
