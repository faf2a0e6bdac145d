"""Batched results are bit-identical to each request computed alone, for every function, and a
request that fails inside a batch fails alone."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson
import pytest
import torch

from app.compute.catalogue import CATALOGUE, FunctionSpec
from app.compute.engine import Engine
from app.compute.fusion import FUSE_MAX_ELEMENTS, fusion_key
from app.compute.jobs import Job, Result
from app.core.config import Settings
from app.core.errors import InvalidRequest
from app.core.limits import TensorLimits
from app.protocols.native.codec import decode_activation, decode_loss
from app.serving.codec import DecodeOptions

OPTIONS = DecodeOptions(CATALOGUE, TensorLimits(FUSE_MAX_ELEMENTS * 4, 8), FUSE_MAX_ELEMENTS * 16, "float32")
DTYPES = ["float32", "float64", "float16", "bfloat16"]


@pytest.fixture(scope="module")
def engine(device: torch.device) -> Engine:
    return Engine(device)


def job_from(body: Mapping[str, Any]) -> Job:
    decode = decode_activation if CATALOGUE.find(str(body["function"])).kind == "activation" else decode_loss  # type: ignore[union-attr]
    return decode(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), OPTIONS).job


def assert_identical(batched: Result | Exception, alone: Result) -> None:
    assert isinstance(batched, Result), batched
    assert batched.output.dtype == alone.output.dtype
    assert batched.output.tobytes() == alone.output.tobytes()
    assert (batched.grads is None) == (alone.grads is None)
    if batched.grads is not None and alone.grads is not None:
        assert batched.grads.keys() == alone.grads.keys()
        for name, grad in alone.grads.items():
            assert batched.grads[name].tobytes() == grad.tobytes(), name


def run_alone(engine: Engine, job: Job) -> Result | Exception:
    try:
        return engine.run(job)
    except Exception as error:
        return error


def supported(engine: Engine, job: Job) -> bool:
    return not isinstance(run_alone(engine, job), Exception)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spec", CATALOGUE.of_kind("activation"), ids=lambda spec: spec.name)
def test_activation_batch_matches_alone(engine: Engine, spec: FunctionSpec, dtype: str) -> None:
    rng = np.random.default_rng(abs(hash((spec.name, dtype))) % 2**32)
    example = dict(spec.example)
    example_shape = np.asarray(example["input"]).shape
    shapes = [(256,), (3, 37), (1000,)] if fusion_key(job_from(example)) is not None else [example_shape]
    for shape in shapes:
        for with_grad_output in (False, True):
            jobs = []
            for _ in range(6):
                body = {**example, "dtype": dtype, "input": rng.standard_normal(shape) * 3}
                if with_grad_output:
                    body["grad_output"] = rng.standard_normal(shape)
                jobs.append(job_from(body))
            if not supported(engine, jobs[0]):
                continue
            for batched, job in zip(run_as_batched(engine, jobs), jobs, strict=True):
                assert_identical(batched, engine.run(job))


@pytest.mark.parametrize("spec", CATALOGUE.of_kind("loss"), ids=lambda spec: spec.name)
def test_loss_batch_matches_alone(engine: Engine, spec: FunctionSpec) -> None:
    for dtype in DTYPES:
        jobs = [job_from({**spec.example, "dtype": dtype, "grad": grad}) for grad in (True, False, True)]
        if not supported(engine, jobs[0]):
            continue
        for batched, job in zip(run_as_batched(engine, jobs), jobs, strict=True):
            assert_identical(batched, engine.run(job))


def _scalar_params(spec: FunctionSpec) -> dict[str, Any]:
    params: dict[str, Any] = dict(spec.example.get("params", {}))
    return {name: value for name, value in params.items() if name != "weight"}


def test_every_pointwise_activation_is_fused(engine: Engine) -> None:
    """The fast path is really taken: same-sized jobs of a pointwise function share a key."""
    fused = {
        spec.name
        for spec in CATALOGUE.of_kind("activation")
        if spec.name != "softmax2d"  # needs a 3-D or 4-D input; checked below
        and fusion_key(job_from({**spec.example, "input": [0.5] * 256, "params": _scalar_params(spec)})) is not None
    }
    assert fusion_key(job_from({"function": "softmax2d", "input": [[[0.5] * 8] * 4] * 2})) is None
    assert {"relu", "sigmoid", "tanh", "leaky_relu", "silu", "mish", "softplus", "elu", "hardswish"} <= fused
    assert not {"softmax", "glu", "prelu", "softmax2d", "log_softmax", "softmin"} & fused
    assert "gelu" in fused  # the example uses approximate="tanh"; the exact kernel is not fused:
    assert fusion_key(job_from({"function": "gelu", "input": [0.5] * 256})) is None
    assert fusion_key(job_from({"function": "relu", "input": [0.5] * FUSE_MAX_ELEMENTS})) is None


def test_mixed_sizes_and_functions_in_one_batch(engine: Engine) -> None:
    rng = np.random.default_rng(3)
    jobs = [
        job_from({"function": name, "input": rng.standard_normal(size), "grad": True})
        for name, size in [("relu", 7), ("softmax", 9), ("tanh", 7), ("relu", 7)]
    ]
    jobs.append(job_from({"function": "mse_loss", "input": [1.0, 2.0], "target": [0.5, 0.0], "grad": True}))
    for batched, job in zip(run_as_batched(engine, jobs), jobs, strict=True):
        assert_identical(batched, engine.run(job))


def _poisoned_relu() -> FunctionSpec:
    """relu, except that torch "detects" the value 13 (like an error only a kernel can see)."""
    relu = CATALOGUE.find("relu")
    assert relu is not None

    def call(tensors: Mapping[str, torch.Tensor], params: Mapping[str, Any]) -> torch.Tensor:
        if bool((tensors["input"] == 13).any()):
            raise RuntimeError("kernel found a poisoned value")
        return torch.relu(tensors["input"])

    return dataclasses.replace(relu, call=call)


def test_a_request_that_only_torch_rejects_fails_alone(engine: Engine) -> None:
    spec = _poisoned_relu()
    rng = np.random.default_rng(5)
    values = [rng.standard_normal(64) for _ in range(8)]
    values[3][10] = 13.0
    jobs = [job_from({"function": "relu", "input": v, "grad": True})._replace(spec=spec) for v in values]
    assert len({fusion_key(job) for job in jobs}) == 1
    outcomes = run_as_batched(engine, jobs)
    assert isinstance(outcomes[3], InvalidRequest)
    assert "poisoned" in outcomes[3].problems[0].msg
    for index, (outcome, job) in enumerate(zip(outcomes, jobs, strict=True)):
        if index != 3:
            assert_identical(outcome, engine.run(job))


def test_a_request_that_overflows_its_dtype_fails_alone(engine: Engine) -> None:
    jobs = [job_from({"function": "sigmoid", "input": [float(i)] * 16, "dtype": "float16"}) for i in range(5)]
    jobs[2] = job_from({"function": "sigmoid", "input": [1e6] * 16, "dtype": "float16"})
    outcomes = run_as_batched(engine, jobs)
    assert isinstance(outcomes[2], InvalidRequest)
    assert outcomes[2].problems[0].type == "dtype_overflow"
    for index in (0, 1, 3, 4):
        assert_identical(outcomes[index], engine.run(jobs[index]))


def test_default_settings_batch() -> None:
    assert Settings().batching


ROW_SPLIT_CASES = [
    ("cross_entropy", {}),
    ("cross_entropy", {"reduction": "sum"}),
    ("cross_entropy", {"reduction": "none"}),
    ("cross_entropy", {"ignore_index": 1}),
    ("nll_loss", {}),
    ("nll_loss", {"reduction": "none", "ignore_index": 0}),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("name", "params"), ROW_SPLIT_CASES, ids=lambda case: str(case))
def test_class_index_losses_share_one_call_and_match_alone(
    engine: Engine, name: str, params: dict[str, Any], dtype: str
) -> None:
    """cross_entropy/nll_loss requests with the same class count and different batch sizes share
    the row-wise step, and each still gets exactly its own loss and gradient."""
    rng = np.random.default_rng(11)
    classes = 10
    for grad, with_grad_output in ((False, False), (True, False), (True, True)):
        jobs = []
        for rows in (32, 1, 7, 32, 64):
            target = rng.integers(0, classes, size=rows)
            target[0] = 2  # never every target ignored (the ignore_index cases use 0 and 1)
            body: dict[str, Any] = {
                "function": name,
                "input": rng.standard_normal((rows, classes)) * 4,
                "target": target,
                "params": params,
                "dtype": dtype,
                "grad": grad,
            }
            if name == "nll_loss":
                body["input"] = -np.abs(body["input"])
            if with_grad_output:
                reduced = params.get("reduction", "mean") != "none"
                body["grad_output"] = float(rng.standard_normal()) if reduced else rng.standard_normal(rows)
            jobs.append(job_from(body))
        if not supported(engine, jobs[0]):
            continue
        assert len({fusion_key(job) for job in jobs}) == 1
        assert fusion_key(jobs[0]) is not None
        for batched, job in zip(run_as_batched(engine, jobs), jobs, strict=True):
            assert_identical(batched, engine.run(job))


def test_class_index_losses_fuse_only_where_torch_computes_two_steps() -> None:
    base = {"function": "cross_entropy", "input": [[0.5, 1.0, -1.0]], "target": [2]}
    assert fusion_key(job_from(base)) is not None
    assert fusion_key(job_from({**base, "params": {"label_smoothing": 0.1}})) is None
    assert fusion_key(job_from({**base, "target": [[0.2, 0.3, 0.5]]})) is None  # class probabilities
    assert fusion_key(job_from({**base, "params": {"weight": [1.0, 2.0, 1.0]}})) is None
    assert fusion_key(job_from({**base, "input": [0.5, 1.0, -1.0], "target": 2})) is None  # unbatched (C)
    assert fusion_key(job_from({**base, "input": [[[0.5], [1.0], [-1.0]]], "target": [[2]]})) is None  # (N, C, d)
    wide = job_from({**base, "input": [[0.5, 1.0, -1.0, 2.0]], "target": [3]})
    assert fusion_key(wide) != fusion_key(job_from(base))


def test_a_wrong_grad_output_in_a_fused_group_fails_alone(engine: Engine) -> None:
    jobs = [
        job_from({"function": "tanh", "input": [0.1 * i] * 8, "grad": True, "grad_output": [1.0] * 8}) for i in range(4)
    ]
    jobs[1] = job_from({"function": "tanh", "input": [0.5] * 8, "grad": True, "grad_output": [[1.0] * 4] * 2})
    assert len({fusion_key(job) for job in jobs}) == 1
    outcomes = run_as_batched(engine, jobs)
    assert isinstance(outcomes[1], InvalidRequest)
    assert outcomes[1].problems[0].type == "shape_mismatch"
    for index in (0, 2, 3):
        assert_identical(outcomes[index], engine.run(jobs[index]))


def run_as_batched(engine: Engine, jobs: Sequence[Job]) -> list[Result | Exception]:
    """What the batcher does with these jobs queued together: each group of one fusion key (or
    of none) in one ``Engine.run_group`` call; the outcomes in the jobs' order."""
    groups: dict[object, list[int]] = {}
    for index, job in enumerate(jobs):
        groups.setdefault(fusion_key(job), []).append(index)
    outcomes: dict[int, Result | Exception] = {}
    for key, members in groups.items():
        computed = engine.run_group([jobs[i] for i in members], key if isinstance(key, tuple) else None)
        outcomes.update(zip(members, computed, strict=True))
    return [outcomes[index] for index in range(len(jobs))]
