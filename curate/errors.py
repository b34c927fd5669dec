"""Error hierarchy of curate.

Every error says *where* (recipe path, file, row/line, column) and *how to fix it*.
The CLI turns any :class:`CurateError` into a one-paragraph message and exit code 2
(usage/config) or 1 (run failure); it never shows a bare traceback for these.

- ``RecipeError``: the recipe is invalid; ``path`` is the YAML path (``sources.math.paths[0]``).
- ``SchemaError``: an input file does not have the columns/types its ``format`` needs.
- ``InputError``: an input file cannot be read (corrupt, truncated, wrong encoding).
- ``ShardError``: an output shard is missing, truncated or corrupt.
- ``StageContractError``: a stage changed the rows or their order, or missed a declared column (``curate.pipeline``).
- ``LedgerError``: a stage broke conservation (in != out + dropped + quarantined).
- ``ResumeError``: a run directory belongs to another recipe (fingerprint mismatch), or holds no curate run.
- ``OutputError``: the run directory cannot be written (disk full, read-only, no permission); see
  :func:`output_error`. Every write is atomic, so rerunning the same command once fixed resumes.
- ``RemixError``: ``curate run --from`` cannot reuse that run's processed corpus (settings differ, parts not
  done); names each differing key. ``SweepError``: ``curate sweep`` / ``recipe-from-weights`` cannot do it.
- ``LockError`` (in ``curate.lock``): another run holds the run directory.
"""

from __future__ import annotations

import errno


class CurateError(Exception):
    """Base class of every error curate raises on purpose."""

    exit_code = 1

    def __reduce__(self):
        # The subclasses take keyword-only arguments, which the default exception pickling cannot pass:
        # rebuild from args and attributes instead, so an error raised in a Ray task reaches the driver.
        return (_restore, (type(self), self.args, self.__dict__))


def _restore(cls: type, args: tuple, state: dict) -> CurateError:
    err = cls.__new__(cls)
    err.args = args
    err.__dict__.update(state)
    return err


class RecipeError(CurateError):
    """The recipe is invalid. ``path`` names the YAML path, e.g. ``mixture.soup.share``."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | None = None, recipe_file: str | None = None) -> None:
        self.path = path
        self.recipe_file = recipe_file
        self.message = message
        where = f"{recipe_file}: " if recipe_file else ""
        at = f"`{path}`: " if path else ""
        super().__init__(f"{where}{at}{message}")


class InputError(CurateError):
    """An input file cannot be read. Names the file, and the row/line and column where known."""

    def __init__(self, message: str, *, file: str, row: int | None = None, line: int | None = None,
                 column: str | None = None) -> None:
        self.file, self.row, self.line, self.column = file, row, line, column
        loc = file
        if line is not None:
            loc += f", line {line}"
        if row is not None:
            loc += f", row {row}"
        if column is not None:
            loc += f", column `{column}`"
        super().__init__(f"{loc}: {message}")


class SchemaError(InputError):
    """An input file lacks a required column or has the wrong type for it."""


class ShardError(CurateError):
    """A shard is missing, truncated or does not match its manifest."""


class StageContractError(CurateError):
    """A stage broke its contract at a boundary: it changed the rows or their order, or missed a declared column."""


class LedgerError(CurateError):
    """A stage did not conserve documents: in != out + dropped + quarantined."""


class ResumeError(CurateError):
    """The run directory was made by a different recipe; rerun with --force to start over."""

    exit_code = 2


class RemixError(CurateError):
    """``--from RUN_DIR``: that run's processed corpus cannot be reused for this recipe (see ``curate.remix``)."""

    exit_code = 2


class SweepError(CurateError):
    """A sweep cannot draw its mixtures, or a weights file does not fit the base recipe (``curate.sweep``)."""

    exit_code = 2


class OutputError(CurateError):
    """A file of the run directory cannot be written: disk full, read-only file system, no permission."""


#: ``errno`` values that mean "the output cannot be written here", not a bug: reported in one line.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG})


def output_error(e: BaseException) -> OutputError | None:
    """The :class:`OutputError` for an ``OSError`` of :data:`WRITE_ERRNOS`, else None."""
    if not isinstance(e, OSError) or e.errno not in WRITE_ERRNOS:
        return None
    what = f"cannot write {e.filename}" if e.filename else "cannot write the run directory"
    code = errno.errorcode.get(e.errno, str(e.errno))
    msg = (f"{what}: {e.strerror or e} ({code}); free space or make the output writable (or choose another "
           "--out), then rerun the same command: finished work is kept and the run resumes")
    return OutputError(msg)
