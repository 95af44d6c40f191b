"""Every served project's Kubernetes manifests, checked offline as a platform engineer would:
each overlay renders with kubectl's kustomize, passes the API's schemas in strict mode at the
oldest and newest Kubernetes the catalogue names, and checkov finds nothing but the findings
the manifests skip, each with its reason. Then what the pods promise: the image's user and
hardening, probes from the service's own endpoints, and the shape its store allows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from harness import kube
from harness.render import ANSWER_SETS, CATALOGUE, answers_for, render
from harness.template_plan import plan

KUBE = CATALOGUE["kubernetes"]


def plan_of(answers: dict) -> dict:
    """The plan of an answer set; `serve` defaults as copier.yml has it, to http with a store."""
    serve = "http" if answers.get("vector_store", "chromadb") != "none" else "none"
    return plan(**{"serve": serve, **answers})


# Each served answer set, and an MCP server (the same shape of pod).
SERVED = {
    name: answers_for(name) for name in sorted(ANSWER_SETS) if plan_of(ANSWER_SETS[name])["serves"]
}
SERVED["default-mcp"] = answers_for("default", serve="mcp")
# What checkov may find, and only with the reason written beside the skip.
SKIPPED = {"CKV_K8S_43", "CKV_K8S_15"}


@pytest.fixture(scope="module")
def projects(tmp_path_factory) -> dict[str, Path]:
    """Every served set, rendered once, with its overlays' secret files written by the user."""
    rendered = {}
    for name, answers in SERVED.items():
        project = render(tmp_path_factory.mktemp(name) / "project", answers)
        for overlay in kube.overlays(project):
            kube.write_secrets(overlay)
        rendered[name] = project
    return rendered


@pytest.fixture(scope="module")
def manifests(projects, tmp_path_factory) -> dict[tuple[str, str], Path]:
    """`kubectl kustomize` of every overlay of every set, each in a file of its own."""
    out = tmp_path_factory.mktemp("rendered")
    files = {}
    for name, project in projects.items():
        root = project / "deploy" / "kubernetes" / "overlays"
        for overlay in kube.overlays(project):
            label = overlay.relative_to(root).as_posix()
            result = kube.kustomize(overlay)
            assert result.returncode == 0, f"{name} {label}: {result.stderr}"
            path = out / f"{name}--{label.replace('/', '-')}.yaml"
            path.write_text(result.stdout)
            files[name, label] = path
    return files


def docs_of(manifests, name: str, overlay: str) -> list[dict]:
    return kube.documents(manifests[name, overlay].read_text())


def workload(docs: list[dict]) -> tuple[dict, dict]:
    """The served workload (StatefulSet or Deployment) and its one container."""
    [found] = [doc for doc in docs if doc["kind"] in ("StatefulSet", "Deployment")]
    [container] = found["spec"]["template"]["spec"]["containers"]
    return found, container


def test_every_served_set_has_a_dev_and_a_production_overlay(manifests, projects):
    for name in projects:
        labels = {label for set_name, label in manifests if set_name == name}
        assert {"dev", "production"} <= labels, (name, labels)
        stateless = plan_of(SERVED[name])["kubernetes"]["stateless"]
        assert ({"dev-ingest", "production-ingest"} <= labels) == stateless, (name, labels)


def test_projects_that_serve_nothing_have_no_manifests(tmp_path):
    quiet = [name for name in sorted(ANSWER_SETS) if not plan_of(ANSWER_SETS[name])["serves"]]
    assert quiet
    project = render(tmp_path / "project", answers_for(quiet[0]))
    assert not (project / "deploy").exists()


@pytest.mark.parametrize("version", KUBE["validate_versions"])
def test_every_overlay_passes_the_schemas_in_strict_mode(manifests, version):
    for (name, overlay), path in sorted(manifests.items()):
        result = kube.validate(path, version)
        assert result.returncode == 0, (
            f"{name} {overlay} at {version}:\n{result.stdout}{result.stderr}"
        )


def test_checkov_finds_nothing_but_the_skips_each_with_its_reason(manifests, tmp_path):
    for path in manifests.values():
        (tmp_path / path.name).write_text(path.read_text())
    report = kube.checkov_dir(tmp_path)
    failed = [(c["check_id"], c["resource"], c["file_path"]) for c in report["failed_checks"]]
    assert not failed, failed
    skipped = report["skipped_checks"]
    assert {check["check_id"] for check in skipped} == SKIPPED
    for check in skipped:
        assert len(check["check_result"].get("suppress_comment") or "") > 20, check


def test_the_ingress_example_added_to_production_validates_and_passes_checkov(projects, tmp_path):
    # As its comment tells the user: add ingress.yaml to the production overlay's resources.
    overlay = projects["default"] / "deploy" / "kubernetes" / "overlays" / "production"
    kustomization = overlay / "kustomization.yaml"
    text = kustomization.read_text()
    assert "  # - ingress.yaml\n" in text
    kustomization.write_text(text.replace("  # - ingress.yaml\n", "  - ingress.yaml\n"))
    try:
        result = kube.kustomize(overlay)
    finally:
        kustomization.write_text(text)
    assert result.returncode == 0, result.stderr
    docs = kube.documents(result.stdout)
    [ingress] = kube.find(docs, "Ingress")
    [service] = kube.find(docs, "Service")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": service["metadata"]["name"], "port": {"name": "http"}}
    path = tmp_path / "production-with-ingress.yaml"
    path.write_text(result.stdout)
    for version in KUBE["validate_versions"]:
        validated = kube.validate(path, version)
        assert validated.returncode == 0, validated.stdout + validated.stderr
    assert not kube.checkov_dir(tmp_path)["failed_checks"]


@pytest.mark.parametrize("overlay", ["dev", "production"])
def test_the_pod_runs_as_the_image_was_tested(manifests, overlay):
    uid = CATALOGUE["image"]["uid"]
    for name in SERVED:
        docs = docs_of(manifests, name, overlay)
        found, container = workload(docs)
        pod = found["spec"]["template"]["spec"]
        context = {**pod["securityContext"], **container["securityContext"]}
        assert context["runAsNonRoot"] and context["runAsUser"] == uid == context["runAsGroup"]
        assert context["readOnlyRootFilesystem"] and context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], name
        # The model: never from the Hub.
        [settings] = [doc for doc in docs if doc["kind"] == "ConfigMap"]
        assert settings["data"]["HF_HUB_OFFLINE"] == "1"
        assert container["envFrom"] == [{"configMapRef": {"name": settings["metadata"]["name"]}}]


def test_probes_and_shutdown_come_from_the_service_and_the_measured_start(manifests):
    for name in SERVED:
        found, container = workload(docs_of(manifests, name, "production"))
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        startup = container["startupProbe"]
        assert startup["httpGet"]["path"] == "/readyz"
        budget = startup["periodSeconds"] * startup["failureThreshold"]
        assert budget >= KUBE["cold_start_seconds"] * KUBE["startup_margin"]
        pod = found["spec"]["template"]["spec"]
        pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pod["terminationGracePeriodSeconds"] == pause + KUBE["drain_seconds"]


def test_the_cpu_limit_is_what_sizes_torch(manifests):
    for overlay in ("dev", "production"):
        _, container = workload(docs_of(manifests, "default", overlay))
        limits = container["resources"]["limits"]
        assert limits["cpu"] == KUBE["resources"][overlay]["limits"]["cpu"]
        assert container["resources"]["requests"]["memory"]


def test_secrets_reach_the_pod_as_files_the_file_settings_name(manifests):
    for name in SERVED:
        docs = docs_of(manifests, name, "production")
        found, container = workload(docs)
        [secret] = kube.find(docs, "Secret")
        pod = found["spec"]["template"]["spec"]
        [volume] = [v for v in pod["volumes"] if "secret" in v]
        assert volume["secret"]["secretName"] == secret["metadata"]["name"]
        [mount] = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
        assert mount["readOnly"]
        files = [v["value"] for v in container["env"] if v["name"].endswith("_FILE")]
        assert all(path.startswith(mount["mountPath"] + "/") for path in files), files
        keys = {path.removeprefix(mount["mountPath"] + "/") for path in files}
        assert keys == set(secret["data"]), (keys, secret["data"].keys())


def test_an_embedded_store_is_one_pod_with_its_volume_and_says_why(manifests, projects):
    for name in SERVED:
        if plan_of(SERVED[name])["kubernetes"]["stateless"]:
            continue
        docs = docs_of(manifests, name, "production")
        found, container = workload(docs)
        assert found["kind"] == "StatefulSet" and found["spec"]["replicas"] == 1
        [claim] = found["spec"]["volumeClaimTemplates"]
        data_dir = f"{CATALOGUE['image']['home']}/{CATALOGUE['image']['data_folder']}"
        assert {"name": claim["metadata"]["name"], "mountPath": data_dir} in container[
            "volumeMounts"
        ]
        source = projects[name] / "deploy" / "kubernetes" / "base" / "statefulset.yaml"
        assert "only one process may open" in source.read_text()
        assert not kube.find(docs, "HorizontalPodAutoscaler")
        readme = (projects[name] / "README.md").read_text()
        assert re.search(r"embedded.*StatefulSet of one.*cannot scale", readme, re.S), name


def test_the_manifests_have_no_leftover_template_syntax(projects):
    for project in projects.values():
        for path in (project / "deploy").rglob("*.yaml"):
            text = path.read_text()
            assert "{{" not in text and "{%" not in text, path
            assert "\n\n\n" not in text, path
            yaml.safe_load_all(text)


def stateless_sets() -> list[str]:
    return [name for name in SERVED if plan_of(SERVED[name])["kubernetes"]["stateless"]]


def test_some_sets_run_a_server_store_and_some_an_embedded_one():
    assert stateless_sets() and set(SERVED) - set(stateless_sets())


def test_a_server_store_gives_replicas_that_roll_spread_and_scale(manifests):
    for name in stateless_sets():
        docs = docs_of(manifests, name, "production")
        found, _ = workload(docs)
        assert found["kind"] == "Deployment" and found["spec"]["replicas"] >= 2
        assert found["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        labels = found["spec"]["template"]["metadata"]["labels"]
        [budget] = kube.find(docs, "PodDisruptionBudget")
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
        [scaler] = kube.find(docs, "HorizontalPodAutoscaler")
        assert scaler["spec"]["scaleTargetRef"]["name"] == found["metadata"]["name"]
        assert scaler["spec"]["minReplicas"] >= 2
        assert [m["resource"]["name"] for m in scaler["spec"]["metrics"]] == ["cpu"]
        spread = found["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert "kubernetes.io/hostname" in [rule["topologyKey"] for rule in spread]
        [policy] = kube.find(docs, "NetworkPolicy")
        ports = [p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]]
        assert plan_of(SERVED[name])["store"]["port"] in ports and 53 in ports


@pytest.mark.parametrize("overlay", ["dev", "production"])
def test_the_indexed_job_runs_the_services_pod_over_disjoint_shards(manifests, overlay):
    for name in stateless_sets():
        docs = docs_of(manifests, name, f"{overlay}-ingest")
        server, server_container = workload(docs)
        [job] = kube.find(docs, "Job")
        spec = job["spec"]
        assert spec["completionMode"] == "Indexed" and spec["backoffLimitPerIndex"] >= 1
        pod = spec["template"]["spec"]
        assert pod["restartPolicy"] == "Never"
        [container] = pod["containers"]
        env = {v["name"]: v.get("value") for v in container["env"]}
        suffix = "_" + KUBE["shard_count_variable"]
        [count] = [value for key, value in env.items() if key.endswith(suffix)]
        assert count == str(spec["completions"]), (name, env)
        # The service's image, hardening, settings and Secret, in its namespace.
        assert container["image"] == server_container["image"]
        assert container["securityContext"] == server_container["securityContext"]
        assert pod["securityContext"] == server["spec"]["template"]["spec"]["securityContext"]
        assert container["envFrom"] == server_container["envFrom"]
        assert job["metadata"]["namespace"] == server["metadata"]["namespace"]
        names = {doc["metadata"]["name"] for doc in docs}
        volumes = pod["volumes"]
        assert {v["secret"]["secretName"] for v in volumes if "secret" in v} <= names
        assert container["args"][-2:] == ["ingest", "/corpus"]


@pytest.mark.parametrize("overlay", ["dev", "production"])
def test_an_mcp_server_allows_the_names_its_service_is_reached_by(manifests, overlay):
    mcp = [name for name in SERVED if plan_of(SERVED[name])["mcp"]]
    assert mcp
    for name in mcp:
        docs = docs_of(manifests, name, overlay)
        [service] = kube.find(docs, "Service")
        [settings] = kube.find(docs, "ConfigMap")
        [hosts] = [v for k, v in settings["data"].items() if k.endswith("_ALLOWED_HOSTS")]
        service_name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
        for host in (service_name, f"{service_name}.{namespace}.svc"):
            assert f"{host}:*" in hosts.split(","), (name, hosts)
