"""Read the `uv sync` steps of a rendered Dockerfile, to replay them outside Docker."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

import dockerfile

from harness.render import CATALOGUE

CONDA_PREFIX = CATALOGUE["image"]["prefix"]


@dataclass
class SyncStep:
    argv: list[str]
    binds: list[str]  # context paths bind-mounted into the step ("." for the whole context)

    @property
    def skipped(self) -> set[str]:
        """Packages the step leaves to conda (`--no-install-package NAME`)."""
        return {
            self.argv[i + 1] for i, word in enumerate(self.argv) if word == "--no-install-package"
        }


def stage_env(instructions, stage: str) -> dict[str, str]:
    """ENV values in effect in `stage`, following FROM chains inside the file."""
    env: dict[str, str] = {}
    parents: dict[str, str] = {}
    current = None
    per_stage: dict[str, dict[str, str]] = {}
    for instruction in instructions:
        if instruction.cmd == "FROM":
            image, current = instruction.value[0], instruction.value[2]
            parents[current] = image
            per_stage[current] = {}
        elif instruction.cmd == "ENV" and current:
            pairs = zip(instruction.value[::2], instruction.value[1::2], strict=True)
            per_stage[current].update({k: v.strip('"') for k, v in pairs})
    chain = []
    while stage in per_stage:
        chain.append(stage)
        stage = parents[stage]
    for name in reversed(chain):
        env.update(per_stage[name])
    return env


def sync_steps(path: Path) -> tuple[dict[str, str], list[SyncStep]]:
    """The app stage's environment and its `uv sync` steps, in order."""
    instructions = dockerfile.parse_file(str(path))
    steps = []
    for instruction in instructions:
        if instruction.cmd == "RUN" and instruction.value[0].startswith("uv sync"):
            binds = []
            for flag in instruction.flags:
                if "type=bind" in flag:
                    options = dict(
                        part.split("=", 1)
                        for part in flag[len("--mount=") :].split(",")
                        if "=" in part
                    )
                    binds.append(options.get("source", "."))
            steps.append(SyncStep(shlex.split(instruction.value[0]), binds))
    return stage_env(instructions, "app"), steps
