"""The default image's first hour: start-up over a hung Hub, a stop while the model loads, the
health check behind a proxy variable, and the answers a first user's mistakes get.

One image, built as tests/test_image.py builds it, serves every case. Containers run on the
host's network, bound to 127.0.0.1 on a free port, locked down where no store opens. The hung
Hub is a loopback socket that takes connections and never answers: HF_ENDPOINT points at it, no
model is baked in and HF_HUB_OFFLINE is unset, so the model's load waits on it as it would on a
hung network.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from harness import docker
from harness.built_images import Built, Images
from harness.replicas import Served
from harness.service_client import LOCKED_DOWN, free_port, logs

# The exit status the generated README documents for a model that cannot load.
MODEL_UNAVAILABLE = 69
# The bound these tests set on the model's load, in seconds: short, to keep the test short.
LOAD_BOUND = 15
# Hang guards, not timings: far above anything the cases should take.
GUARD_SECONDS = 180


@pytest.fixture(scope="module")
def built(images: Images) -> Built:
    return images.get("defaults")


@pytest.fixture
def hung_hub() -> Iterator[str]:
    """http://127.0.0.1:<port> of a socket whose backlog takes connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


class Service(Served):
    """One container of the image on a free loopback port: `PREFIX_` in a variable's name stands
    for the project's prefix."""

    def __init__(self, built: Built, options: tuple[str, ...] = LOCKED_DOWN, **env: str) -> None:
        prefix = f"{built.package.upper()}_"
        named = {key.replace("PREFIX_", prefix): value for key, value in env.items()}
        super().__init__(built, env=named, options=options)

    def first_answer(self) -> tuple[int, int]:
        """Poll from the container's start: /livez's status as soon as the port answers, and
        /readyz's status right after."""
        deadline = time.monotonic() + GUARD_SECONDS
        while time.monotonic() < deadline:
            try:
                alive = self.api.call("GET", "/livez")[0]
                return alive, self.api.call("GET", "/readyz")[0]
            except OSError:  # not listening yet
                state = docker.container_state(self.container)
                assert state == "running", f"the container is {state}:\n{logs(self.container)}"
                time.sleep(0.2)
        pytest.fail(f"the port never answered:\n{logs(self.container)}")


def post_raw(port: int, path: str, data: bytes, content_type: str) -> tuple[int, dict]:
    """A POST as `curl -d` sends it, with whatever content type is given."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data, {"content-type": content_type}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.slow
@pytest.mark.image
def test_a_hung_hub_ends_the_start_at_the_bound_with_one_line_and_its_own_exit_status(
    built, hung_hub
):
    env = {"HF_ENDPOINT": hung_hub, "PREFIX_MODEL_LOAD_TIMEOUT": str(LOAD_BOUND)}
    with Service(built, **env) as service:
        # The port opens before the model loads: alive, not ready, and the model's routes say
        # when to come back.
        assert service.first_answer() == (200, 503)
        request = urllib.request.Request(
            f"http://127.0.0.1:{service.port}/embed",
            json.dumps({"texts": ["cats"]}).encode(),
            {"content-type": "application/json"},
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=60)
        assert refused.value.code == 503
        assert refused.value.headers["Retry-After"].isdigit()

        assert service.wait_exit() == MODEL_UNAVAILABLE
        output = service.output()
        failed = [line for line in output.splitlines() if '"failed"' in line]
        assert len(failed) == 1, output
        [line] = failed
        message = json.loads(line)["error"]
        assert f"within {LOAD_BOUND} s" in message and "HF_HUB_OFFLINE=1" in message, line
        assert "Traceback" not in output, output


@pytest.mark.slow
@pytest.mark.image
def test_docker_stop_while_the_model_loads_exits_0_not_killed(built, hung_hub):
    # The default bound: the load is still waiting on the Hub when the stop comes.
    with Service(built, HF_ENDPOINT=hung_hub) as service:
        assert service.first_answer() == (200, 503)
        subprocess.run(
            ["docker", "stop", "--time", "60", service.container],
            capture_output=True,
            timeout=GUARD_SECONDS,
            check=True,
        )
        # 137 would be the SIGKILL that follows a SIGTERM left unanswered for 60 s.
        assert service.wait_exit() == 0, service.output()
        assert '"event": "stopped"' in service.output()


@pytest.mark.slow
@pytest.mark.image
def test_behind_a_proxy_variable_the_health_check_and_a_first_users_mistakes(built):
    closed = free_port()
    env = {
        "PREFIX_EMBEDDER": "hashing",
        # Nothing listens there: a health check that took the proxy would never see the server.
        "HTTP_PROXY": f"http://127.0.0.1:{closed}",
        "http_proxy": f"http://127.0.0.1:{closed}",
    }
    # Not read-only: the store opens in the container's own layer, and this test keeps nothing.
    with Service(built, options=(), **env) as service:
        service.api.wait_ready()
        deadline = time.monotonic() + GUARD_SECONDS
        while docker.container_state(service.container, "{{ .State.Health.Status }}") != "healthy":
            assert time.monotonic() < deadline, service.output()
            time.sleep(1)

        # An id that was never stored.
        status, body = service.api.call("DELETE", "/documents/never-stored")
        assert status == 404 and "never-stored" in body["detail"], body
        # `curl -d '{"text": "cats"}'`: a form's content type.
        status, body = post_raw(
            service.port, "/query", b'{"text": "cats"}', "application/x-www-form-urlencoded"
        )
        assert status == 415 and "Content-Type: application/json" in body["detail"], body
