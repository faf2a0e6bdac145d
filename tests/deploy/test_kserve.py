"""``deploy/kserve/``: the serving runtimes, the InferenceServices and the KEDA ScaledObject,
rendered by kubectl's kustomize; every KServe and KEDA resource validated strictly against the CRDs
of the pinned releases (``tests/data/crds/``), the rest and the Deployment KServe would make
against Kubernetes' schemas; checked against each other, against what Knative admits, and
against the app; and the server started as the runtime starts it and probed as KServe does."""

from __future__ import annotations

import copy
import re
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import torch
import torch.nn.functional as F
from grpc_health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from prometheus_client.parser import text_string_to_metric_families

from app.compute.catalogue.registry import BUILT_IN
from app.core.config import Settings
from app.protocols.oip.grpc.messages import ModelReadyRequest, ServerReadyRequest
from app.telemetry.metrics import Metrics
from tests.support.container import DOCKERFILE, container, final_stage
from tests.support.crd_schemas import CelRule, CustomResourceValidator
from tests.support.kserve import (
    CONTAINER,
    DEPLOYMENT_MODE,
    KNATIVE,
    KNATIVE_DRAIN_S,
    KSERVE,
    KUSTOMIZATIONS,
    MODEL_MOUNT,
    STANDARD,
    deployment_mode,
    env,
    http_port,
    http_probes,
    inference_services,
    kserve_container,
    plugin_package_root,
    pod_spec,
    predictor_deployment,
    predictor_name,
    rendered,
    runtime_for,
    runtimes,
    supports,
)
from tests.support.manifests import KUBERNETES_VERSION
from tests.support.oip_grpc import Client, infer_request, outputs_of
from tests.support.reference import assert_same
from tests.support.server_process import RunningServer, running_server

SERVER_COMMAND = ["python", "-m", "app.serve"]
OTHER_ENV = {"PYTHONPATH"}
"""What the runtime's environment may set besides the service's settings."""


@pytest.fixture(scope="module")
def validator() -> CustomResourceValidator:
    return CustomResourceValidator(KUBERNETES_VERSION)


def _isvc(name: str) -> dict[str, Any]:
    return inference_services()[name]


def _kind(directory: str, kind: str) -> dict[str, Any]:
    (doc,) = [doc for doc in rendered(directory) if doc["kind"] == kind]
    return doc


# What the pinned CRDs check with CEL (x-kubernetes-validations), which the validator does not
# evaluate: each rule that our resources reach, by its text, and the same check in Python.
KNOWN_CEL_RULES: dict[str, Callable[[Any], bool]] = {
    # keda.sh ScaledObject spec: "minReplicaCount must be less than or equal to maxReplicaCount"
    "!has(self.minReplicaCount) || self.minReplicaCount <= (has(self.maxReplicaCount) ? self.maxReplicaCount : 100)": (
        lambda spec: spec.get("minReplicaCount", 0) <= spec.get("maxReplicaCount", 100)
    ),
}


def _cel_failures(rules: list[CelRule]) -> list[str]:
    unknown = [rule.rule for rule in rules if " ".join(rule.rule.split()) not in KNOWN_CEL_RULES]
    assert not unknown, f"CEL rules the tests do not know (add them to KNOWN_CEL_RULES): {unknown}"
    return [rule.message for rule in rules if not KNOWN_CEL_RULES[" ".join(rule.rule.split())](rule.subject)]


# The files


def test_every_kustomization_under_deploy_kserve_is_checked() -> None:
    found = {str(path.parent.relative_to(KSERVE)) for path in KSERVE.rglob("kustomization.yaml")}
    assert found == set(KUSTOMIZATIONS)


@pytest.mark.parametrize("directory", KUSTOMIZATIONS)
def test_every_resource_validates_strictly(directory: str, validator: CustomResourceValidator) -> None:
    docs = rendered(directory)
    assert docs
    for doc in docs:
        if validator.knows(doc):
            errors, rules = validator.errors(doc)
            assert not errors, f"{doc['kind']} {doc['metadata']['name']}:\n" + "\n".join(errors)
            assert not _cel_failures(rules)
        else:  # one of Kubernetes' own kinds
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_kserve_kinds_are_the_pinned_crds(validator: CustomResourceValidator) -> None:
    kinds = {(doc["apiVersion"], doc["kind"]) for directory in KUSTOMIZATIONS for doc in rendered(directory)}
    assert ("serving.kserve.io/v1alpha1", "ClusterServingRuntime") in kinds
    assert ("serving.kserve.io/v1beta1", "InferenceService") in kinds
    assert ("keda.sh/v1alpha1", "ScaledObject") in kinds
    for api_version, kind in kinds:
        if "kserve" in api_version or "keda" in api_version:
            assert validator.knows({"apiVersion": api_version, "kind": kind}), (api_version, kind)


def _misspelled_runtime(runtime: dict[str, Any]) -> None:
    main = runtime["spec"]["containers"][0]
    main["readynessProbe"] = main.pop("readinessProbe")


def _misspelled_isvc(isvc: dict[str, Any]) -> None:
    isvc["spec"]["predictor"]["minReplica"] = isvc["spec"]["predictor"].pop("minReplicas")


def _misspelled_trigger(scaled: dict[str, Any]) -> None:
    scaled["spec"]["triggers"][0]["metadat"] = scaled["spec"]["triggers"][0].pop("metadata")


def _misspelled_metadata(runtime: dict[str, Any]) -> None:
    runtime["metadata"]["label"] = runtime["metadata"].pop("labels")


def _duplicate_env(runtime: dict[str, Any]) -> None:
    runtime["spec"]["containers"][0]["env"].append({"name": "TORCHFN_PORT", "value": "9000"})


def _port_as_text(runtime: dict[str, Any]) -> None:
    runtime["spec"]["containers"][0]["ports"][0]["containerPort"] = "8000"


def _replicas_past_int32(scaled: dict[str, Any]) -> None:
    scaled["spec"]["maxReplicaCount"] = 2**31


@pytest.mark.parametrize(
    ("directory", "kind", "change", "refused"),
    [
        ("runtimes/standard", "ClusterServingRuntime", _misspelled_runtime, "'readynessProbe' was unexpected"),
        ("every-function", "InferenceService", _misspelled_isvc, "'minReplica' was unexpected"),
        ("scaled", "ScaledObject", _misspelled_trigger, "'metadat' was unexpected"),
        ("runtimes/standard", "ClusterServingRuntime", _misspelled_metadata, "'label' was unexpected"),
        ("runtimes/standard", "ClusterServingRuntime", _duplicate_env, 'duplicate entries for {"name": "TORCHFN_P'),
        ("runtimes/standard", "ClusterServingRuntime", _port_as_text, "'8000' is not of type 'integer'"),
        ("scaled", "ScaledObject", _replicas_past_int32, "greater than the maximum of 2147483647"),
    ],
    ids=["field", "predictor-field", "trigger-field", "metadata", "duplicate-key", "type", "int32"],
)
def test_the_strict_validation_does_refuse(
    directory: str,
    kind: str,
    change: Callable[[dict[str, Any]], None],
    refused: str,
    validator: CustomResourceValidator,
) -> None:
    doc = copy.deepcopy(_kind(directory, kind))
    change(doc)
    errors, _ = validator.errors(doc)
    assert any(refused in error for error in errors), errors


def test_a_failing_cel_rule_is_reported(validator: CustomResourceValidator) -> None:
    scaled = copy.deepcopy(_kind("scaled", "ScaledObject"))
    scaled["spec"]["minReplicaCount"] = scaled["spec"]["maxReplicaCount"] + 1
    errors, rules = validator.errors(scaled)
    assert not errors
    assert _cel_failures(rules) == ["minReplicaCount must be less than or equal to maxReplicaCount"]


# The runtime


def _standard_runtime() -> dict[str, Any]:
    runtime: dict[str, Any] = runtimes()["torchfn"]
    return runtime


def _main(runtime: dict[str, Any]) -> dict[str, Any]:
    main: dict[str, Any]
    (main,) = runtime["spec"]["containers"]
    assert main["name"] == CONTAINER
    return main


def test_the_runtime_runs_the_image_as_the_image_runs() -> None:
    for runtime in runtimes().values():
        main = _main(runtime)
        assert main["command"] == SERVER_COMMAND == container().command
        assert "args" not in main
        assert main["image"] == "torchfn:cpu"
        assert "{{" not in str(runtime), "KServe fills {{.Name}} placeholders in the runtime: none is meant"
        users = [ins.arguments for ins in final_stage(DOCKERFILE.read_text()) if ins.keyword == "USER"]
        assert f"{main['securityContext']['runAsUser']}:{main['securityContext']['runAsGroup']}" == users[-1]


def test_the_runtime_declares_the_ports_it_listens_on() -> None:
    main = _main(_standard_runtime())
    http, grpc = main["ports"]
    assert http == http_port(main)
    assert http == {"name": "http1", "containerPort": 8000, "protocol": "TCP"}
    assert grpc == {"name": "h2c", "containerPort": 8001, "protocol": "TCP"}  # the gRPC face's port
    assert env(main)["TORCHFN_PORT"] == str(http["containerPort"]) == container().env["TORCHFN_PORT"]
    assert env(main)["TORCHFN_GRPC_PORT"] == str(grpc["containerPort"]) == container().env["TORCHFN_GRPC_PORT"]
    assert env(main)["TORCHFN_HOST"] == "0.0.0.0"
    for probe in http_probes(main):
        assert probe.port == http["containerPort"], probe
    annotations = _standard_runtime()["spec"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    for key in ("prometheus.io", "prometheus.kserve.io"):
        assert annotations[f"{key}/port"] == str(http["containerPort"])
        assert annotations[f"{key}/path"] == "/metrics"


def test_the_knative_runtime_turns_off_the_grpc_face_it_cannot_route() -> None:
    main = _main(runtimes()["torchfn-knative"])
    assert [port["name"] for port in main["ports"]] == ["http1"]
    assert env(main)["TORCHFN_GRPC_PORT"] == "0"


def test_the_runtime_sets_only_known_settings_to_valid_values(monkeypatch: pytest.MonkeyPatch) -> None:
    known = {f"TORCHFN_{name.upper()}" for name in Settings.model_fields}
    for runtime in runtimes().values():
        settings = env(_main(runtime))
        assert set(settings) <= known | OTHER_ENV, set(settings) - known - OTHER_ENV
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        Settings()
    assert env(_main(_standard_runtime()))["PYTHONPATH"] == MODEL_MOUNT


def test_the_runtime_is_restricted_and_limited() -> None:
    """Pod Security's restricted profile, all of it on the container (Knative refuses a pod-level
    security context unless its operator enables one)."""
    for runtime in runtimes().values():
        main = _main(runtime)
        security = main["securityContext"]
        assert security["runAsNonRoot"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["privileged"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}
        assert security["readOnlyRootFilesystem"] is True
        assert {"name": "tmp", "mountPath": "/tmp"} in main["volumeMounts"]
        assert {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "512Mi"}} in runtime["spec"]["volumes"]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(main["resources"][kind])


def test_the_model_format_auto_selects_the_standard_runtime_alone() -> None:
    selecting = [
        runtime["metadata"]["name"]
        for runtime in runtimes().values()
        for entry in runtime["spec"]["supportedModelFormats"]
        if entry["name"] == "torch-functions" and entry.get("autoSelect")
    ]
    assert selecting == ["torchfn"]
    assert _standard_runtime()["spec"]["protocolVersions"] == ["v2", "grpc-v2"]


# Knative's admission rules (knative/serving pkg/apis/serving: k8s_validation.go, fieldmask.go)
KNATIVE_PORT_NAMES = {"http1", "h2c", ""}
KNATIVE_RESERVED_PORTS = {8008, 8012, 8013, 8022, 9090, 9091}
KNATIVE_RESERVED_ENV = {"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"}
KNATIVE_VOLUMES = {"emptyDir", "secret", "configMap", "projected"}
KNATIVE_POD_FIELDS = {
    "serviceAccountName",
    "containers",
    "volumes",
    "imagePullSecrets",
    "enableServiceLinks",
    "automountServiceAccountToken",
}
"""The PodSpec fields Knative admits with its default features (never
``terminationGracePeriodSeconds``: the revision's ``timeoutSeconds`` sets it; the others, such as
``securityContext``, ``nodeSelector`` or ``affinity``, only once its operator enables them)."""


def knative_refusals(pod: dict[str, Any]) -> list[str]:
    refusals = [f"pod field {name}" for name in set(pod) - KNATIVE_POD_FIELDS]
    if pod.get("automountServiceAccountToken") is True:
        refusals.append("automountServiceAccountToken may only be false")
    for volume in pod.get("volumes", []):
        if not set(volume) - {"name"} <= KNATIVE_VOLUMES:
            refusals.append(f"volume {volume}")
    (main,) = pod["containers"]
    if len(main.get("ports", [])) > 1:
        refusals.append("more than one container port is set")
    port = (main.get("ports") or [{"name": "", "containerPort": 8080}])[0]
    if port.get("name", "") not in KNATIVE_PORT_NAMES:
        refusals.append(f"port name {port['name']!r}")
    if port["containerPort"] in KNATIVE_RESERVED_PORTS:
        refusals.append(f"reserved port {port['containerPort']}")
    for name in set(env(main)) & KNATIVE_RESERVED_ENV:
        refusals.append(f"reserved variable {name}")
    for field in ("lifecycle", "stdin", "stdinOnce", "tty", "volumeDevices"):
        if field in main:
            refusals.append(f"container field {field}")
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe_port = main.get(kind, {}).get("httpGet", {}).get("port", port.get("name"))
        if isinstance(probe_port, str) and probe_port != port.get("name"):
            refusals.append(f"{kind} port must match the container port")
    return refusals


def test_the_knative_check_does_refuse() -> None:
    """The Standard runtime and InferenceService, as Knative would see them."""
    pod = pod_spec(_standard_runtime(), _isvc("torchfn-scaled"))
    assert set(knative_refusals(pod)) == {
        "more than one container port is set",
        "container field lifecycle",
        "pod field terminationGracePeriodSeconds",
    }


def test_knative_inference_services_get_what_knative_admits() -> None:
    available = runtimes()
    serverless = [isvc for isvc in inference_services().values() if deployment_mode(isvc) == KNATIVE]
    assert {isvc["metadata"]["name"] for isvc in serverless} == {"torchfn", "torchfn-plugins"}
    for isvc in serverless:
        runtime = runtime_for(isvc, available)
        assert runtime["metadata"]["name"] == "torchfn-knative"
        pod = pod_spec(runtime, isvc)
        assert not knative_refusals(pod), knative_refusals(pod)
        assert pod["containers"][0]["ports"] == [_main(_standard_runtime())["ports"][0]], "HTTP is exposed"


def test_every_inference_service_says_its_deployment_mode_and_gets_a_runtime() -> None:
    """The cluster's default mode is KServe's configuration's (Serverless in its release config):
    every InferenceService names its own, and the runtime it gets serves its format and protocol."""
    for isvc in inference_services().values():
        assert isvc["metadata"]["annotations"][DEPLOYMENT_MODE] in {KNATIVE, STANDARD}
        assert supports(runtime_for(isvc, runtimes()), isvc)
        assert isvc["spec"]["predictor"]["model"]["protocolVersion"] == "v2"
    assert runtime_for(_isvc("torchfn-scaled"), runtimes())["metadata"]["name"] == "torchfn"


def test_the_drain_fits_the_grace_period() -> None:
    """Standard: the preStop pause, then SIGTERM and TORCHFN_SHUTDOWN_GRACE_S, within
    terminationGracePeriodSeconds. Knative: its queue-proxy's drain, then the same, within the
    revision's timeout (which Knative makes the grace period), which also outlasts a request."""
    for isvc in inference_services().values():
        pod = pod_spec(runtime_for(isvc, runtimes()), isvc)
        (main,) = pod["containers"]
        grace = float(env(main)["TORCHFN_SHUTDOWN_GRACE_S"])
        if deployment_mode(isvc) == STANDARD:
            pause = main["lifecycle"]["preStop"]["exec"]["command"]
            assert pause[0] == "sleep"
            assert pod["terminationGracePeriodSeconds"] > float(pause[1]) + grace
        else:
            timeout = isvc["spec"]["predictor"]["timeout"]
            assert timeout > KNATIVE_DRAIN_S + grace
            assert timeout > Settings().request_timeout_s


def test_the_plugin_service_takes_its_package_from_storage() -> None:
    isvc = _isvc("torchfn-plugins")
    model = isvc["spec"]["predictor"]["model"]
    assert model["storageUri"] == "pvc://torchfn-plugins"
    plugins = env(kserve_container(runtime_for(isvc, runtimes()), isvc))["TORCHFN_PLUGINS"]
    for entry in plugins.split(","):
        package = entry.split(":")[0].split(".")[0]
        assert (plugin_package_root() / package / "__init__.py").is_file(), entry
    assert "storageUri" not in _isvc("torchfn")["spec"]["predictor"]["model"], "every function needs no storage"


# Raw deployment and autoscaling


def test_the_deployment_kserve_makes_validates_and_is_hardened() -> None:
    isvc = _isvc("torchfn-scaled")
    deployment = predictor_deployment(runtime_for(isvc, runtimes()), isvc)
    kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert [port["containerPort"] for port in pod["containers"][0]["ports"]] == [8000, 8001]
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def test_the_scaled_object_scales_the_predictor_on_the_services_own_gauges() -> None:
    isvc = _isvc("torchfn-scaled")
    scaled = _kind("scaled", "ScaledObject")
    assert isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "external", "no second autoscaler"
    target = scaled["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", predictor_name(isvc))
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    gauges = {
        family.name
        for family in text_string_to_metric_families(Metrics().render().decode())
        if family.type == "gauge" and family.name.startswith("torchfn_")
    }
    namespace = scaled["metadata"]["namespace"]
    assert namespace == isvc["metadata"]["namespace"]
    pod_of_predictor = f"{predictor_name(isvc)}-5d8f7c9b6-x2x7q"
    queried = set()
    for trigger in scaled["spec"]["triggers"]:
        assert trigger["type"] == "prometheus"
        assert trigger["metricType"] == "AverageValue", "per pod: KEDA asks for ceil(value / threshold) pods"
        metadata = trigger["metadata"]
        assert set(metadata) <= KEDA_PROMETHEUS_METADATA, set(metadata) - KEDA_PROMETHEUS_METADATA
        assert {"serverAddress", "query", "threshold"} <= set(metadata)
        assert float(metadata["threshold"]) > 0
        names = set(re.findall(r"\btorchfn_\w+", metadata["query"]))
        assert names <= gauges, names - gauges
        queried |= names
        for selector in re.findall(r"\{([^}]*)\}", metadata["query"]):
            labels = dict(re.findall(r'(\w+)=~?"([^"]*)"', selector))
            assert labels["namespace"] == namespace
            assert re.fullmatch(labels["pod"], pod_of_predictor)
            assert not re.fullmatch(labels["pod"], f"{predictor_name(_isvc('torchfn'))}-5d8f7c9b6-x2x7q")
    assert queried == {"torchfn_requests_in_flight", "torchfn_queue_depth"}
    pdb = _kind("scaled", "PodDisruptionBudget")
    pods = predictor_deployment(runtime_for(isvc, runtimes()), isvc)["spec"]["template"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pods["metadata"]["labels"].items()


KEDA_PROMETHEUS_METADATA = {
    "serverAddress",
    "query",
    "queryParameters",
    "threshold",
    "activationThreshold",
    "namespace",
    "customHeaders",
    "ignoreNullValues",
    "unsafeSsl",
    "awsRegion",
    "timeout",
    "identityOwner",
}
"""The prometheus scaler's trigger metadata in KEDA v2.20.2 (``pkg/scalers/prometheus_scaler.go``):
KEDA ignores a key it does not know, so a misspelled one would go unnoticed."""


# The server, started as the runtime starts it


def _server_env(container_spec: dict[str, Any], models: Path | None = None) -> dict[str, str]:
    """The container's environment for a server on this machine: the test's own loopback address
    and free ports instead of 0.0.0.0:8000 and 8001 (the machine is shared; gRPC stays off where
    the runtime turns it off), and ``/mnt/models`` at ``models``, holding what the storageUri would."""
    settings = {k: v for k, v in env(container_spec).items() if k not in {"TORCHFN_HOST", "TORCHFN_PORT"}}
    if settings.get("TORCHFN_GRPC_PORT") != "0":
        settings.pop("TORCHFN_GRPC_PORT", None)
    if models is not None:
        settings = {k: v.replace(MODEL_MOUNT, str(models)) for k, v in settings.items()}
    return settings


def _probe_as_kserve_does(server: RunningServer, container_spec: dict[str, Any]) -> None:
    """The kubelet's (Standard) or Knative queue-proxy's HTTP probes, each answered 200-399, and
    the Open Inference Protocol's health endpoints."""
    for probe in http_probes(container_spec):
        reply = httpx.get(f"{server.url}{probe.path}", timeout=5)
        assert 200 <= reply.status_code < 400, (probe, reply.status_code, reply.text)
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200
    assert httpx.get(f"{server.url}/v2/health/ready").json() == {"ready": True}


def _infer(server: RunningServer, model: str, values: list[float]) -> list[float]:
    body = {"inputs": [{"name": "input", "shape": [len(values)], "datatype": "FP32", "data": values}]}
    reply = httpx.post(f"{server.url}/v2/models/{model}/infer", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    (output,) = reply.json()["outputs"]
    data: list[float] = output["data"]
    return data


VALUES = [-2.0, -0.5, 0.0, 0.25, 3.0]


def _grpc_as_kserve_routes_it(server: RunningServer) -> None:
    """The gRPC face (the runtime's h2c port, here a free one): the health service a gRPC probe or
    balancer asks, the protocol's readiness, and an inference equal to torch's."""
    assert server.grpc_address is not None
    client = Client(server.grpc_address)
    try:
        assert client.health_check(HealthCheckRequest(), timeout=10).status == HealthCheckResponse.SERVING
        assert client.ready_call(ServerReadyRequest(), timeout=10).ready
        assert client.model_ready_call(ModelReadyRequest(name="relu"), timeout=10).ready
        x = torch.tensor(VALUES)
        assert_same(outputs_of(client.infer(infer_request("relu", {"input": x})))["output"], F.relu(x))
    finally:
        client.close()


@pytest.fixture(scope="module")
def knative_server() -> Iterator[tuple[RunningServer, dict[str, Any]]]:
    isvc = _isvc("torchfn")
    main = kserve_container(runtime_for(isvc, runtimes()), isvc)
    with running_server(_server_env(main), command=main["command"]) as server:
        yield server, main


@pytest.mark.server
def test_every_function_is_a_ready_model(knative_server: tuple[RunningServer, dict[str, Any]]) -> None:
    server, main = knative_server
    _probe_as_kserve_does(server, main)
    assert server.grpc_address is None  # off: Knative routes the HTTP port alone
    names = [entry["name"] for entry in httpx.get(f"{server.url}/functions").json()["functions"]]
    assert set(names) == {spec.name for spec in BUILT_IN}
    with httpx.Client(base_url=server.url) as client:
        for name in names:
            assert client.get(f"/v2/models/{name}/ready").json() == {"name": name, "ready": True}
        assert client.get("/v2/models/swish/ready").status_code == 404, "no plugin without its package"
    assert_same(torch.tensor(_infer(server, "gelu", VALUES)), F.gelu(torch.tensor(VALUES)))


@pytest.mark.server
def test_the_plugin_package_from_storage_is_served(tmp_path: Path) -> None:
    isvc = _isvc("torchfn-plugins")
    main = kserve_container(runtime_for(isvc, runtimes()), isvc)
    models = tmp_path / "models"  # what KServe puts at /mnt/models from the storageUri
    package = env(main)["TORCHFN_PLUGINS"].split(":")[0]
    shutil.copytree(plugin_package_root() / package, models / package)
    with running_server(_server_env(main, models), command=main["command"]) as server:
        _probe_as_kserve_does(server, main)
        assert httpx.get(f"{server.url}/v2/models/swish/ready").json() == {"name": "swish", "ready": True}
        x = torch.tensor(VALUES)
        assert_same(torch.tensor(_infer(server, "swish", VALUES)), x * torch.sigmoid(x))
        assert_same(torch.tensor(_infer(server, "relu", VALUES)), F.relu(x))


@pytest.mark.server
def test_the_standard_pod_is_probed_scraped_and_drained() -> None:
    isvc = _isvc("torchfn-scaled")
    runtime = runtime_for(isvc, runtimes())
    deployment = predictor_deployment(runtime, isvc)
    (main,) = deployment["spec"]["template"]["spec"]["containers"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    with running_server(_server_env(main), command=main["command"]) as server:
        _probe_as_kserve_does(server, main)
        assert _infer(server, "relu", VALUES) == [0.0, 0.0, 0.0, 0.25, 3.0]
        _grpc_as_kserve_routes_it(server)
        scraped = httpx.get(f"{server.url}{annotations['prometheus.io/path']}").text
        families = {family.name: family for family in text_string_to_metric_families(scraped)}
        for name in ("torchfn_requests_in_flight", "torchfn_queue_depth"):  # what the ScaledObject reads
            assert families[name].type == "gauge"
        (in_flight,) = families["torchfn_requests_in_flight"].samples
        assert in_flight.value == 1, "the scrape counts itself, which the ScaledObject's query takes off"
        grace = float(env(main)["TORCHFN_SHUTDOWN_GRACE_S"])
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(grace + 30) == 0
        assert "Application shutdown complete" in server.log()
