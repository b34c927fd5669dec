"""The parts phase's task body (``curate.partition.process_partition``): one processor per worker process."""

from __future__ import annotations

from pathlib import Path

from curate import partition
from curate.pipeline import load_recipe, payload_for
from curate.sources import plan_partitions
from tests.reliability._tiny import write_jsonl, write_recipe


def _payload_and_parts(root: Path, n_files: int = 2):
    for i in range(n_files):
        write_jsonl(root / "in" / f"f{i}.jsonl", 12, start=100 * i)
    recipe = load_recipe(write_recipe(root, [str(root / "in" / "*.jsonl")]))
    return payload_for(recipe), plan_partitions(recipe)


def test_a_worker_keeps_its_processor_for_the_run_and_replaces_it_for_another(tmp_path, monkeypatch) -> None:
    """Models load once per worker process and run: the second partition of a run reuses the processor (its stages
    are not set up again); another run directory gets a new one, and only one is kept."""
    monkeypatch.setattr(partition, "_cached", [])
    payload, parts = _payload_and_parts(tmp_path)
    assert len(parts) == 2
    built = []
    real = partition.PartitionProcessor

    class Counting(real):
        def __init__(self, *a, **k):
            built.append(a[1])
            super().__init__(*a, **k)

    monkeypatch.setattr(partition, "PartitionProcessor", Counting)
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    first = partition.process_partition(payload, str(run_a), [], parts[0])
    proc = partition._cached[0][1]
    second = partition.process_partition(payload, str(run_a), [], parts[1])
    assert partition._cached[0][1] is proc and built == [str(run_a)]
    assert first["records"] == second["records"] == 12
    assert all(partition.part_paths(run_a, p)["done"].exists() for p in parts)
    partition.process_partition(payload, str(run_b), [], parts[0])
    assert built == [str(run_a), str(run_b)] and len(partition._cached) == 1
    assert partition._cached[0][1] is not proc


def test_the_first_task_of_another_kind_drops_the_processor(tmp_path, monkeypatch) -> None:
    """The dedup, mix and shard tasks that run in a partition worker afterwards do not carry its models."""
    from curate import raytasks

    monkeypatch.setattr(partition, "_cached", [])
    monkeypatch.setattr(raytasks, "_kept", {})
    payload, parts = _payload_and_parts(tmp_path, n_files=1)
    raytasks.releasing(partition.process_partition)(payload, str(tmp_path / "a"), [], parts[0])
    assert len(partition._cached) == 1

    def exact_reduce() -> int:
        return len(partition._cached)

    assert raytasks.releasing(exact_reduce)() == 0
