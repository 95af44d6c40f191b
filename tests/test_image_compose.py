"""The generated compose.yaml, run by Docker Compose v2 on the default project's built image.

Compose networks are bridges on private ranges, which must not carry test traffic here: a
test-only override puts the service on the host's network, bound to 127.0.0.1 on a free port.
Compose builds nothing: the override names the image `images` built FROM the stand-ins (through
the Dockerfile's base image build args) and drops `build`.
"""

from __future__ import annotations

import secrets
import subprocess

import pytest
import yaml

from harness.compose import Compose, require_compose, write_override
from harness.service_client import Api, free_port


def test_without_compose_the_test_fails_under_ci_and_skips_elsewhere(monkeypatch, tmp_path):
    # No docker on PATH, so no compose either.
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true requires the compose test"):
        require_compose()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="installs the Compose v2 plugin"):
        require_compose()


@pytest.mark.slow
@pytest.mark.image
def test_compose_serves_healthy_and_keeps_its_data_across_down_and_up(images, tmp_path):
    require_compose()
    built = images.get("defaults")
    project = built.project
    services = yaml.safe_load((project / "compose.yaml").read_text(encoding="utf-8"))["services"]
    [service] = services
    port = free_port()
    compose = Compose(project, write_override(tmp_path, built, service, port))
    config = yaml.safe_load(compose.must("config"))["services"][service]
    assert config["network_mode"] == "host" and not config.get("ports"), config
    assert "build" not in config and config["image"] == built.tag, config
    try:
        # `up` returns once the image's HEALTHCHECK reports healthy.
        compose.up(service)
        api = Api(port, f"{compose.name}-{service}-1")
        documents = [
            {"id": "cats", "text": "Cats purr, nap in the sun and chase mice in the garden."},
            {"id": "rivers", "text": "Rain runs down from the mountains to the sea in rivers."},
        ]
        assert api.call("POST", "/documents", {"documents": documents}) == (
            200,
            {"added": 2, "count": 2},
        ), compose.logs()

        # `down` keeps named volumes: the next `up` opens the same store.
        compose.must("down", timeout=120)
        volumes = compose.volumes("data")
        assert volumes == [f"{compose.name}_data"], volumes
        compose.up(service)
        assert api.nearest("which animal chases mice?") == ["cats", "rivers"], compose.logs()
        status, body = api.call("GET", "/readyz")
        assert status == 200, body
    finally:
        compose.down()
    left = compose.volumes()
    assert left == [], f"`down --volumes` left {left}"


@pytest.mark.slow
@pytest.mark.image
def test_compose_with_the_keys_file_asks_for_a_key_it_hands_over_as_a_secret(images, tmp_path):
    require_compose()
    built = images.get("defaults")
    project = built.project
    [service] = yaml.safe_load((project / "compose.yaml").read_text(encoding="utf-8"))["services"]
    prefix = f"{built.package.upper()}_"
    port = free_port()
    override_file = write_override(tmp_path, built, service, port)
    key = secrets.token_urlsafe(32)
    keys = tmp_path / "api-keys"
    keys.write_text(f"# the one key\n{key}\n", encoding="utf-8")
    # Readable by the image's user, as compose.keys.yaml says.
    keys.chmod(0o644)
    also = ("compose.keys.yaml",)
    unset = Compose(project, override_file, also=also, env={f"{prefix}API_KEYS_FILE": ""})
    refused = unset("config")
    assert refused.returncode != 0 and f"set {prefix}API_KEYS_FILE" in refused.stderr
    compose = Compose(project, override_file, also=also, env={f"{prefix}API_KEYS_FILE": str(keys)})
    config = compose.must("config")
    assert key not in config
    environment = yaml.safe_load(config)["services"][service]["environment"]
    assert environment[f"{prefix}API_KEYS_FILE"] == "/run/secrets/api_keys"
    container = f"{compose.name}-{service}-1"
    try:
        # Healthy: the image's HEALTHCHECK asks /readyz, which needs no key.
        compose.up()
        assert Api(port, container).call("POST", "/query", {"text": "cats"})[0] == 401
        assert Api(port, container, key).call("POST", "/query", {"text": "cats"}) == (
            200,
            {"hits": []},
        ), compose.logs()
        seen = (
            compose.logs()
            + subprocess.run(
                ["docker", "inspect", container], capture_output=True, text=True, check=True
            ).stdout
        )
        assert '"event": "keys", "keys": 1' in seen and key not in seen
    finally:
        compose.down()
