"""The ``curate`` command line: ``plan``, ``run``, ``audit``, ``inspect``, ``sweep``, ``recipe-from-weights``,
``quality train``.

Exit codes: 0 success; 1 a run failure or an audit violation; 2 a usage or recipe error; 3 ``audit`` of an
incomplete run (without ``--partial``). Errors curate raises on purpose (``CurateError``) print as one message
that says where and how to fix; so does an output that cannot be written (disk full, read-only folder:
``curate.errors.output_error``), and another run holding the run directory (``curate.lock``). Only genuine bugs
print a traceback.

The ``curate`` program (:func:`console`) ends through :func:`exit_process`: the local Ray it started is stopped
(``curate.raytasks.shutdown_ray``), the exit handlers run and the output is flushed, then the process exits
without tearing down its interpreter (0.7 s after a 1 GB remix: 1,900 modules and 200,000 objects freed one by
one, for nothing, as the process is ending). Every output is written and closed before (atomic writes).
:func:`main` itself returns the exit code, for callers in the same process (tests).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import sys
from typing import NoReturn

from curate.errors import CurateError, output_error
from curate.layout import RunLayout


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="curate", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    pl = sub.add_parser("plan", help="validate a recipe and predict tokens per source, group and epochs")
    pl.add_argument("recipe")
    pl.add_argument("--json", action="store_true", help="print JSON instead of a table")

    r = sub.add_parser("run", help="build the mixture: tokenized shards, lineage, ledger and audit")
    r.add_argument("recipe")
    r.add_argument("--out", help="run directory (default: the recipe's `output`)")
    r.add_argument("--ray-address", help="connect to a Ray cluster (auto, or ray://HOST:PORT); default: local Ray")
    r.add_argument("--resume", metavar="RUN_DIR", nargs="?", const="", default=None,
                   help="resume a run (finished partitions and shards are skipped); rerunning into the same "
                        "--out does the same")
    r.add_argument("--force", action="store_true",
                   help="delete the outputs of the curate run in the run directory and start over (a folder "
                        "holding no curate run is refused even so)")
    r.add_argument("--verify", action="store_true",
                   help="on resume, also check each finished shard's sha256 against its marker (reads every "
                        "shard); a damaged shard is rewritten")
    r.add_argument("--from", dest="reuse_from", metavar="OLD_RUN",
                   help="remix: reuse OLD_RUN's processed partitions and dedup (identical processing settings "
                        "only; each differing key is named), so only mix, shards, documents and audit run")
    r.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument("--no-audit", action="store_true", help="skip the closing audit table")

    a = sub.add_parser("audit", help="composition of a run (complete or in progress) against its recipe")
    a.add_argument("run_dir")
    a.add_argument("--json", action="store_true")
    a.add_argument("--html", metavar="FILE", help="write a self-contained HTML report with plots")
    a.add_argument("--verify", action="store_true",
                   help="check the sha256 of every file the audit trusts (shards in every format, lineage, "
                        "documents, quarantine, ledger) against the manifest")
    a.add_argument("--partial", action="store_true",
                   help="audit an incomplete run as a partial view (exit 0 when nothing is wrong so far); without "
                        "it an incomplete run exits 3")
    a.add_argument("--consumed-tokens", type=int, help="composition of the first N tokens a trainer consumed")
    a.add_argument("--steps", type=int)
    a.add_argument("--global-batch", type=int)
    a.add_argument("--ctx-len", type=int)
    a.add_argument("--rwkv-magic-prime", type=int, help="RWKV-LM sampling view (with --ctx-len and --samples)")
    a.add_argument("--samples", type=int)
    a.add_argument("--against", metavar="OTHER_RUN_DIR", help="diff compositions with another run")
    a.add_argument("--ray-address", help="connect to a Ray cluster (auto, or ray://HOST:PORT); default: local Ray "
                                         "(the audit reads each shard in a Ray task)")
    a.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")

    i = sub.add_parser("inspect", help="print the run's sampled documents per source and drop reason")
    i.add_argument("run_dir")
    i.add_argument("--source", help="only this source")
    i.add_argument("--reason", help="only this reason (exact, or a prefix ending in ':', e.g. quality:)")
    i.add_argument("-n", type=int, default=3, help="documents per source and reason (default 3)")
    i.add_argument("--kept", action="store_true", help="only kept documents (the contrast to the drops)")

    sw = sub.add_parser("sweep", help="draw K mixtures around the recipe (Dirichlet, RegMix style) and build each "
                                      "from one processed corpus; writes mixtures.csv")
    sw.add_argument("recipe")
    sw.add_argument("--n", type=int, required=True, help="number of mixtures")
    sw.add_argument("--concentration", type=float, default=10.0,
                    help="Dirichlet alpha = concentration x base share (higher: closer to the recipe; default 10)")
    sw.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    sw.add_argument("--out", required=True, help="sweep directory (mix-NNN.yaml, mix-NNN/, mixtures.csv)")
    sw.add_argument("--max-redraws", type=int, help="infeasible draws allowed in all before giving up "
                                                    "(default 25 per mixture)")
    sw.add_argument("--ray-address")
    sw.add_argument("--num-cpus", type=int)
    sw.add_argument("--quiet", action="store_true")

    fw = sub.add_parser("recipe-from-weights", help="write a recipe from an optimizer's member -> weight JSON")
    fw.add_argument("weights", help="JSON object: member key (a mixtures.csv column) -> weight")
    fw.add_argument("--base", required=True, help="the recipe whose hierarchy and settings to keep")
    fw.add_argument("--out", help="recipe file to write (default: print it)")

    q = sub.add_parser("quality", help="quality-classifier tools")
    qs = q.add_subparsers(dest="qcmd", required=True)
    qt = qs.add_parser("train", help="train a fastText quality classifier (DCLM-style)")
    qt.add_argument("rest", nargs=argparse.REMAINDER)
    return p


def _cmd_plan(args) -> int:
    from curate.planner import plan, render
    from curate.pipeline import load_recipe

    result = plan(load_recipe(args.recipe))
    if args.json:
        print(json.dumps(result, indent=1, default=str))
    else:
        render(result)
    return 1 if result["shortfall"] and result["on_shortfall"] == "error" else 0


def _start_ray_early(args) -> None:
    """Begin Ray's start (about 4 s) in the background before the runner is imported and the recipe read
    (about 1.5 s of the driver's own), unless Ray is up already (a caller's, in this process).

    ``curate.runner.run`` takes it over (``curate.raytasks.start_in_flight``); when the command fails before,
    :func:`main` stops it (``shutdown_ray`` waits for the start, then stops Ray).
    """
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return
    from curate.raytasks import RayStart

    args.ray_start = RayStart(args.ray_address, num_cpus=args.num_cpus)


def _cmd_run(args) -> int:
    _start_ray_early(args)
    from curate import audit as audit_mod
    from curate.pipeline import load_recipe
    from curate.runner import run

    recipe = load_recipe(args.recipe)
    out = args.out or (args.resume or None)
    if args.resume is not None:
        target = recipe.output_dir(out)
        if not RunLayout(target).run_json.exists():
            print(f"curate run: error: --resume: {target} holds no run to resume (no run.json); "
                  "drop --resume to start a new run there", file=sys.stderr)
            return 2
    res = run(recipe, out=out, ray_address=args.ray_address, force=args.force, num_cpus=args.num_cpus,
              quiet=args.quiet, verify=args.verify, reuse_from=args.reuse_from)
    print(f"wrote {res.manifest['tokens']:,} tokens in {len(res.manifest['shards'])} shard(s) to {res.run_dir} "
          f"in {res.seconds:.1f}s")
    if not args.quiet:
        from curate.timings import read_stage_rows, read_timings, render_stages, render_timings

        render_timings(read_timings(res.run_dir))
        render_stages(read_stage_rows(res.run_dir))
    if args.no_audit:
        return 0
    # the audit the final report was drawn from: the same call on the same finished run, so not made twice
    result = res.audit if res.audit is not None else audit_mod.audit(res.run_dir)
    layout = RunLayout(res.run_dir)
    layout.reports_dir.mkdir(exist_ok=True)
    from curate.io_utils import atomic_write_text

    atomic_write_text(layout.audit_json, audit_mod.to_json(result))
    audit_mod.render_table(result)
    return audit_mod.exit_code(result)


def _cmd_audit(args) -> int:
    from curate import audit as audit_mod

    consumed = args.consumed_tokens
    if args.steps is not None:
        if not (args.global_batch and args.ctx_len):
            print("curate audit: --steps needs --global-batch and --ctx-len", file=sys.stderr)
            return 2
        consumed = args.steps * args.global_batch * args.ctx_len
    rwkv = None
    if args.rwkv_magic_prime is not None:
        if not (args.ctx_len and args.samples):
            print("curate audit: --rwkv-magic-prime needs --ctx-len and --samples", file=sys.stderr)
            return 2
        rwkv = {"magic_prime": args.rwkv_magic_prime, "ctx_len": args.ctx_len, "samples": args.samples}
    from curate.raytasks import init_ray

    init_ray(args.ray_address, num_cpus=args.num_cpus)  # the audit's shard tasks run where `curate run`'s do
    result = audit_mod.audit(args.run_dir, verify=args.verify, consumed_tokens=consumed, rwkv=rwkv,
                             against=args.against)
    if args.html:
        from curate.report import write_html

        write_html(result, args.html)
    if args.json:
        print(audit_mod.to_json(result))
    else:
        audit_mod.render_table(result)
    return audit_mod.exit_code(result, partial=args.partial)


def _cmd_inspect(args) -> int:
    from pathlib import Path

    from rich.console import Console
    from rich.panel import Panel
    from rich.text import Text

    from curate.samples import load_samples, select_samples

    run_dir = Path(args.run_dir)
    if not RunLayout(run_dir).recipe_json.exists():
        print(f"curate inspect: error: {run_dir} is not a curate run directory (no recipe.json)", file=sys.stderr)
        return 2
    t = select_samples(load_samples(run_dir), source=args.source, reason=args.reason, n=max(args.n, 1),
                       kept=True if args.kept else None)
    console = Console()
    if t.num_rows == 0:
        what = ", ".join(f"{k} {v}" for k, v in (("source", args.source), ("reason", args.reason)) if v)
        console.print(f"no sampled documents{' for ' + what if what else ''} in {run_dir}")
        return 1
    for r in t.to_pylist():
        scores = json.loads(r["scores"] or "{}")
        sc = "  ".join(f"{k.removeprefix('q_')}={v:.4g}" if isinstance(v, float) else f"{k.removeprefix('q_')}={v}"
                       for k, v in scores.items())
        style = "green" if r["reason"] == "kept" else "red"
        head = Text(f"{r['source']} · {r['reason']}", style=f"bold {style}")
        head.append(f"  {r['doc_id']}")
        console.print(head, soft_wrap=True)
        console.print(Text(f"stage {r['stage'] or '-'} · {r['nbytes']:,} bytes · lang {r['lang'] or '-'}"
                           + (f" · {sc}" if sc else ""), style="dim"), soft_wrap=True)
        console.print(Panel(Text(r["text"] or ""), border_style=style))
    return 0


def _cmd_sweep(args) -> int:
    from curate.sweep import sweep

    info = sweep(args.recipe, n=args.n, out=args.out, concentration=args.concentration, seed=args.seed,
                 max_redraws=args.max_redraws, ray_address=args.ray_address, num_cpus=args.num_cpus,
                 quiet=args.quiet)
    failed = [m["id"] for m in info["mixtures"] if m["audit_exit"] != 0]
    print(f"{len(info['mixtures'])} mixture(s) in {args.out} ({info['redraws']} infeasible draw(s) redrawn); "
          f"mixtures.csv written" + (f"; audit failed for {', '.join(failed)}" if failed else "; every audit passed"))
    return 1 if failed else 0


def _cmd_recipe_from_weights(args) -> int:
    from curate.sweep import read_weights, recipe_from_weights

    text = recipe_from_weights(read_weights(args.weights), args.base, args.out)
    if args.out:
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    code = 1
    try:
        code = _dispatch(args)
    finally:
        if code != 0 and getattr(args, "ray_start", None) is not None and not _PROGRAM:
            # `curate run` began Ray's start before it could fail (a bad recipe, a refused remix): for a caller in
            # this process, Ray is waited for and stopped (the `curate` program ends it at once, exit_process)
            from curate.raytasks import shutdown_ray

            shutdown_ray()
    return code


#: True in the `curate` program (:func:`console`), which ends through :func:`exit_process`
_PROGRAM = False


def _dispatch(args) -> int:
    try:
        if args.cmd == "plan":
            return _cmd_plan(args)
        if args.cmd == "run":
            return _cmd_run(args)
        if args.cmd == "audit":
            return _cmd_audit(args)
        if args.cmd == "inspect":
            return _cmd_inspect(args)
        if args.cmd == "sweep":
            return _cmd_sweep(args)
        if args.cmd == "recipe-from-weights":
            return _cmd_recipe_from_weights(args)
        if args.cmd == "quality":
            from curate.quality.fasttext_clf import cli_train

            return cli_train(args.rest)
    except CurateError as e:
        print(f"curate {args.cmd}: error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        err = output_error(e)
        if err is None:
            raise
        print(f"curate {args.cmd}: error: {err}", file=sys.stderr)
        return err.exit_code
    return 2


def exit_process(code: int) -> NoReturn:
    """End this process with ``code`` once its work is done: Ray stopped, exit handlers run, output flushed.

    ``curate.raytasks.shutdown_ray`` stops the local Ray this process started (1.5 s less than Ray's own exit
    hook); then every ``atexit`` handler runs (logging, temporary folders, ``weakref.finalize``) and stdout/stderr
    are flushed, as at a normal exit. Only the interpreter's teardown (freeing every module and object) is
    skipped, by ``os._exit``.
    """
    try:
        from curate.raytasks import abandon_start, shutdown_ray

        if not abandon_start():  # a command that failed while Ray was still starting: its processes killed
            shutdown_ray()
    except Exception as e:  # noqa: BLE001 - the outputs are written; Ray's processes die with their reaper
        print(f"curate: warning: Ray did not shut down cleanly: {type(e).__name__}: {e}", file=sys.stderr)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said
            pass
    os._exit(code)


def console() -> NoReturn:
    """The ``curate`` program: :func:`main` on ``sys.argv``, ended by :func:`exit_process`.

    An exception :func:`main` does not handle (a bug) propagates as usual: traceback, exit 1.
    """
    global _PROGRAM
    _PROGRAM = True
    exit_process(main())


if __name__ == "__main__":
    console()
