"""The plan as Copier derives it: `includes/plan.jinja` rendered for a set of answers."""

from __future__ import annotations

import json

from jinja2 import FileSystemLoader
from jinja2.sandbox import SandboxedEnvironment

from harness.render import CATALOGUE, ROOT

DEFAULTS = {
    "project_slug": "my-app",
    "package_name": "my_app",
    "python_version": "3.12",
    "ml_libraries": ["torch", "sentence-transformers"],
    "vector_store": "chromadb",
    "serve": "http",
    "torch_installer": "conda",
    "lock_platforms": ["linux/amd64", "linux/arm64"],
    "torch_index_url": "https://download.pytorch.org/whl/cpu",
    "conda_channel": "conda-forge",
    "license": "none",
}
# Copier's own environment: sandboxed, with the filter extension copier.yml loads.
ENV = SandboxedEnvironment(
    loader=FileSystemLoader(ROOT), extensions=["jinja2_ansible_filters.AnsibleCoreFiltersExtension"]
)


def plan(**answers) -> dict:
    """The plan for the default answers with `answers` over them."""
    context = {"catalogue": CATALOGUE, **DEFAULTS, **answers}
    return json.loads(ENV.get_template("includes/plan.jinja").render(context))
