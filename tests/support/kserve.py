"""``deploy/kserve/`` as KServe v0.20 turns it into pods: the serving runtime an InferenceService
gets (named, or auto-selected by its model format), the container KServe runs (the runtime's
``kserve-container`` with the InferenceService's model container merged over it, as KServe's
``MergeRuntimeContainers`` does with a strategic merge patch), its pod spec, and for the Standard
deployment mode the Deployment it creates. What KServe's webhooks add on admission (the storage
initializer's ``/mnt/models`` for a ``storageUri``, an agent) is left out."""

from __future__ import annotations

import copy
import importlib.resources
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from tests.support.manifests import KUBERNETES_VERSION, render
from tests.support.paths import ROOT

KSERVE = ROOT / "deploy" / "kserve"
KUSTOMIZATIONS = ("runtimes", "runtimes/standard", "runtimes/knative", "every-function", "plugins", "scaled")
CONTAINER = "kserve-container"
MODEL_MOUNT = "/mnt/models"
"""Where KServe puts what the model's ``storageUri`` holds."""
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
KNATIVE, STANDARD = "Knative", "Standard"
KNATIVE_DRAIN_S = 30
"""Knative's queue-proxy drains a terminating pod for at least this long before the serving
container gets SIGTERM (``drainSleepDuration`` in knative/serving's ``pkg/queue/sharedmain``)."""
MODEL_FIELDS = {"modelFormat", "runtime", "runtimeVersion", "protocolVersion", "storageUri", "storage"}
"""What a predictor's ``model`` says that is not a container field."""
# Kubernetes' strategic merge keys (patchMergeKey) of the lists of a Container and a PodSpec.
MERGE_KEYS = {
    "env": "name",
    "ports": "containerPort",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "volumes": "name",
}


@cache
def rendered(directory: str) -> list[dict[str, Any]]:
    """``kubectl kustomize deploy/kserve/<directory>``; callers deep-copy what they change."""
    return render(KSERVE / directory)


def runtimes() -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in rendered("runtimes") if doc["kind"] == "ClusterServingRuntime"}


def inference_services() -> dict[str, dict[str, Any]]:
    found = {}
    for directory in ("every-function", "plugins", "scaled"):
        for doc in rendered(directory):
            if doc["kind"] == "InferenceService":
                found[doc["metadata"]["name"]] = doc
    return found


def deployment_mode(isvc: Mapping[str, Any]) -> str:
    mode: str = isvc["metadata"].get("annotations", {}).get(DEPLOYMENT_MODE, "")
    return {"Serverless": KNATIVE, "RawDeployment": STANDARD}.get(mode, mode)  # the names before v0.20


def supports(runtime: Mapping[str, Any], isvc: Mapping[str, Any]) -> bool:
    model = isvc["spec"]["predictor"]["model"]
    formats = {entry["name"] for entry in runtime["spec"]["supportedModelFormats"]}
    protocol = model.get("protocolVersion", "v1")
    return model["modelFormat"]["name"] in formats and protocol in runtime["spec"].get("protocolVersions", ["v1"])


def runtime_for(isvc: Mapping[str, Any], available: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """The runtime the model names, or the highest-priority one that auto-selects its format."""
    model = isvc["spec"]["predictor"]["model"]
    if "runtime" in model:
        return available[model["runtime"]]
    candidates = []
    for runtime in available.values():
        for entry in runtime["spec"]["supportedModelFormats"]:
            if entry["name"] == model["modelFormat"]["name"] and entry.get("autoSelect") and supports(runtime, isvc):
                candidates.append((entry.get("priority", 0), runtime["metadata"]["name"], runtime))
    assert candidates, f"no runtime auto-selects {model['modelFormat']['name']}"
    return max(candidates, key=lambda candidate: candidate[:2])[2]


def _merged(base: Any, overlay: Any, key: str = "") -> Any:
    if isinstance(base, dict) and isinstance(overlay, dict):
        out = dict(base)
        for name, value in overlay.items():
            out[name] = _merged(base[name], value, name) if name in base else copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(overlay, list) and key in MERGE_KEYS:
        merge_key = MERGE_KEYS[key]
        items = {item[merge_key]: item for item in base}
        for item in overlay:
            items[item[merge_key]] = _merged(items[item[merge_key]], item) if item[merge_key] in items else item
        return list(items.values())
    return copy.deepcopy(overlay)


def kserve_container(runtime: Mapping[str, Any], isvc: Mapping[str, Any]) -> dict[str, Any]:
    """The container KServe runs: the model's container fields merged over the runtime's
    ``kserve-container`` (lists by their merge keys, ``args`` appended)."""
    (base,) = [c for c in runtime["spec"]["containers"] if c["name"] == CONTAINER]
    overlay = {k: v for k, v in isvc["spec"]["predictor"]["model"].items() if k not in MODEL_FIELDS}
    merged: dict[str, Any] = _merged(copy.deepcopy(base), {k: v for k, v in overlay.items() if k != "args"})
    if base.get("args") or overlay.get("args"):
        merged["args"] = [*base.get("args", []), *overlay.get("args", [])]
    return merged


@cache
def pod_spec_fields() -> frozenset[str]:
    """The fields of Kubernetes' PodSpec (a predictor is a PodSpec plus KServe's own fields)."""
    folder = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    definitions = json.loads((folder / f"v{KUBERNETES_VERSION}-local-strict" / "_definitions.json").read_text())
    return frozenset(definitions["$defs"]["io.k8s.api.core.v1.PodSpec"]["properties"])


def pod_spec(runtime: Mapping[str, Any], isvc: Mapping[str, Any]) -> dict[str, Any]:
    """The predictor's pod spec: the runtime's pod fields (volumes, node selector...) with the
    predictor's own PodSpec fields over them, and the one merged container."""
    runtime_pod = {k: v for k, v in runtime["spec"].items() if k in pod_spec_fields() and k != "containers"}
    predictor = {k: v for k, v in isvc["spec"]["predictor"].items() if k in pod_spec_fields() and k != "containers"}
    pod: dict[str, Any] = _merged(copy.deepcopy(runtime_pod), predictor)
    pod["containers"] = [kserve_container(runtime, isvc)]
    return pod


def predictor_name(isvc: Mapping[str, Any]) -> str:
    """KServe's ``PredictorServiceName``: the Deployment (Standard) or Knative Service's name."""
    return f"{isvc['metadata']['name']}-predictor"


def predictor_deployment(runtime: Mapping[str, Any], isvc: Mapping[str, Any]) -> dict[str, Any]:
    """The Deployment KServe creates for a Standard InferenceService (``createRawDefaultDeployment``):
    its pods labelled ``app: isvc.<predictor>``, the runtime's annotations on them."""
    name = predictor_name(isvc)
    labels = {"app": f"isvc.{name}", "serving.kserve.io/inferenceservice": isvc["metadata"]["name"]}
    annotations = {**runtime["spec"].get("annotations", {}), **isvc["spec"]["predictor"].get("annotations", {})}
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "selector": {"matchLabels": {"app": labels["app"]}},
            "template": {"metadata": {"labels": labels, "annotations": annotations}, "spec": pod_spec(runtime, isvc)},
        },
    }
    if "namespace" in isvc["metadata"]:
        deployment["metadata"]["namespace"] = isvc["metadata"]["namespace"]
    if "deploymentStrategy" in isvc["spec"]["predictor"]:
        deployment["spec"]["strategy"] = isvc["spec"]["predictor"]["deploymentStrategy"]
    return deployment


def env(container: Mapping[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", [])}


def http_port(container: Mapping[str, Any]) -> dict[str, Any]:
    """The container's HTTP port: the first, named http1 (Knative's name for HTTP/1)."""
    first: dict[str, Any] = container["ports"][0]
    assert first["name"] == "http1", first
    return first


@dataclass(frozen=True)
class Probe:
    kind: str
    path: str
    port: int


def http_probes(container: Mapping[str, Any]) -> list[Probe]:
    """The container's startup, readiness and liveness probes (HTTP GET), their ports resolved."""
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    probes = []
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        action = container[kind]["httpGet"]
        port = action["port"]
        probes.append(Probe(kind, action["path"], ports[port] if isinstance(port, str) else int(port)))
    return probes


def plugin_package_root() -> Path:
    """What the plugins InferenceService's storageUri holds: the directory of the package it names."""
    return ROOT / "examples" / "torchfn_examples"
