"""What the stand-in base images are called, and the upstream names they must never take.

A stand-in under an upstream image's name (mambaorg/micromamba:<tag>) would become the base of a
real project built on the same machine. The stand-ins live under NAMESPACE instead, and every
build names them through the generated Dockerfile's UV_IMAGE and MICROMAMBA_IMAGE build args.
They carry INPUTS_LABEL (which images built FROM them inherit) and a description label.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.render import CATALOGUE

# Docker reads a dotted first component as a registry host, and .invalid never resolves
# (RFC 2606): no registry, Docker Hub included, can ever serve a name under it.
NAMESPACE = "mlct-stand-in.invalid"
INPUTS_LABEL = "org.ml-container-template.stand-in-inputs"
DESCRIPTION_LABEL = "org.opencontainers.image.description"


@dataclass(frozen=True)
class Bases:
    """The two base images a generated Dockerfile builds FROM, and the build args naming them."""

    uv: str
    micromamba: str

    @property
    def build_args(self) -> dict[str, str]:
        return {"UV_IMAGE": self.uv, "MICROMAMBA_IMAGE": self.micromamba}

    @property
    def tags(self) -> list[str]:
        return [self.uv, self.micromamba]


@dataclass(frozen=True)
class StandIns(Bases):
    """The engine's platform: the plain stand-ins and the micromamba variants."""

    lagging: str
    cuda: str
    old: str

    @property
    def tags(self) -> list[str]:
        return [*super().tags, self.lagging, self.cuda, self.old]


@dataclass(frozen=True)
class PlatformStandIns(Bases):
    """The plain stand-ins built for one other platform."""

    platform: str


def repository(reference: str) -> str:
    """The repository of `name:tag` or `name@digest`, without Docker Hub's implicit host."""
    name = reference.split("@", 1)[0]
    head, _, tail = name.rpartition(":")
    if head and "/" not in tail:
        name = head
    for host in ("docker.io/", "index.docker.io/"):
        name = name.removeprefix(host)
    return name


def upstream_repositories() -> list[str]:
    """The repositories catalogue.yml's base images come from: the names no stand-in may take."""
    return [repository(reference) for reference in CATALOGUE["images"].values()]


def under_upstream_name(reference: str) -> bool:
    name = repository(reference)
    return any(name.startswith(upstream) for upstream in upstream_repositories())


def stand_in_tag(key: str, suffix: str = "") -> str:
    """The stand-in of the catalogue's `key` image: its upstream tag, under NAMESPACE."""
    return f"{NAMESPACE}/{key}:{upstream_tag(key)}{suffix}"


def upstream_tag(key: str) -> str:
    """The tag of the catalogue's `key` image: 0.13.9 of ghcr.io/astral-sh/uv:0.13.9."""
    return CATALOGUE["images"][key].rsplit(":", 1)[1]


def description(key: str) -> str:
    """The description label: what the image stands in for, so `docker inspect` tells."""
    return (
        f"Stand-in for {CATALOGUE['images'][key]} built by ml-container-template's tests:"
        " not the real image, never a base to ship"
    )


def stand_in_labels(key: str, inputs: str) -> dict[str, str]:
    return {INPUTS_LABEL: inputs, DESCRIPTION_LABEL: description(key)}


def misnamed(labelled: list[str]) -> list[str]:
    """Those of `labelled` (images carrying INPUTS_LABEL) under an upstream repository's name."""
    return [tag for tag in labelled if under_upstream_name(tag)]


def names() -> StandIns:
    """The tags of the engine's platform's stand-ins, built or not."""
    return StandIns(
        uv=stand_in_tag("uv"),
        micromamba=stand_in_tag("micromamba"),
        lagging=stand_in_tag("micromamba", "-lagging"),
        cuda=stand_in_tag("micromamba", "-cuda"),
        old=stand_in_tag("micromamba", "-old"),
    )


def platform_names(platform: str) -> PlatformStandIns:
    """The tags of `platform`'s (linux/arm64) stand-ins, built or not."""
    arch = platform.split("/")[1]
    return PlatformStandIns(
        platform=platform,
        uv=stand_in_tag("uv", f"-{arch}"),
        micromamba=stand_in_tag("micromamba", f"-{arch}"),
    )
