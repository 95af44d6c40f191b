"""Schemathesis against the default image's own OpenAPI document, served on loopback.

Every operation gets a bounded number of generated requests, valid and invalid: none may answer
5xx, and every answer must match the schema (its status code documented, its body its model).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from harness import docker
from harness.service_client import Api, free_port, logs

EXAMPLES = 30  # per operation and per mode: bounded, and a few minutes in all
REQUEST_SECONDS = 30  # no single request may hang the test
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)


@pytest.fixture(scope="module")
def base_url(images) -> Iterator[str]:
    """The default image serving with the hashing embedder, on 127.0.0.1 and a free port."""
    built = images.get("defaults")
    port = free_port()
    prefix = built.package.upper()
    env = {
        f"{prefix}_EMBEDDER": "hashing",
        f"{prefix}_HOST": "127.0.0.1",
        f"{prefix}_PORT": str(port),
    }
    # The store lives in the container's own layer: this test keeps nothing.
    container = docker.start(built.tag, network="host", env=env)
    try:
        Api(port, container).wait_ready()
        yield f"http://127.0.0.1:{port}"
    finally:
        print(logs(container)[-2000:])
        subprocess.run(["docker", "rm", "--force", container], capture_output=True)


def exercise(operation, mode: schemathesis.GenerationMode, base: str) -> None:
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
        case.call_and_validate(base_url=base, checks=CHECKS, timeout=REQUEST_SECONDS)

    one()


@pytest.mark.slow
@pytest.mark.image
def test_generated_requests_get_no_5xx_and_answers_that_match_the_schema(base_url):
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", timeout=REQUEST_SECONDS)
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
                exercise(operation, mode, base_url)
            # Every operation runs and all failures are reported; FailureGroup is no Exception.
            except (Exception, FailureGroup) as failure:
                failures.append(f"{operation.label} ({mode.value}):\n{failure}")
    assert not failures, "\n\n".join(failures)
