"""Schemathesis against the default image's own OpenAPI document, served on loopback with keys.

Every operation gets a bounded number of generated requests, valid and invalid: none may answer
5xx, every answer must match the schema (its status code documented, its body its model), and
each operation that declares the bearer scheme must refuse a request without the key or with
another. The same container shows every endpoint asking for a key but health and metrics, and
its logs holding no key.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    ignored_auth,
    response_schema_conformance,
    status_code_conformance,
)

from harness import docker
from harness.service_client import Api, free_port, logs

EXAMPLES = 30  # per operation and per mode: bounded, and a few minutes in all
REQUEST_SECONDS = 30  # no single request may hang the test
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, ignored_auth]
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
# Two keys, as while one replaces the other; neither may reach a log.
KEYS = (secrets.token_urlsafe(32), secrets.token_urlsafe(32))
# Where the keys file is mounted, as compose.keys.yaml mounts its secret.
KEYS_IN_CONTAINER = "/run/secrets/api_keys"
# The routes anyone may call: probes and scrapers hold no key.
OPEN = ("/livez", "/readyz", "/metrics")


@dataclass
class Served:
    base: str
    container: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {KEYS[0]}"}


@pytest.fixture(scope="module")
def served(images, tmp_path_factory) -> Iterator[Served]:
    """The default image serving with the hashing embedder, on 127.0.0.1 and a free port, asking
    for a key from a file mounted read-only, as compose.keys.yaml mounts it."""
    built = images.get("defaults")
    keys = tmp_path_factory.mktemp("keys") / "api-keys"
    keys.write_text(f"# two keys while the first is replaced\n{KEYS[0]}\n\n{KEYS[1]}\n")
    # Readable by the image's own user, as the README tells.
    keys.chmod(0o644)
    port = free_port()
    prefix = built.package.upper()
    env = {
        f"{prefix}_EMBEDDER": "hashing",
        f"{prefix}_HOST": "127.0.0.1",
        f"{prefix}_PORT": str(port),
        f"{prefix}_API_KEYS_FILE": KEYS_IN_CONTAINER,
    }
    # The store lives in the container's own layer: this test keeps nothing.
    mount = (f"{keys}:{KEYS_IN_CONTAINER}:ro",)
    container = docker.start(built.tag, network="host", env=env, volumes=mount)
    try:
        Api(port, container).wait_ready()
        yield Served(f"http://127.0.0.1:{port}", container)
    finally:
        print(logs(container)[-2000:])
        subprocess.run(["docker", "rm", "--force", container], capture_output=True)


def exercise(operation, mode: schemathesis.GenerationMode, served: Served) -> None:
    """Up to EXAMPLES generated requests; Hypothesis shrinks and raises the first failure."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        # No "explain" phase: it replays the failing case many times over HTTP.
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(operation.as_strategy(generation_mode=mode))
    def one(case) -> None:
        case.call_and_validate(
            base_url=served.base, headers=served.headers, checks=CHECKS, timeout=REQUEST_SECONDS
        )

    one()


@pytest.mark.slow
@pytest.mark.image
def test_generated_requests_get_no_5xx_and_answers_that_match_the_schema(served):
    schema = schemathesis.openapi.from_url(
        f"{served.base}/openapi.json", headers=served.headers, timeout=REQUEST_SECONDS
    )
    operations, failures = [], []
    for result in schema.get_all_operations():
        if isinstance(result, Ok):
            operations.append(result.ok())
        else:  # an operation whose schema schemathesis cannot read is a failure too
            failures.append(f"unreadable operation: {result.err()}")
    labels = sorted(operation.label for operation in operations)
    for expected in ("POST /embed", "POST /documents", "POST /query", "GET /readyz"):
        assert expected in labels, labels
    for operation in operations:
        inputs = (operation.path_parameters, operation.query, operation.headers, operation.body)
        # Nothing to get wrong in a request without inputs (the health checks): positive only.
        for mode in MODES if any(len(part) for part in inputs) else MODES[:1]:
            try:
                exercise(operation, mode, served)
            # Every operation runs and all failures are reported; FailureGroup is no Exception.
            except (Exception, FailureGroup) as failure:
                failures.append(f"{operation.label} ({mode.value}):\n{failure}")
    assert not failures, "\n\n".join(failures)


def ask(served: Served, method: str, path: str, key: str | None) -> tuple[int, str | None]:
    """The status and the WWW-Authenticate header of a request with `key`, or with none."""
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    request = urllib.request.Request(served.base + path, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_SECONDS) as response:
            return response.status, response.headers.get("WWW-Authenticate")
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("WWW-Authenticate")


def endpoints(served: Served) -> list[tuple[str, str]]:
    """Every operation the served document lists, its path parameters filled in, and the docs."""
    request = urllib.request.Request(f"{served.base}/openapi.json", headers=served.headers)
    with urllib.request.urlopen(request, timeout=REQUEST_SECONDS) as response:
        document = json.load(response)
    found = [("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/metrics")]
    for path, operations in document["paths"].items():
        filled = re.sub(r"\{[^}]*\}", "some-id", path)
        found += [(method.upper(), filled) for method in operations]
    return found


@pytest.mark.slow
@pytest.mark.image
def test_every_endpoint_but_health_and_metrics_needs_one_of_the_keys(served):
    routes = endpoints(served)
    assert {("POST", "/query"), ("DELETE", "/documents/some-id"), ("GET", "/readyz")} <= set(routes)
    wrong = secrets.token_urlsafe(32)
    for method, path in routes:
        if path in OPEN:
            assert ask(served, method, path, None)[0] == 200, path
            continue
        assert ask(served, method, path, None) == (401, "Bearer"), (method, path)
        assert ask(served, method, path, wrong) == (401, 'Bearer error="invalid_token"'), path
        for key in KEYS:
            status, challenge = ask(served, method, path, key)
            assert status != 401 and challenge is None, (method, path, status)
    lines = docker.logs(served.container).splitlines()
    events = [json.loads(line) for line in lines if line[:1] == "{"]
    assert {"event": "keys", "keys": 2} in events
    assert {"method": "POST", "path": "/query", "status": 401} in [
        {name: event.get(name) for name in ("method", "path", "status")} for event in events
    ]


@pytest.mark.slow
@pytest.mark.image
def test_no_key_reaches_the_container_log(served):
    status, _ = ask(served, "POST", "/query", KEYS[1])
    assert status == 415  # past the key check: no body sent
    ask(served, "GET", f"/readyz?key={KEYS[0]}", KEYS[0])
    text = docker.logs(served.container)
    assert '"status": 401' in text and not [key for key in KEYS if key in text]
