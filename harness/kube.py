"""A generated project's Kubernetes manifests as its users check them, offline: rendered by
kubectl's kustomize, validated against the API's schemas in strict mode, audited by checkov."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

# The tools the template's dev group locks, beside this interpreter.
KUBECTL = Path(sys.executable).with_name("kubectl")
VALIDATE = Path(sys.executable).with_name("kubernetes-validate")
# checkov pins its dependencies too tightly to share a lock with the template's tools: it runs
# in an environment of its own, at this release.
CHECKOV = "checkov==3.3.30"
# What the overlays' Secrets hold in the tests: placeholders, as a user writes real ones.
PLACEHOLDER = "test-placeholder-not-a-secret"


def overlays(project: Path) -> list[Path]:
    """Every kustomization a user applies: each overlay, and each one's ingest beside it."""
    root = project / "deploy" / "kubernetes" / "overlays"
    return sorted(path.parent for path in root.rglob("kustomization.yaml"))


def write_secrets(overlay: Path) -> list[Path]:
    """The files the overlay's secretGenerator reads, as its README has the user write them."""
    written = []
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    for generator in kustomization.get("secretGenerator", []):
        for name in generator.get("files", []):
            path = overlay / name.split("=")[-1]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{PLACEHOLDER}\n")
            written.append(path)
    for resource in kustomization.get("resources", []):
        # An ingest overlay's Secret is the overlay's it builds on.
        if resource.startswith("../") and (overlay / resource / "kustomization.yaml").is_file():
            written += write_secrets((overlay / resource).resolve())
    return written


def kustomize(overlay: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KUBECTL), "kustomize", str(overlay)], capture_output=True, text=True, timeout=120
    )


def documents(rendered: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def validate(path: Path, version: str) -> subprocess.CompletedProcess[str]:
    """kubernetes-validate --strict at one Kubernetes release."""
    command = [str(VALIDATE), "--strict", "--quiet", "-k", version, str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def checkov_dir(folder: Path) -> dict:
    """checkov's Kubernetes checks on every rendered file in `folder`, offline: its results."""
    command = ["uv", "tool", "run", "--from", CHECKOV, "checkov", "--framework", "kubernetes"]
    command += ["--skip-download", "--output", "json", "--directory", str(folder)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode in (0, 1), result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    # With nothing to scan, checkov prints a summary without results.
    return report.get("results", {"failed_checks": [], "skipped_checks": []})


def find(docs: list[dict], kind: str) -> list[dict]:
    return [doc for doc in docs if doc["kind"] == kind]


def pod_template(docs: list[dict], kind: str) -> dict:
    """The pod spec of the one workload of `kind` (StatefulSet, Deployment, Job)."""
    [workload] = find(docs, kind)
    return workload["spec"]["template"]["spec"]
