"""The production overlay's pod, run by Docker under exactly its settings, with the image the
manifests name (the default project, model baked in by its README's recipe): user, read-only
root, capabilities, privilege escalation, CPU and memory limits, environment, /tmp as tmpfs,
the Secret as files, the claim as a volume. Its probes are driven as the kubelet drives them,
and its deletion too: preStop, SIGTERM, the grace period. A manifest the image cannot run
under fails here; the one cluster step left is applying it (the live workflow).
"""

from __future__ import annotations

import json
import math
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from harness import kube
from harness.built_images import Built, Images
from harness.kubelet import Pod
from harness.model import bake_context


@pytest.fixture(scope="module")
def built(images: Images) -> Built:
    return images.get("defaults")


@pytest.fixture(scope="module")
def baked(built: Built, images: Images, tmp_path_factory) -> str:
    """The image the manifests expect: the model in it, per the README's recipe."""
    context = bake_context(built.project, built.tag, tmp_path_factory.mktemp("baked") / "ctx")
    tag = f"{built.tag}-baked"
    result = images.build(context, tag)
    assert result.returncode == 0, result.log[-4000:]
    return tag


@pytest.fixture
def production(built: Built) -> list[dict]:
    overlay = built.project / "deploy" / "kubernetes" / "overlays" / "production"
    kube.write_secrets(overlay)
    result = kube.kustomize(overlay)
    assert result.returncode == 0, result.stderr
    return kube.documents(result.stdout)


@pytest.fixture
def claim() -> Iterator[str]:
    """A named volume standing for the StatefulSet's claim."""
    name = f"ml-container-template-claim-{uuid.uuid4().hex[:8]}"
    yield name
    subprocess.run(["docker", "volume", "rm", "--force", name], capture_output=True, check=False)


def cpu_quota(container: str) -> float:
    """The CPU quota Docker gave the container, from cgroup v2's cpu.max or v1's cfs files."""
    v1 = "/sys/fs/cgroup/cpu/cpu.cfs_"
    script = (
        f"cat /sys/fs/cgroup/cpu.max 2>/dev/null || echo $(cat {v1}quota_us) $(cat {v1}period_us)"
    )
    result = subprocess.run(
        ["docker", "exec", container, "sh", "-c", script],
        capture_output=True,
        text=True,
        check=True,
    )
    quota, period = result.stdout.split()
    return int(quota) / int(period)


def call(port: int, method: str, path: str, body: object, key: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        json.dumps(body).encode(),
        {"content-type": "application/json", "authorization": f"Bearer {key}"},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


@pytest.mark.slow
@pytest.mark.image
def test_the_production_pod_starts_serves_and_stops_as_the_kubelet_sees_it(
    built, baked, production, claim, tmp_path
):
    [workload] = kube.find(production, "StatefulSet")
    spec = workload["spec"]["template"]["spec"]
    [container] = spec["containers"]
    # The image name is the overlay's registry; everything else is the pod's own.
    prefix = built.package.upper() + "_"
    pod = Pod(baked, spec, container, production, tmp_path, {"data": claim}, prefix).start()
    try:
        pod.started_within_budget()
        assert pod.answers("readinessProbe") and pod.answers("livenessProbe")

        limit = float(container["resources"]["limits"]["cpu"])
        assert cpu_quota(pod.id) == limit
        [ready] = [json.loads(line) for line in pod.logs().splitlines() if '"ready"' in line]
        # What the service sized itself for (torch gets one thread fewer): the limit, rounded up.
        assert ready["cpus"] == math.ceil(limit), ready

        # The store writes to the claim, the model comes from the image, nothing else is written.
        key = kube.PLACEHOLDER
        documents = [{"id": "cats", "text": "Cats purr and chase mice."}]
        call(pod.port, "POST", "/documents", {"documents": documents}, key)
        hits = call(pod.port, "POST", "/query", {"text": "feline", "k": 1}, key)["hits"]
        assert [hit["id"] for hit in hits] == ["cats"]

        status, seconds = pod.delete()
        assert status == 0, (
            f"exit {status} after {seconds:.1f} s of the grace period:\n{pod.logs()}"
        )
        assert '"event": "stopped"' in pod.logs()
    finally:
        pod.remove()
