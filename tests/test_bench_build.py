"""The build benchmark's own helpers: the counting proxy, BuildKit log parsing, the tables.

Loopback only, no Docker: the benchmark itself (`python -m bench.build`) runs on demand, not here.
"""

from __future__ import annotations

import socket
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench import build as bench
from bench import counting_proxy as proxy_module

ROOT = Path(__file__).resolve().parents[1]
PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


@pytest.fixture(scope="module")
def origin():
    """A loopback HTTP server answering every GET with PAYLOAD."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def via_proxy(proxy_url: str, url: str) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy_url}))
    with opener.open(url, timeout=30) as response:
        return response.read()


def test_plain_http_to_loopback_is_forwarded_and_counted(origin):
    with proxy_module.CountingProxy(set()) as proxy:
        assert via_proxy(proxy.url, f"http://{origin}/blob") == PAYLOAD
        traffic = proxy.reset()
        assert via_proxy(proxy.url, f"http://{origin}/again") == PAYLOAD
        again = proxy.traffic
    # The body plus the response head; the request went up.
    assert len(PAYLOAD) < traffic.bytes_down < len(PAYLOAD) + 500
    assert set(traffic.down) == {origin} and 0 < traffic.bytes_up < 500
    assert traffic.busy_seconds > 0 and traffic.refused == []
    assert len(PAYLOAD) < again.bytes_down < len(PAYLOAD) + 500, "reset starts a new count"


def test_connect_tunnels_only_to_the_allowed_authorities(origin):
    with proxy_module.CountingProxy({origin}) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as tunnel:
            tunnel.sendall(f"CONNECT {origin} HTTP/1.1\r\nHost: {origin}\r\n\r\n".encode())
            assert tunnel.recv(1024).startswith(b"HTTP/1.1 200")
            request = f"GET /x HTTP/1.1\r\nHost: {origin}\r\nConnection: close\r\n\r\n".encode()
            tunnel.sendall(request)
            answer = b""
            while chunk := tunnel.recv(65536):
                answer += chunk
        assert answer.endswith(PAYLOAD)
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as refused:
            refused.sendall(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n")
            assert refused.recv(1024).startswith(b"HTTP/1.1 403")
        with pytest.raises(urllib.error.HTTPError) as outside:
            via_proxy(proxy.url, "http://example.com/")
        traffic = proxy.traffic
    assert outside.value.code == 403
    # Counted once, tunnel bytes as they pass: the answer down, the request up.
    assert traffic.down == {"127.0.0.1": len(answer)}
    assert traffic.up == {"127.0.0.1": len(request)}
    assert traffic.refused == ["example.com:443", "http://example.com/"]


def test_download_time_counts_each_tick_with_bytes_once():
    traffic = proxy_module.Traffic()
    for now in (10.00, 10.01, 10.05, 10.31, 12.0):
        traffic.add("pypi.org", 100, downstream=True, now=now)
    traffic.add("pypi.org", 7, downstream=False, now=20.0)  # uploads are not download time
    assert traffic.bytes_down == 500 and traffic.bytes_up == 7
    assert traffic.busy_seconds == pytest.approx(0.3)


def test_the_throttle_spaces_chunks_at_the_link_rate():
    bucket = proxy_module.TokenBucket(rate=1000.0)
    first, second = bucket.delay_for(500), bucket.delay_for(500)
    assert 0.4 < first <= 0.5 and 0.9 < second <= 1.0


PLAIN_LOG = """\
#0 building with "default" instance using docker driver

#1 [internal] load build definition from Dockerfile
#1 transferring dockerfile: 2.10kB done
#1 DONE 0.0s

#7 [conda 3/3] RUN --mount=type=cache,target=/opt/conda/pkgs micromamba install
#7 0.512 installing 14 packages
#8 [app 2/3] RUN uv sync --locked --no-install-project
#7 DONE 21.4s
#8 3.004 Installed 95 packages in 2.1s
#8 DONE 30.2s

#9 [app 3/3] RUN uv sync --locked --no-editable
#9 CACHED

#10 exporting to image
#10 exporting layers
#10 exporting layers 8.1s done
#10 writing image sha256:0123 done
#10 DONE 8.2s
"""


def test_buildkit_plain_progress_gives_each_step_its_time():
    steps = bench.parse_steps(PLAIN_LOG)
    assert [step.name for step in steps] == [
        'building with "default" instance using docker driver',
        "[internal] load build definition from Dockerfile",
        "[conda 3/3] RUN --mount=type=cache,target=/opt/conda/pkgs micromamba install",
        "[app 2/3] RUN uv sync --locked --no-install-project",
        "[app 3/3] RUN uv sync --locked --no-editable",
        "exporting to image",
    ]
    assert [(step.seconds, step.cached) for step in steps] == [
        (None, False),
        (0.0, False),
        (21.4, False),
        (30.2, False),
        (None, True),
        (8.2, False),
    ]
    assert [step.seconds for step in bench.slowest(steps, 2)] == [30.2, 21.4]


BEFORE = {
    "cold_seconds": 300.0,
    "link_seconds": 530.0,
    "bytes_down": 3_230_000_000,
    "image_bytes": 6_600_000_000,
    "rebuild_seconds": 0.8,
}
GENERATED = {
    "cold_seconds": 60.0,
    "link_seconds": 80.0,
    "bytes_down": 400_000_000,
    "image_bytes": 1_200_000_000,
    "rebuild_seconds": 9.0,
}


def test_the_link_time_swaps_the_measured_download_for_the_link_s():
    # 300 s measured, 30 s of it moving 3.0 GB: at 12.5 MB/s those bytes take 240 s.
    assert bench.at_link(300.0, 3_000_000_000, 30.0, 12.5e6) == pytest.approx(510.0)


def test_the_table_shows_both_builds_and_their_ratio():
    table = bench.results_table(BEFORE, GENERATED, "100 Mbit/s").splitlines()
    assert table[0] == '| | "before" | generated | "before" / generated |'
    assert table[2:] == [
        "| cold build, as measured | 300 s | 60 s | 5.0x |",
        "| cold build at 100 Mbit/s | 530 s | 80 s | 6.6x |",
        "| downloaded | 3.23 GB | 400 MB | 8.1x |",
        "| image size | 6.60 GB | 1.20 GB | 5.5x |",
        "| source-only rebuild | 0.8 s | 9.0 s | 0.1x |",
    ]


def test_a_missed_target_is_reported_as_a_miss():
    lines = bench.verdicts(BEFORE, GENERATED, "100 Mbit/s")
    assert [passed for passed, _ in lines] == [True, True, False]
    assert lines[2][1].endswith("(9.0 s / 60 s = 15.0%)")
    slower = {**GENERATED, "link_seconds": 200.0, "image_bytes": 2_000_000_000}
    assert [passed for passed, _ in bench.verdicts(BEFORE, slower, "100 Mbit/s")][:2] == [
        False,
        False,
    ]


def test_a_step_reads_as_one_short_line():
    name = (
        "[app 2/3] RUN --mount=from=uv,source=/uv,target=/usr/local/bin/uv     "
        "--mount=type=cache,target=/root/.cache/uv     uv sync --locked --no-install-project"
    )
    assert bench.step_label(name) == "[app 2/3] RUN uv sync --locked --no-install-project"
    long = bench.step_label("[conda 3/3] RUN " + "x" * 200 + " micromamba install | tee")
    assert len(long) <= 80 and long.startswith("[conda 3/3] RUN x")
    assert long.endswith("micromamba install / tee")


COLD_UV = "#12 3.828 Prepared 91 packages in 3.65s\n#12 7.067 Installed 91 packages in 3.23s\n"
WARM_UV = "#12 0.828 Prepared 4 packages in 1.65s\n#12 2.067 Installed 91 packages in 3.23s\n"


def test_a_uv_step_that_installs_more_than_it_fetched_was_not_cold():
    assert (
        bench.warm_installs(
            COLD_UV + "#13 0.099 Prepared 1 package in 9ms\n#13 0.105 Installed 1 package in 3ms\n"
        )
        == []
    )
    assert bench.warm_installs(WARM_UV) == ["#12: prepared 4, installed 91"]
    assert bench.warm_installs("#13 0.5 Installed 1 package in 3ms\n") == [
        "#13: prepared 0, installed 1"
    ]


def test_uv_says_where_its_step_spent_the_time():
    log = COLD_UV + "#12 26.66 Bytecode compiled 14996 files in 19.59s\n#12 DONE 27.5s\n"
    assert bench.uv_phases(log) == [
        "#12 Prepared 91 packages in 3.65s",
        "#12 Installed 91 packages in 3.23s",
        "#12 Bytecode compiled 14996 files in 19.59s",
    ]


def test_the_conda_lock_says_what_a_cold_conda_step_fetches(tmp_path):
    (tmp_path / "linux-64").mkdir()
    (tmp_path / "linux-64" / "pytorch-2.13.0-0.tar.bz2").write_bytes(b"x" * 300)
    (tmp_path / "noarch").mkdir()
    (tmp_path / "noarch" / "sympy-1.13.3-0.tar.bz2").write_bytes(b"y" * 20)
    url = "http://127.0.0.1:8000"
    lock = (
        f"# platform: linux-64\n@EXPLICIT\n{url}/linux-64/pytorch-2.13.0-0.tar.bz2#{'a' * 64}\n"
        f"{url}/noarch/sympy-1.13.3-0.tar.bz2#{'b' * 64}\n"
    )
    assert bench.explicit_lock_bytes(lock, url + "/", tmp_path) == 320
