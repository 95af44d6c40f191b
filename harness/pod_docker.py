"""A rendered pod's container as `docker run` options that apply the same settings: its user,
read-only root, capabilities, privilege escalation, CPU and memory limits, environment and
volumes. What Docker cannot express raises, so a manifest never runs under weaker settings."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

# Kubernetes' quantity suffixes, as bytes.
UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def cpus(quantity: str) -> str:
    """A CPU quantity ("2", "500m") as Docker's --cpus."""
    return str(int(quantity[:-1]) / 1000) if quantity.endswith("m") else quantity


def memory_bytes(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([A-Za-z]*)", quantity).groups()  # type: ignore[union-attr]
    return int(number) * UNITS[unit]


def security_options(pod: dict, container: dict) -> list[str]:
    """--user, --read-only, capabilities and no-new-privileges from the two security contexts."""
    context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    assert context.get("runAsNonRoot") and context["runAsUser"] != 0, context
    options = ["--user", f"{context['runAsUser']}:{context.get('runAsGroup', 0)}"]
    if "fsGroup" in pod.get("securityContext", {}):
        options += ["--group-add", str(pod["securityContext"]["fsGroup"])]
    if context.get("readOnlyRootFilesystem"):
        options.append("--read-only")
    for capability in context.get("capabilities", {}).get("drop", []):
        options += ["--cap-drop", capability]
    for capability in context.get("capabilities", {}).get("add", []):
        options += ["--cap-add", capability]
    if context.get("allowPrivilegeEscalation") is False:
        options += ["--security-opt", "no-new-privileges"]
    # Docker's default seccomp profile is the runtime default; anything else is not translated.
    assert context.get("seccompProfile", {}).get("type") == "RuntimeDefault", context
    assert not context.get("privileged"), context
    return options


def resource_options(container: dict) -> list[str]:
    limits = container.get("resources", {}).get("limits", {})
    options = []
    if "cpu" in limits:
        options += ["--cpus", cpus(str(limits["cpu"]))]
    if "memory" in limits:
        options += ["--memory", str(memory_bytes(str(limits["memory"])))]
    return options


def environment(container: dict, docs: list[dict]) -> dict[str, str]:
    """The container's variables: its ConfigMaps' data (envFrom), then its own `env`."""
    maps = {
        doc["metadata"]["name"]: doc.get("data", {}) for doc in docs if doc["kind"] == "ConfigMap"
    }
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])
    for variable in container.get("env", []):
        assert "value" in variable, f"not translated: {variable}"
        env[variable["name"]] = variable["value"]
    return env


def secret_folder(secret: dict, mode: int, group: int, folder: Path) -> Path:
    """A Secret's keys as files, owned and moded as the kubelet writes them under fsGroup."""
    folder.mkdir(parents=True, exist_ok=True)
    for key, value in secret.get("data", {}).items():
        path = folder / key
        path.write_bytes(base64.b64decode(value))
        os.chown(path, 0, group)
        path.chmod(mode)
    return folder


def volume_options(
    pod: dict, container: dict, docs: list[dict], work: Path, claims: dict[str, str]
) -> list[str]:
    """Each mount: emptyDir as tmpfs, a Secret as a read-only folder, a claim as a named volume."""
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    secrets = {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == "Secret"}
    group = pod.get("securityContext", {}).get("fsGroup", 0)
    options = []
    for mount in container.get("volumeMounts", []):
        path, volume = mount["mountPath"], volumes.get(mount["name"], {})
        suffix = ":ro" if mount.get("readOnly") else ""
        if "emptyDir" in volume:
            size = memory_bytes(volume["emptyDir"].get("sizeLimit", "64Mi"))
            options += ["--tmpfs", f"{path}:size={size},mode=1777"]
        elif "secret" in volume:
            source = volume["secret"]
            host = secret_folder(
                secrets[source["secretName"]],
                source.get("defaultMode", 0o644),
                group,
                work / mount["name"],
            )
            options += ["--volume", f"{host}:{path}{suffix}"]
        else:
            # A claim (a template's or a pod's): a named volume the test gives.
            options += ["--volume", f"{claims[mount['name']]}:{path}{suffix}"]
    return options


def run_options(
    pod: dict, container: dict, docs: list[dict], work: Path, claims: dict[str, str]
) -> list[str]:
    """Every `docker run` option the pod's container implies, environment aside."""
    return [
        *security_options(pod, container),
        *resource_options(container),
        *volume_options(pod, container, docs, work, claims),
    ]
