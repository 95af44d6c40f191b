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

from bench import build_figures, build_floor, build_log, build_report, build_variants, text
from bench import counting_proxy as proxy_module
from harness.compat import tomllib

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
    steps = build_log.parse_steps(PLAIN_LOG)
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
    assert [step.seconds for step in build_log.slowest(steps, 2)] == [30.2, 21.4]


RESULTS: dict[str, dict] = {  # as measure() and measure_floor() return them
    "before": {
        "base_bytes": 130_000_000,
        "cold_seconds": 300.0,
        "link_seconds": 530.0,
        "bytes_down": 3_230_000_000,
        "image_bytes": 6_630_000_000,
        "rebuild_seconds": 0.8,
        "doctor_seconds": None,
        "import_seconds": 4.0,
    },
    "uv_guide": {
        "base_bytes": 130_000_000,
        "cold_seconds": 50.0,
        "link_seconds": 60.0,
        "bytes_down": 380_000_000,
        "image_bytes": 1_130_000_000,
        "rebuild_seconds": 10.0,
        "doctor_seconds": None,
        "import_seconds": 3.0,
    },
    "generated_conda": {
        "base_bytes": 160_000_000,
        "cold_seconds": 60.0,
        "link_seconds": 80.0,
        "bytes_down": 400_000_000,
        "image_bytes": 1_360_000_000,
        "rebuild_seconds": 0.6,
        "doctor_seconds": 0.9,
        "import_seconds": 3.1,
    },
    "generated_uv": {
        "base_bytes": 160_000_000,
        "cold_seconds": 50.0,
        "link_seconds": 62.0,
        "bytes_down": 380_000_000,
        "image_bytes": 1_200_000_000,
        "rebuild_seconds": 3.0,
        "doctor_seconds": 0.9,
        "import_seconds": 3.0,
    },
    "floor": build_figures.floor_figures(
        base_bytes=130_000_000,
        installed_bytes=960_000_000,
        bytes_down=375_000_000,
        cold_seconds=20.0,
        warm_install_seconds=5.0,
        rate=12.5e6,
    ),
}


def derived() -> dict:
    return {key: build_figures.with_derived(result) for key, result in RESULTS.items()}


def test_the_link_time_swaps_the_measured_download_for_the_link_s():
    # 300 s measured, 30 s of it moving 3.0 GB: at 12.5 MB/s those bytes take 240 s.
    assert build_figures.at_link(300.0, 3_000_000_000, 30.0, 12.5e6) == pytest.approx(510.0)


def test_sizes_are_compared_above_each_base():
    assert build_figures.above_base(1_360_000_000, 160_000_000) == 1_200_000_000
    with pytest.raises(ValueError, match="smaller than its base"):
        build_figures.above_base(100, 200)
    figures = derived()
    assert figures["generated_uv"]["above_base_bytes"] == 1_040_000_000
    assert figures["uv_guide"]["above_base_bytes"] == 1_000_000_000
    assert figures["generated_uv"]["rebuild_share"] == pytest.approx(0.06)


def test_the_floor_is_the_base_plus_the_installed_set_and_its_bytes_at_the_link():
    floor = RESULTS["floor"]
    assert floor["image_bytes"] == 1_090_000_000
    # 375 MB at 12.5 MB/s is 30 s, plus the warm install's 5 s.
    assert floor["link_seconds"] == pytest.approx(35.0)
    assert floor["cold_seconds"] == 20.0
    assert build_figures.with_derived(floor)["above_base_bytes"] == 960_000_000
    assert "rebuild_share" not in build_figures.with_derived(floor), "the floor never rebuilds"


def test_the_table_has_a_column_per_variant_and_a_dash_where_none_applies():
    table = build_figures.results_table(derived(), "100 Mbit/s").splitlines()
    assert table[0] == ('| | "before" | uv guide | generated, conda | generated, uv | floor |')
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table[2:]}
    assert rows["base image (local stand-in)"].endswith(
        "| 130 MB | 130 MB | 160 MB | 160 MB | 130 MB |"
    )
    assert rows["added above its base"].endswith(
        "| 6.50 GB | 1.00 GB | 1.20 GB | 1.04 GB | 960 MB |"
    )
    assert rows["cold build at 100 Mbit/s"].endswith("| 530 s | 60 s | 80 s | 62 s | 35 s |")
    assert rows["`docker run` to the doctor passing"].endswith("| - | - | 0.9 s | 0.9 s | - |")
    assert rows["source-only rebuild"].endswith("| 0.8 s | 10 s | 0.6 s | 3.0 s | - |")
    only = build_figures.results_table({"floor": build_figures.with_derived(RESULTS["floor"])}, "x")
    assert only.splitlines()[0] == "| | floor |"


def test_the_ratios_divide_by_the_uv_guide_and_by_the_floor():
    table = build_figures.ratios_table(derived(), "100 Mbit/s").splitlines()
    assert table[0] == '| | "before" | uv guide | generated, conda | generated, uv |'
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table[2:]}
    assert rows["added above its base / the uv guide's"].endswith(
        "| 6.50x | 1.00x | 1.20x | 1.04x |"
    )
    assert rows["added above its base / the floor's"].endswith("| 6.77x | 1.04x | 1.25x | 1.08x |")
    without_floor = {k: v for k, v in derived().items() if k != "floor"}
    assert "| - | - | - | - |" in build_figures.ratios_table(without_floor, "x")


def test_each_target_is_met_or_missed_never_hidden():
    lines = build_figures.verdicts(derived(), "100 Mbit/s")
    assert [(met, line.split("  (")[1]) for met, line in lines] == [
        (True, "1.04x)"),  # 1.04 GB / 1.00 GB
        (True, "1.03x)"),  # 62 s / 60 s
        (False, "1.25x)"),  # generated, conda: 1.20 GB / 960 MB
        (True, "1.08x)"),
        (True, "0.6 s / 60 s = 1.0%)"),
        (False, "3.0 s / 50 s = 6.0%)"),
    ]
    assert lines[2][1].startswith("generated (conda installer) adds <= 1.15x the floor's")
    assert lines[5][1].startswith("generated, uv: source-only rebuild <= 5% of its cold build")
    assert [text.verdict_word(met) for met in (True, False, None)] == [
        "MET",
        "MISSED",
        "NOT MEASURED",
    ]


def test_a_target_without_its_figures_is_not_measured():
    partial = {"generated_uv": build_figures.with_derived(RESULTS["generated_uv"])}
    lines = build_figures.verdicts(partial, "100 Mbit/s")
    assert [met for met, _ in lines] == [None, None, None, None, None, False]
    assert lines[0][1].endswith("(not measured)")
    assert (
        lines[4][1]
        == "generated, conda: source-only rebuild <= 5% of its cold build  (not measured)"
    )


def test_sizes_are_taken_only_where_the_facts_record_them():
    facts = {
        "read": "2026-12-04",
        "packages": [
            {"name": "python", "version": "3.11.15", "size": 30_000_000},
            {"name": "openssl", "builds": [{"size": 1}], "size": 3_000_000},
            {"name": "pytorch", "size": 99},
        ],
    }
    assert build_report.recorded_sizes(facts, {"python", "openssl", "tk"}) == {
        "python": 30_000_000,
        "openssl": 3_000_000,
    }
    assert build_report.recorded_sizes({"python": {"depends": ["libffi"]}}, {"python"}) == {}


def test_the_uv_guide_peer_routes_only_torch_to_an_explicit_cpu_index():
    text = build_variants.uv_guide_pyproject(
        ["torch==2.13.*", "chromadb>=1.3"], "http://127.0.0.1:9/simple/", ["uv_build>=0.9,<0.14"]
    )
    project = tomllib.loads(text)
    assert project["project"]["dependencies"] == ["torch==2.13.*", "chromadb>=1.3"]
    assert project["tool"]["uv"]["index"] == [
        {"name": "pytorch-cpu", "url": "http://127.0.0.1:9/simple/", "explicit": True}
    ]
    assert project["tool"]["uv"]["sources"] == {"torch": {"index": "pytorch-cpu"}}
    assert project["build-system"]["requires"] == ["uv_build>=0.9,<0.14"]


def test_the_uv_guide_dockerfile_is_multi_stage_locked_and_non_root():
    text = build_variants.uv_guide_dockerfile("py:slim", "uv:1")
    froms = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert froms == ["FROM py:slim AS builder", "FROM py:slim"]
    assert "COPY --from=uv:1 /uv /uvx /bin/" in text
    assert text.count("uv sync --locked") == 2 and text.count("--no-dev") == 2
    assert "--mount=type=cache,target=/root/.cache/uv" in text
    final = text.split("FROM py:slim\n", 1)[1]
    assert "COPY --from=builder --chown=nonroot:nonroot /app/.venv /app/.venv" in final
    assert "USER nonroot" in final and "uv" not in final.replace(".venv", "")


def test_installed_bytes_count_files_once_and_no_symlinks(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "a.so").write_bytes(b"x" * 100)
    (tmp_path / "lib" / "b.py").write_bytes(b"y" * 20)
    (tmp_path / "hard.so").hardlink_to(tmp_path / "lib" / "a.so")
    (tmp_path / "python").symlink_to("/usr/bin/python3")
    assert build_floor.tree_bytes(tmp_path) == 120


def test_a_step_reads_as_one_short_line():
    name = (
        "[app 2/3] RUN --mount=from=uv,source=/uv,target=/usr/local/bin/uv     "
        "--mount=type=cache,target=/root/.cache/uv     uv sync --locked --no-install-project"
    )
    assert build_report.step_label(name) == "[app 2/3] RUN uv sync --locked --no-install-project"
    long = build_report.step_label("[conda 3/3] RUN " + "x" * 200 + " micromamba install | tee")
    assert len(long) <= 80 and long.startswith("[conda 3/3] RUN x")
    assert long.endswith("micromamba install / tee")


COLD_UV = "#12 3.828 Prepared 91 packages in 3.65s\n#12 7.067 Installed 91 packages in 3.23s\n"
WARM_UV = "#12 0.828 Prepared 4 packages in 1.65s\n#12 2.067 Installed 91 packages in 3.23s\n"


def test_a_uv_step_that_installs_more_than_it_fetched_was_not_cold():
    assert (
        build_log.warm_installs(
            COLD_UV + "#13 0.099 Prepared 1 package in 9ms\n#13 0.105 Installed 1 package in 3ms\n"
        )
        == []
    )
    assert build_log.warm_installs(WARM_UV) == ["#12: prepared 4, installed 91"]
    assert build_log.warm_installs("#13 0.5 Installed 1 package in 3ms\n") == [
        "#13: prepared 0, installed 1"
    ]


def test_uv_says_where_its_step_spent_the_time():
    log = COLD_UV + "#12 26.66 Bytecode compiled 14996 files in 19.59s\n#12 DONE 27.5s\n"
    assert build_log.uv_phases(log) == [
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
    assert build_variants.explicit_lock_bytes(lock, url + "/", tmp_path) == 320
