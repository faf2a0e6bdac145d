"""The image built from the Dockerfile with buildah and run with podman, hardened and limited as in
production: health, readiness and the HEALTHCHECK, an activation and a /v2 inference equal to
torch's, metrics, the user, the read-only root, the limits, and SIGTERM under a running request.

No registry serves images here, so the base image is a local stand-in (tests/support/debian_base.py, Debian
bookworm's Python 3.11 passed through the ``PYTHON_IMAGE`` build argument): this tests the
Dockerfile's logic and the app inside the image, not the official base image. pip inside the build
reaches the indexes this machine's pip reaches, with its CA bundle as the ``pip_ca`` secret; torch
is the wheel this machine's pip installs, served as a one-package ``file://`` index on a build
volume through ``TORCH_INDEX_URL`` (tests/support/host_sources.py). Run by ``make container-test``."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
import torch
import torch.nn.functional as F

from tests.support.debian_base import base_tarball
from tests.support.exposition import metric
from tests.support.host_sources import pip_sources, torch_index
from tests.support.kserve import (
    MODEL_MOUNT,
    env,
    http_port,
    http_probes,
    inference_services,
    kserve_container,
    runtime_for,
    runtimes,
)
from tests.support.paths import ROOT
from tests.support.private_containers import LIMITS, Containers, private_containers, why_containers_cannot_run
from tests.support.reference import assert_same
from tests.support.server_process import free_port

pytestmark = pytest.mark.container

BASE = "localhost/torchfn-test-base:bookworm"
IMAGE = "localhost/torchfn-test:cpu"
MEMORY_BYTES = 1024**3
CPUS = 1.5
IMAGE_BUDGET_BYTES = 950 * 1000**2  # 874 MB measured: torch 561 MB (libtorch_cpu 415), Debian and Python 124
UID = 10001


@pytest.fixture(scope="module")
def containers() -> Iterator[Containers]:
    reason = why_containers_cannot_run()
    if reason:
        pytest.skip(reason)
    with private_containers() as made:
        yield made


def _torch_version() -> str:
    (line,) = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line.startswith("torch==")]
    return line.removeprefix("torch==")


@pytest.fixture(scope="module")
def image(containers: Containers, tmp_path_factory: pytest.TempPathFactory) -> str:
    started = time.monotonic()
    containers.podman("import", str(base_tarball()), BASE, timeout=300)
    based = time.monotonic()
    wheels = tmp_path_factory.mktemp("torch-index")
    torch_index(_torch_version(), wheels)
    sources = pip_sources()
    arguments = {
        "PYTHON_IMAGE": BASE,
        "TORCH_VARIANT": "cpu",
        "TORCH_INDEX_URL": "file:///torch-index/simple",
        "PIP_INDEX_URL": sources.index_url,
        "PIP_EXTRA_INDEX_URL": " ".join(sources.extra_index_urls),
    }
    secret = ["--secret", f"id=pip_ca,src={sources.ca_bundle}"] if sources.ca_bundle else []
    containers.buildah(
        "bud",
        "--format=docker",  # the OCI format drops HEALTHCHECK and SHELL
        "--isolation=chroot",
        "--network=host",
        *[f"--build-arg={key}={value}" for key, value in arguments.items()],
        *secret,
        f"--volume={wheels}:/torch-index:ro",
        f"--tag={IMAGE}",
        str(ROOT),
        timeout=900,
    )
    print(f"base image {based - started:.0f} s, image build {time.monotonic() - based:.0f} s")
    return IMAGE


@dataclass
class Running:
    name: str
    url: str
    containers: Containers

    def exec(self, *command: str) -> str:
        return self.containers.podman("exec", self.name, *command).stdout

    def log(self) -> str:
        result = self.containers.podman("logs", self.name, check=False)
        return result.stdout + result.stderr


def start(containers: Containers, image: str, name: str, env: dict[str, str] | None = None) -> Running:
    port = free_port()
    # On the host's network: the gRPC port too must be one no other process (or container) has.
    settings = {
        "TORCHFN_HOST": "127.0.0.1",
        "TORCHFN_PORT": str(port),
        "TORCHFN_GRPC_PORT": str(free_port()),
        **(env or {}),
    }
    containers.podman(
        "run",
        "--detach",
        f"--name={name}",
        *LIMITS,
        "--network=host",  # listening on the loopback only; no bridge, no firewall rules on the machine
        *[f"--env={key}={value}" for key, value in settings.items()],
        "--read-only",
        "--tmpfs=/tmp",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        f"--memory={MEMORY_BYTES}",
        f"--cpus={CPUS}",
        image,
    )
    running = Running(name, f"http://127.0.0.1:{port}", containers)
    deadline = time.monotonic() + 90
    while True:
        state = containers.podman("inspect", "--format={{.State.Status}}", name).stdout.strip()
        assert state == "running", f"the container is {state}:\n{running.log()[-3000:]}"
        try:
            if httpx.get(f"{running.url}/readyz", timeout=1).status_code == 200:
                return running
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"never ready:\n{running.log()[-3000:]}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def server(containers: Containers, image: str) -> Iterator[Running]:
    running = start(containers, image, "torchfn-smoke")
    yield running
    containers.podman("rm", "--force", "--time=0", running.name)


def test_health_readiness_and_the_image_healthcheck(server: Running) -> None:
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert httpx.get(f"{server.url}/readyz").json()["status"] == "ready"
    healthcheck = server.containers.podman("healthcheck", "run", server.name, check=False)
    assert healthcheck.returncode == 0, healthcheck.stdout + healthcheck.stderr
    status = server.containers.podman("inspect", "--format={{.State.Health.Status}}", server.name).stdout
    assert status.strip() == "healthy"


def test_an_activation_and_its_gradient_equal_torchs(server: Running) -> None:
    values = [[-3.0, -0.5, 0.0], [0.25, 1.5, 7.0]]
    grad_output = [[1.0, -2.0, 0.5], [3.0, 0.125, -1.0]]
    body = {"function": "gelu", "input": values, "params": {"approximate": "tanh"}, "grad": True}
    reply = httpx.post(f"{server.url}/activate", json={**body, "grad_output": grad_output})
    assert reply.status_code == 200, reply.text
    x = torch.tensor(values, requires_grad=True)
    expected = F.gelu(x, approximate="tanh")
    (expected_grad,) = torch.autograd.grad(expected, x, torch.tensor(grad_output))
    assert_same(torch.tensor(reply.json()["output"], dtype=torch.float32), expected)
    assert_same(torch.tensor(reply.json()["grad"], dtype=torch.float32), expected_grad)


def test_an_open_inference_protocol_request_equals_torchs(server: Running) -> None:
    values = [-1.5, 0.2, 3.0, -0.1]
    body = {
        "inputs": [{"name": "input", "shape": [2, 2], "datatype": "FP32", "data": values}],
        "parameters": {"negative_slope": 0.1, "grad": True},
    }
    reply = httpx.post(f"{server.url}/v2/models/leaky_relu/infer", json=body)
    assert reply.status_code == 200, reply.text
    outputs = {output["name"]: output for output in reply.json()["outputs"]}
    x = torch.tensor(values, requires_grad=True)
    expected = F.leaky_relu(x, 0.1)
    (expected_grad,) = torch.autograd.grad(expected, x, torch.ones_like(x))
    assert outputs["output"]["shape"] == [2, 2]
    assert_same(torch.tensor(outputs["output"]["data"], dtype=torch.float32), expected.detach())
    assert_same(torch.tensor(outputs["grad_input"]["data"], dtype=torch.float32), expected_grad)


def test_metrics_count_the_requests(server: Running) -> None:
    for _ in range(3):
        assert httpx.post(f"{server.url}/activate", json={"function": "tanh", "input": [0.5]}).status_code == 200
    text = httpx.get(f"{server.url}/metrics").text
    assert (
        metric(text, "torchfn_requests_total", endpoint="/activate", function="tanh", status="200", protocol="http")
        == 3
    )
    assert "# TYPE torchfn_queue_depth gauge" in text


def test_runs_as_the_image_user_on_a_read_only_root_with_a_writable_tmp(server: Running) -> None:
    uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$", server.exec("cat", "/proc/1/status"), re.M)
    assert uids is not None
    assert {int(uid) for uid in uids.groups()} == {UID}, "the server process runs as 10001, real and effective"
    refused = server.containers.podman("exec", server.name, "touch", "/srv/app/written", check=False)
    assert refused.returncode != 0
    assert "Read-only file system" in refused.stderr
    server.exec("touch", "/tmp/written")
    capabilities = re.search(r"^CapEff:\s+(\w+)$", server.exec("cat", "/proc/1/status"), re.M)
    assert capabilities is not None
    assert int(capabilities.group(1), 16) == 0, "no capabilities"


# memory limit, CPU quota and period, from cgroup v2 or v1, as the container sees its own cgroup
CGROUP_LIMITS = (
    "if [ -f /sys/fs/cgroup/cpu.max ]; then cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max;"
    " else cd /sys/fs/cgroup && cat memory/memory.limit_in_bytes cpu/cpu.cfs_quota_us cpu/cpu.cfs_period_us; fi"
)


def test_memory_and_cpu_limits_apply_inside_the_container(server: Running) -> None:
    memory, quota, period = (int(value) for value in server.exec("sh", "-c", CGROUP_LIMITS).split())
    assert memory == MEMORY_BYTES
    assert quota / period == CPUS


def test_sigterm_while_a_request_is_running_finishes_it_and_exits_0(containers: Containers, image: str) -> None:
    running = start(containers, image, "torchfn-sigterm")
    body = orjson.dumps({"function": "relu", "input": [-1.0, 2.0, -3.0, 4.0]})
    rest_of_body = threading.Event()

    def chunks() -> Iterator[bytes]:  # the request stays running until the test sends the rest
        yield body[:20]
        rest_of_body.wait(60)
        yield body[20:]

    replies: list[httpx.Response] = []

    def send() -> None:
        headers = {"content-type": "application/json"}
        replies.append(httpx.post(f"{running.url}/activate", content=chunks(), headers=headers, timeout=60))

    sender = threading.Thread(target=send)
    sender.start()
    deadline = time.monotonic() + 20
    while metric(httpx.get(f"{running.url}/metrics").text, "torchfn_requests_in_flight") < 2:  # it and this scrape
        assert time.monotonic() < deadline, "the request never reached the app"
        time.sleep(0.01)
    containers.podman("kill", "--signal=TERM", running.name)
    deadline = time.monotonic() + 10
    while True:  # readiness fails (503, then the listener closes) while the request still runs
        try:
            if httpx.get(f"{running.url}/readyz", timeout=1).status_code == 503:
                break
        except httpx.TransportError:
            break
        assert time.monotonic() < deadline, "still ready after SIGTERM"
        time.sleep(0.05)
    assert not replies
    rest_of_body.set()
    sender.join(60)
    assert [reply.status_code for reply in replies] == [200]
    assert replies[0].json()["output"] == [0.0, 2.0, 0.0, 4.0]
    assert containers.podman("wait", running.name, timeout=60).stdout.strip() == "0"
    log = running.log()
    assert "Application shutdown complete" in log
    assert "Traceback" not in log
    containers.podman("rm", running.name)


def test_the_image_stays_small(containers: Containers, image: str) -> None:
    size = int(containers.podman("image", "inspect", "--format={{.Size}}", image).stdout)
    du = containers.podman(
        "run",
        "--rm",
        *LIMITS,
        "--network=none",
        "--entrypoint=sh",
        image,
        "-c",
        "du -sm /usr /opt/venv; cd /opt/venv/lib/python3*/site-packages && du -sm torch/lib * | sort -rn | head -8",
    ).stdout
    print(f"image {size / 1000**2:.0f} MB; MB by directory:\n{du}")
    assert size < IMAGE_BUDGET_BYTES, f"{size / 1000**2:.0f} MB:\n{du}"


# KServe: the image run as the serving runtime runs it

IN_POD_CLIENT = """
import json, sys, time, urllib.error, urllib.request

port, wait_path, requests = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])

def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()

deadline = time.monotonic() + 90  # inside the podman exec call's own 120 s
while True:
    try:
        if call("GET", wait_path)[0] == 200:
            break
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit("never started")
    time.sleep(0.5)
print(json.dumps([call(*request) for request in requests]))
"""
"""A client inside the pod's network namespace: waits for the startup probe's path, then makes
each request and prints the statuses and bodies."""

IN_POD_GRPC_CLIENT = """
import json, sys
import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from app.protocols.oip.grpc import messages

port, values = int(sys.argv[1]), json.loads(sys.argv[2])
channel = grpc.insecure_channel(f"127.0.0.1:{port}")
grpc.channel_ready_future(channel).result(timeout=60)

def method(name, request, response):
    return channel.unary_unary(f"/inference.GRPCInferenceService/{name}",
                               request_serializer=request.SerializeToString,
                               response_deserializer=response.FromString)

health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
ready = method("ServerReady", messages.ServerReadyRequest, messages.ServerReadyResponse)(
    messages.ServerReadyRequest(), timeout=10)
model = method("ModelReady", messages.ModelReadyRequest, messages.ModelReadyResponse)(
    messages.ModelReadyRequest(name="relu"), timeout=10)
request = messages.ModelInferRequest(model_name="relu")
request.inputs.add(name="input", datatype="FP32", shape=[len(values)])
request.raw_input_contents.append(np.asarray(values, dtype="<f4").tobytes())
reply = method("ModelInfer", messages.ModelInferRequest, messages.ModelInferResponse)(request, timeout=30)
output = np.frombuffer(reply.raw_output_contents[0], dtype="<f4").tolist()
print(json.dumps({"serving": health.status == health_pb2.HealthCheckResponse.SERVING,
                  "ready": ready.ready, "model_ready": model.ready, "output": output}))
"""
"""A gRPC client inside the pod's network namespace, with the image's own Python: the health
service (what a gRPC probe asks), the protocol's readiness of the server and a model, and relu."""


def test_the_kserve_runtime_container_starts_and_answers_kserves_probes(containers: Containers, image: str) -> None:
    """The Standard runtime's container, merged with the InferenceService as KServe merges them, run
    with its exact command and environment (port 8000 on every interface) and its security context
    and limits, in a network namespace of its own (as a pod's): the probes KServe's pods get, the
    Open Inference Protocol's readiness of a model, an inference equal to torch's, the same over
    gRPC on the h2c port, and the listeners on the declared ports."""
    isvc = inference_services()["torchfn-scaled"]
    runtime = runtime_for(isvc, runtimes())
    main = kserve_container(runtime, isvc)
    security = main["securityContext"]
    (tmp,) = [volume for volume in runtime["spec"]["volumes"] if volume["name"] == "tmp"]
    limits = main["resources"]["limits"]
    assert limits["memory"].endswith("Gi")
    name = "torchfn-kserve"
    containers.podman(
        "run",
        "--detach",
        f"--name={name}",
        *LIMITS,
        "--network=none",
        *[f"--env={key}={value}" for key, value in env(main).items()],
        f"--user={security['runAsUser']}:{security['runAsGroup']}",
        "--read-only",
        f"--tmpfs=/tmp:size={tmp['emptyDir']['sizeLimit'].removesuffix('Mi')}m",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        f"--memory={int(limits['memory'].removesuffix('Gi')) * 1024**3}",
        f"--cpus={limits['cpu']}",
        image,
        *main["command"],
    )
    running = Running(name, "", containers)
    try:
        port = http_port(main)["containerPort"]
        probes = http_probes(main)
        values = [-1.5, 0.2, 3.0, -0.1]
        infer = {"inputs": [{"name": "input", "shape": [4], "datatype": "FP32", "data": values}]}
        requests: list[list[Any]] = [
            *[["GET", probe.path] for probe in probes],
            ["GET", "/v2/health/ready"],
            ["GET", "/v2/models/relu/ready"],
            ["POST", "/v2/models/relu/infer", infer],
        ]
        startup = next(probe for probe in probes if probe.kind == "startupProbe")
        assert {probe.port for probe in probes} == {port}
        replies = orjson.loads(
            running.exec("python", "-c", IN_POD_CLIENT, str(port), startup.path, orjson.dumps(requests).decode())
        )
        for request, (status, body) in zip(requests, replies, strict=True):
            assert status == 200, (request[:2], status, body)
        assert orjson.loads(replies[-2][1]) == {"name": "relu", "ready": True}
        (output,) = orjson.loads(replies[-1][1])["outputs"]
        assert_same(torch.tensor(output["data"], dtype=torch.float32), F.relu(torch.tensor(values)))
        grpc_port = int(env(main)["TORCHFN_GRPC_PORT"])
        assert grpc_port == next(p["containerPort"] for p in main["ports"] if p["name"] == "h2c")
        answered = orjson.loads(
            running.exec("python", "-c", IN_POD_GRPC_CLIENT, str(grpc_port), orjson.dumps(values).decode())
        )
        assert (answered["serving"], answered["ready"], answered["model_ready"]) == (True, True, True)
        assert_same(torch.tensor(answered["output"], dtype=torch.float32), F.relu(torch.tensor(values)))
        # Every interface: 0.0.0.0 in /proc/net/tcp, or the IPv6 wildcard (dual-stack, as gRPC
        # binds 0.0.0.0) in /proc/net/tcp6.
        listening = running.exec("cat", "/proc/net/tcp", "/proc/net/tcp6")
        for listened in (port, grpc_port):
            wildcard = rf"^\s*\d+: (0{{8}}|0{{32}}):{listened:04X} (0{{8}}|0{{32}}):0000 0A "
            assert re.search(wildcard, listening, re.M), listening
        assert running.exec("sh", "-c", f"test -d {MODEL_MOUNT} || echo absent").strip() == "absent"
    finally:
        print(running.log()[-3000:])
        containers.podman("rm", "--force", "--time=0", name)
