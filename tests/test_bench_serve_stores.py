"""The store comparison's own parts: which stores run, on which CPUs, and how it reports them.

No Docker and no model: the comparison itself (`python -m bench.serve_stores`) runs on demand.
"""

from __future__ import annotations

import os

import pytest

from bench import serve_stores
from harness.render import CATALOGUE


def test_embedded_always_runs_first_and_each_store_once():
    assert serve_stores.parse([]).stores == ["embedded", "chroma-server", "pgvector"]
    chosen = serve_stores.parse(["--stores", "pgvector, pgvector,embedded"]).stores
    assert chosen == ["embedded", "pgvector"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--stores", "qdrant"], "--stores takes some of embedded, chroma-server, pgvector"),
        (["--stores", ","], "--stores takes some of"),
        (["--clients", "8,many"], "--clients takes counts such as 8,32, not '8,many'"),
        (["--rounds", "0"], "--rounds, --seconds, --documents and --clients are over 0"),
    ],
)
def test_bad_choices_exit_with_a_message(argv, message):
    with pytest.raises(SystemExit, match=message):
        serve_stores.parse(argv)


def test_the_store_server_keeps_off_the_load_generators_cpus():
    cpu = min(os.sched_getaffinity(0))
    args = serve_stores.parse(["--service-cpus", "4096", "--load-cpus", str(cpu)])
    assert args.store_cpus == "4096"  # the service's, unless told
    clash = ["--service-cpus", "4096", "--store-cpus", str(cpu), "--load-cpus", str(cpu)]
    with pytest.raises(SystemExit, match=f"the store server and the load share CPUs \\[{cpu}\\]"):
        serve_stores.all_cpus(serve_stores.parse(clash))


def test_each_store_is_a_mode_the_catalogue_offers():
    for answers in serve_stores.STORES.values():
        store = answers.get("vector_store", "chromadb")
        modes = CATALOGUE["stores"][store]["modes"]
        assert answers.get("store_mode", modes[0]) in modes
    assert CATALOGUE["stores"]["pgvector"]["modes"] == ["server"]


def closed(throughput: float, p50: float, p99: float | None) -> dict:
    return {"throughput": throughput, "p50": p50, "p99": p99, "errors": 0}


def test_the_table_sets_each_store_against_the_embedded_one_of_the_same_run():
    figures = {
        "stores": {
            "embedded": {"closed": {8: closed(100.0, 0.080, 0.120), 32: closed(110.0, 0.3, 0.4)}},
            "pgvector": {
                "closed": {8: closed(80.0, 0.100, 0.180), 32: closed(55.0, 0.6, 1.0)},
                "runs": {8: [closed(80.4, 0.1, 0.2), closed(70.0, 0.1, 0.2)]},
            },
        },
        "skipped": {"chroma-server": "RuntimeError: no heartbeat"},
    }
    ratios = serve_stores.against_embedded(figures)
    assert ratios["embedded"][8] == {"throughput": 1.0, "p50": 1.0, "p99": 1.0}
    assert ratios["pgvector"][32]["throughput"] == pytest.approx(0.5)
    table = serve_stores.table(figures)
    assert (
        "| pgvector | 8 | 80.0 /s | 100 ms | 180 ms | 0 | 0.80x | 1.25x | 1.50x | 80, 70 |" in table
    )
    assert "| embedded | 32 | 110.0 /s | 300 ms | 400 ms | 0 | 1.00x | 1.00x | 1.00x | - |" in table
    assert "| chroma-server | not run: RuntimeError: no heartbeat |" in table
    assert len({line.count("|") for line in table.splitlines()}) == 1


def test_each_figure_is_the_median_of_the_rounds_and_every_error_counts():
    runs = [closed(100.0, 0.05, 0.2), closed(40.0, 0.09, 0.9), closed(90.0, 0.06, None)]
    runs[1]["errors"] = 2
    assert serve_stores.median_of(runs) == {
        "throughput": 90.0, "p50": 0.06, "p99": pytest.approx(0.55), "errors": 2
    }  # fmt: skip
