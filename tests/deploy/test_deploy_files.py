"""The deployment files, checked by the tools operators use (from PyPI, offline): hadolint for the
Dockerfile, the Compose specification's schema, nginx's parser (crossplane), kubectl's kustomize
and the Kubernetes schemas; and checked against each other and the app (commands, ports, probes,
grace periods)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import crossplane  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from app.core.config import Settings
from tests.support.container import DOCKERFILE, container, final_stage, instructions
from tests.support.manifests import BIN, KUBERNETES_VERSION, render
from tests.support.manifests import run as _run
from tests.support.paths import ROOT

COMPOSE = ROOT / "docker-compose.yml"
NGINX = ROOT / "deploy" / "nginx.conf"
KUSTOMIZE = ROOT / "deploy" / "kubernetes"
SERVER_COMMAND = ["python", "-m", "app.serve"]


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert found, f"{name} is not installed (scripts/install --dev installs it)"
    return found


# Dockerfile


def test_dockerfile_passes_hadolint() -> None:
    result = _run(_tool("hadolint"), "--no-color", str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_catch_problems(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install torch\nCMD python app.py\n")
    result = _run(_tool("hadolint"), "--no-color", str(bad))
    assert result.returncode != 0
    assert "DL3007" in result.stdout


def test_dockerfile_is_multi_stage_slim_non_root_with_healthcheck() -> None:
    text = DOCKERFILE.read_text()
    every = instructions(text)
    assert sum(ins.keyword == "FROM" for ins in every) == 2
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.1[1-9]-slim", text, re.M)
    final = final_stage(text)
    assert final[0].arguments == "${PYTHON_IMAGE}", "the final stage starts from the slim base, not the build stage"
    users = [ins.arguments for ins in final if ins.keyword == "USER"]
    assert users
    assert not users[-1].startswith(("0", "root"))
    assert any(ins.keyword == "COPY" and "--from=build /opt/venv" in ins.arguments for ins in final)
    final_runs = " ".join(ins.arguments for ins in final if ins.keyword == "RUN")
    assert not re.search(r"apt-get|pip install|gcc|build-essential", final_runs), "no build tools in the final image"
    assert container().healthcheck == ["python", "-m", "app.healthcheck"]


def test_torch_source_is_a_required_build_argument() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG TORCH_VARIANT=cpu$", text, re.M)
    assert re.search(r'^ARG TORCH_INDEX_URL=""$', text, re.M)
    assert 'if [ -z "$TORCH_INDEX_URL" ]' in text
    assert "exit 1" in text
    assert '--index-url "$TORCH_INDEX_URL"' in text
    assert "torch.version.cuda" in text, "the build checks that it installed the variant it was asked for"
    assert "http" not in text.replace("http://127.0.0.1", ""), "no index host is named in the repository"


OFFLINE_BUILD_ARGS = {"PYTHON_IMAGE", "TORCH_VARIANT", "TORCH_INDEX_URL", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"}


def test_a_builder_without_registries_passes_its_sources_as_arguments() -> None:
    text = DOCKERFILE.read_text()
    declared = {ins.arguments.split("=")[0] for ins in instructions(text) if ins.keyword == "ARG"}
    assert declared >= OFFLINE_BUILD_ARGS
    assert "--mount=type=secret,id=pip_ca" in text, "pip's CA bundle comes as a build secret, never into a layer"
    assert "# syntax=" not in text, "a syntax directive makes BuildKit pull its frontend from a registry"
    for name in ("torchfn", "torchfn-gpu"):
        build = _compose()["services"][name]["build"]
        assert set(build["args"]) == OFFLINE_BUILD_ARGS, name
        assert build["secrets"] == ["pip_ca"], name
    assert _compose()["secrets"]["pip_ca"]["file"] == "${PIP_CA_BUNDLE:-/dev/null}"


def test_dependencies_are_pinned() -> None:
    for name in ("requirements.txt", "requirements-dev.txt", "requirements-nodeps.txt"):
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line.startswith("-e ./"):  # a distribution of this repository (the client), installed editable
                assert (ROOT / line.removeprefix("-e ") / "pyproject.toml").is_file(), f"{name}: {line!r}"
            elif line and not line.startswith("-r"):
                assert re.fullmatch(r"[A-Za-z0-9_.\-]+(\[[\w,]+\])?==[\w.+]+", line), f"{name}: {line!r} is not pinned"


def test_container_writes_only_under_tmp() -> None:
    env = container().env
    for key in ("HOME", "XDG_CACHE_HOME", "TORCH_HOME", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR", "TMPDIR"):
        assert env[key].startswith("/tmp"), key
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"


def test_one_server_command_everywhere() -> None:
    assert container().command == SERVER_COMMAND
    serve = (ROOT / "scripts" / "serve").read_text()
    assert re.search(r"^exec \.venv/bin/python -m app\.serve\b", serve, re.M)
    readme = (ROOT / "README.md").read_text()
    assert "python -m app.serve" in readme
    deployment = yaml.safe_load((KUSTOMIZE / "base" / "deployment.yaml").read_text())
    assert deployment["spec"]["template"]["spec"]["containers"][0]["command"] == SERVER_COMMAND


# Compose


def test_compose_file_matches_the_compose_specification() -> None:
    result = _run(_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_check_does_catch_problems(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("  read_only: true", "  readonly: true", 1))  # in the shared anchor
    result = _run(_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(broken))
    assert result.returncode != 0


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_compose_services_are_hardened_and_limited() -> None:
    services = _compose()["services"]
    for name in ("torchfn", "torchfn-gpu", "torchfn-scaled"):
        service = services[name]
        assert service["read_only"] is True, name
        assert any(t.startswith("/tmp") for t in service["tmpfs"]), name
        assert service["env_file"] == ["deploy/torchfn.env"], name
        assert service["restart"] == "unless-stopped", name
        assert service["healthcheck"]["test"] == ["CMD", *container().healthcheck], name
        assert service["deploy"]["resources"]["limits"]["memory"], name
        grace = float(service["stop_grace_period"].rstrip("s"))
        assert grace > Settings().shutdown_grace_s, f"{name}: docker must wait longer than the grace period"
    gpu = services["torchfn-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["build"]["args"]["TORCH_VARIANT"] == "cuda"
    assert gpu["environment"]["TORCHFN_DEVICE"] == "cuda"
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert device["capabilities"] == ["gpu"]
    assert services["torchfn-scaled"]["deploy"]["replicas"] >= 2
    assert services["nginx"]["profiles"] == ["scaled"]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in services["nginx"]["volumes"]


def test_env_file_sets_only_known_settings_to_valid_values(monkeypatch: pytest.MonkeyPatch) -> None:
    known = {f"TORCHFN_{name.upper()}" for name in Settings.model_fields}
    lines = [line for line in (ROOT / "deploy" / "torchfn.env").read_text().splitlines() if line and line[0] != "#"]
    assert lines
    for line in lines:
        name, _, value = line.partition("=")
        assert name in known, line
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.api_keys == [], "the example leaves auth off"
    assert settings.cors_origins == [], "the example leaves CORS off"


# nginx


def test_nginx_config_parses_and_balances_the_scaled_replicas() -> None:
    parsed = crossplane.parse(str(NGINX), check_ctx=True, check_args=True)
    assert parsed["status"] == "ok", parsed["errors"]
    text = NGINX.read_text()
    assert re.search(r"server torchfn-scaled:8000\b", text)
    port = _compose()["services"]["nginx"]["ports"][0].split(":")[-1]
    assert re.search(rf"listen {port};", text)
    body_limit = int(re.search(r"client_max_body_size (\d+)m;", text).group(1))  # type: ignore[union-attr]
    assert body_limit * 1024 * 1024 >= Settings().max_body_bytes


# Kubernetes


@pytest.fixture(scope="module", params=["base", "overlays/gpu"])
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(KUSTOMIZE / request.param)


def test_manifests_validate_against_the_kubernetes_schemas(rendered: list[dict[str, Any]]) -> None:
    kinds = sorted(doc["kind"] for doc in rendered)
    assert kinds == ["Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"]
    for doc in rendered:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_kustomize_does_catch_a_broken_overlay(tmp_path: Path) -> None:
    shutil.copytree(KUSTOMIZE, tmp_path / "kubernetes")
    patch = tmp_path / "kubernetes" / "overlays" / "gpu" / "deployment-gpu.yaml"
    patch.write_text(patch.read_text().replace("name: torchfn", "name: no-such-deployment", 1))
    result = _run(str(BIN / "kubectl"), "kustomize", str(patch.parent))
    assert result.returncode != 0
    assert "no-such-deployment" in result.stderr


def test_the_kubernetes_check_does_catch_problems() -> None:
    (deployment,) = [doc for doc in render(KUSTOMIZE / "base") if doc["kind"] == "Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["port"] = "grpc"  # a number only
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def _deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = [doc for doc in docs if doc["kind"] == "Deployment"]
    return deployment


def _env(container_spec: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container_spec.get("env", [])}


def test_deployment_probes_resources_security_and_shutdown(rendered: list[dict[str, Any]]) -> None:
    pod = _deployment(rendered)["spec"]["template"]["spec"]
    (main,) = pod["containers"]
    assert main["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert main["readinessProbe"]["grpc"] == {"port": int(container().env["TORCHFN_GRPC_PORT"])}  # health service
    assert main["ports"][0]["containerPort"] == int(container().env["TORCHFN_PORT"])
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(main["resources"][kind])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    security = main["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert {"name": "tmp", "mountPath": "/tmp"} in main["volumeMounts"]
    assert any(v["name"] == "tmp" and "emptyDir" in v for v in pod["volumes"])
    pause = main["lifecycle"]["preStop"]["exec"]["command"]
    assert pause[0] == "sleep"
    grace = float(_env(main).get("TORCHFN_SHUTDOWN_GRACE_S", Settings().shutdown_grace_s))
    assert pod["terminationGracePeriodSeconds"] > float(pause[1]) + grace


def test_gpu_overlay_runs_one_process_on_one_gpu() -> None:
    pod = _deployment(render(KUSTOMIZE / "overlays" / "gpu"))["spec"]["template"]["spec"]
    (main,) = pod["containers"]
    assert main["resources"]["limits"]["nvidia.com/gpu"] == "1"
    env = _env(main)
    assert env["TORCHFN_DEVICE"] == "cuda"
    assert env["TORCHFN_WORKERS"] == "1"
    assert main["image"].endswith(":cuda")
    Settings(device=env["TORCHFN_DEVICE"], workers=int(env["TORCHFN_WORKERS"]))  # accepted by the settings


def test_hpa_and_pdb_target_the_deployment(rendered: list[dict[str, Any]]) -> None:
    deployment = _deployment(rendered)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    by_kind = {doc["kind"]: doc for doc in rendered}
    hpa = by_kind["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]
    assert by_kind["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert by_kind["Service"]["spec"]["selector"].items() <= labels.items()


# The gRPC face's port


def _container_port(mapping: str) -> int:
    return int(mapping.rsplit(":", 1)[1])


def test_the_grpc_port_is_exposed_mapped_and_named_for_h2c(rendered: list[dict[str, Any]]) -> None:
    image = container()
    http, grpc = int(image.env["TORCHFN_PORT"]), int(image.env["TORCHFN_GRPC_PORT"])
    assert grpc == Settings.model_fields["grpc_port"].default
    assert image.exposed == [http, grpc]
    services = _compose()["services"]
    for name in ("torchfn", "torchfn-gpu"):
        assert sorted(_container_port(mapping) for mapping in services[name]["ports"]) == [http, grpc], name
    host_ports = [mapping.split(":")[-2] for service in services.values() for mapping in service.get("ports", [])]
    assert len(host_ports) == len(set(host_ports)), "two services publish the same host port"
    (main,) = _deployment(rendered)["spec"]["template"]["spec"]["containers"]
    assert {"name": "grpc", "containerPort": grpc, "protocol": "TCP"} in main["ports"]
    service = {doc["kind"]: doc for doc in rendered}["Service"]
    (port,) = [port for port in service["spec"]["ports"] if port["name"] == "grpc"]
    assert (port["targetPort"], port["appProtocol"]) == ("grpc", "kubernetes.io/h2c")
