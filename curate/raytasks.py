"""The one Ray policy of curate: how tasks and actors retry, and how their errors reach the user.

- A task (dedup's map and reduce steps, the mix plan, a shard) runs on one CPU and is retried up to
  :data:`TASK_RETRIES` times when its worker dies; every task is idempotent (atomic writes, done markers), so a
  retry rewrites the same bytes.
- A partition actor restarts without limit and retries its calls (``ACTOR_OPTIONS``): a partition is redone
  from its input, and a lost actor must not fail the run.
- :func:`get` waits for results and turns a Ray task error back into the :class:`~curate.errors.CurateError`
  raised inside (a bad input file, a recipe problem) or the matching ``OutputError`` (disk full), so the CLI
  prints curate's message, not a remote traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from curate.errors import CurateError, output_error

TASK_RETRIES = 3
TASK_OPTIONS: dict[str, Any] = {"num_cpus": 1, "max_retries": TASK_RETRIES}
ACTOR_OPTIONS: dict[str, Any] = {"num_cpus": 1, "max_restarts": -1, "max_task_retries": -1}


def remote_task(fn: Callable, **options: Any):
    """``fn`` as a Ray remote function under the task policy (``options`` override it)."""
    import ray

    return ray.remote(**{**TASK_OPTIONS, **options})(fn)


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
