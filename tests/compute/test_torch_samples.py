"""The service against PyTorch's own test inputs: every sample torch tests these functions on.

For each function of the catalogue, the sample inputs of its ``op_db`` entries and the inputs of
its ``module_db`` entry (the ``torch.nn`` class) are sent through ``/activate`` or ``/loss`` in
float32, float64, float16 and bfloat16, with gradients, and the reply is compared bit for bit with
torch's call in-process on the service's device. Where torch has no kernel for a dtype, the service
must answer 422 ``unsupported_dtype``. Every error input of ``op_db`` must be a 4xx naming a field.

Samples the wire cannot carry are counted by reason and printed at the end of the session. To keep
the run short, each (function, dtype) takes a deterministic subset of at most ``PER_DTYPE`` samples.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from fastapi.testclient import TestClient

from app.compute.catalogue import CATALOGUE, FunctionSpec
from tests.support.reference import DTYPES, assert_same, decode
from tests.support.torch_samples import Skip, Tally, bind, module_infos, op_infos, request_from, seed_of

PER_DTYPE = 12
"""Samples per function and dtype (op and module samples together), chosen deterministically."""

TALLY = Tally()
RANDOM_TRAINING = {"rrelu"}


def _reference_call(spec: FunctionSpec) -> Any:
    return getattr(F, spec.name, None) or getattr(torch, spec.name)


def _device_copy(value: Any, device: torch.device) -> Any:
    return value.to(device) if isinstance(value, torch.Tensor) else value


def _samples(spec: FunctionSpec, dtype: torch.dtype) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """(label, named arguments, torch reference taking named arguments) for each sample."""
    for op in op_infos(spec):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            samples = list(op.sample_inputs("cpu", dtype, requires_grad=False))
        call = _reference_call(spec)
        for index, sample in enumerate(samples):
            named = bind(spec, [sample.input, *sample.args], sample.kwargs)
            if isinstance(named, Skip):
                TALLY.add(named)
                continue
            yield f"op:{op.name}:{op.variant_test_name}:{index}", named, (lambda kw, c=call: c(**kw))
    for info in module_infos(spec):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inputs = list(info.module_inputs_func(info, device="cpu", dtype=dtype, requires_grad=False, training=False))
        for index, module_input in enumerate(inputs):
            ctor = module_input.constructor_input
            try:
                bound_ctor = dict(inspect_bind(info.module_cls, ctor.args, ctor.kwargs))
            except TypeError:
                TALLY.add(Skip(spec.name, "module constructor arguments do not bind"))
                continue
            forward = module_input.forward_input
            if forward.kwargs or len(forward.args) > len(spec.tensors):
                TALLY.add(Skip(spec.name, "module forward arguments beyond the tensor arguments"))
                continue
            named = {arg.name: value for arg, value in zip(spec.tensors, forward.args, strict=False)}
            for key, value in bound_ctor.items():
                named[key] = value
            module_cls, ctor_args, ctor_kwargs = info.module_cls, ctor.args, ctor.kwargs
            tensor_names = [arg.name for arg in spec.tensors][: len(forward.args)]

            def reference(
                kw: Mapping[str, Any],
                cls: Any = module_cls,
                a: Any = ctor_args,
                k: Any = ctor_kwargs,
                names: list[str] = tensor_names,
            ) -> Any:
                module = cls(*a, **{key: kw.get(key, value) for key, value in k.items()})  # the leaves, for grads
                first = kw[names[0]]
                module = module.to(device=first.device, dtype=first.dtype if first.is_floating_point() else None)
                return module(*(kw[n] for n in names))

            yield f"module:{module_cls.__name__}:{index}", named, reference


def inspect_bind(cls: Any, args: Any, kwargs: Any) -> dict[str, Any]:
    import inspect

    bound = inspect.signature(cls.__init__).bind(None, *args, **kwargs)
    arguments = dict(bound.arguments)
    arguments.pop("self", None)
    return arguments


def _cases() -> list[Any]:
    cases = []
    for spec in CATALOGUE:
        for dtype_name in DTYPES:
            cases.append(pytest.param(spec.name, dtype_name, id=f"{spec.name}-{dtype_name}"))
    return cases


def _module_param_skip(spec: FunctionSpec, named: Mapping[str, Any]) -> Skip | None:
    if spec.name == "prelu" and ("num_parameters" in named or "init" in named):
        return Skip(spec.name, "PReLU's num_parameters/init build a weight: sent as the tensor `weight` instead")
    if spec.name in RANDOM_TRAINING and named.get("training"):
        return Skip(spec.name, "random training mode without a seed")
    return None


@pytest.mark.parametrize(("name", "dtype_name"), _cases())
def test_torch_samples(client: TestClient, device: torch.device, name: str, dtype_name: str) -> None:
    spec = CATALOGUE.find(name)
    assert spec is not None
    dtype = DTYPES[dtype_name]
    all_samples = list(_samples(spec, dtype))
    chosen = sorted(all_samples, key=lambda s: seed_of(s[0], dtype_name))[:PER_DTYPE]
    failures: list[str] = []
    checked = 0
    for label, named, reference in chosen:
        module_skip = _module_param_skip(spec, named)
        if module_skip is not None:
            TALLY.add(module_skip)
            continue
        built = request_from(spec, named, dtype, seed_of(label))
        if isinstance(built, Skip):
            TALLY.add(built)
            continue
        body, tensors, promoted = built
        if promoted:  # compared with torch on the floating-point values the service computes on
            named = {**named, **{n: tensors[n] for n in promoted}}
            TALLY.note(spec.name, f"integer {', '.join(promoted)} sent as floating point (torch would promote)")
        problem = _compare(client, device, spec, body, named, tensors, reference)
        checked += 1
        if problem:
            failures.append(f"{label}: {problem}")
    assert not failures, f"{len(failures)} of {checked} samples differ:\n" + "\n".join(failures)


def _endpoint(spec: FunctionSpec) -> str:
    return "/activate" if spec.kind == "activation" else "/loss"


def _compare(
    client: TestClient,
    device: torch.device,
    spec: FunctionSpec,
    body: dict[str, Any],
    named: Mapping[str, Any],
    tensors: Mapping[str, torch.Tensor],
    reference: Any,
) -> str | None:
    reply = client.post(_endpoint(spec), json=body)
    grad_names = [n for n in spec.differentiable if n in tensors and tensors[n].is_floating_point()]
    on_device = {k: _device_copy(v, device) for k, v in named.items()}
    leaves = {}
    for name_ in grad_names:
        leaves[name_] = tensors[name_].to(device).clone().requires_grad_(True)
        on_device[name_] = leaves[name_]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = reference(on_device)
            grads = (
                torch.autograd.grad(expected, list(leaves.values()), torch.ones_like(expected), allow_unused=True)
                if leaves and expected.requires_grad
                else [None] * len(leaves)
            )
    except (RuntimeError, ValueError, IndexError, TypeError) as error:
        if reply.status_code == 422 and reply.json()["details"][0]["type"] == "unsupported_dtype":
            return None if "not implemented for" in str(error) else f"422 unsupported_dtype, torch: {error}"
        if 400 <= reply.status_code < 500:
            return None  # torch refuses it too
        return f"torch raised {error!s:.200}, service answered {reply.status_code}"
    if reply.status_code != 200:
        return f"{reply.status_code} {reply.text[:300]}"
    data = reply.json()
    dtype = expected.dtype
    value = data["output"] if spec.kind == "activation" else data["loss"]
    problem = _same(decode(value, dtype), expected)
    if problem:
        return f"value: {problem}"
    served = _served_grads(spec, data)
    for (name_, leaf), grad in zip(leaves.items(), grads, strict=True):
        want = torch.zeros_like(leaf) if grad is None else grad
        if name_ not in served:
            return f"no gradient for {name_}"
        problem = _same(decode(served[name_], dtype), want)
        if problem:
            return f"grad {name_}: {problem}"
    return None


def _served_grads(spec: FunctionSpec, data: Mapping[str, Any]) -> dict[str, Any]:
    if spec.kind == "loss":
        return dict(data.get("grad") or {})
    grads = dict(data.get("param_grads") or {})
    if data.get("grad") is not None:
        grads["input"] = data["grad"]
    return grads


def _same(actual: torch.Tensor, expected: torch.Tensor) -> str | None:
    try:
        assert_same(actual, expected.detach())
    except AssertionError as error:
        return str(error)[:400]
    return None


def test_every_function_has_torch_samples() -> None:
    """Every catalogue function is covered by op_db or module_db samples."""
    uncovered = [spec.name for spec in CATALOGUE if not op_infos(spec) and not module_infos(spec)]
    assert not uncovered, f"no torch samples for {uncovered}"


@pytest.fixture(scope="module", autouse=True)
def _report_skips() -> Iterator[None]:
    yield
    if TALLY.skipped:
        lines = [f"{count:5d}  {reason}" for reason, count in sorted(TALLY.skipped.items())]
        total = sum(TALLY.skipped.values())
        print(f"\ntorch samples not carried by the wire ({total}):\n" + "\n".join(lines))
    if TALLY.notes:
        lines = [f"{count:5d}  {what}" for what, count in sorted(TALLY.notes.items())]
        print("torch samples carried with a change:\n" + "\n".join(lines))


_ = math


def _error_inputs(spec: FunctionSpec) -> list[Any]:
    found = []
    for op in op_infos(spec):
        if op.error_inputs_func is None:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found.extend(op.error_inputs("cpu"))
    return found


@pytest.mark.parametrize("name", [spec.name for spec in CATALOGUE if spec.kind == "loss" or op_infos(spec)])
def test_torch_error_inputs_are_refused_with_a_field(client: TestClient, name: str) -> None:
    """Each of torch's error inputs is a 4xx naming a field of the request (never a 500)."""
    spec = CATALOGUE.find(name)
    assert spec is not None
    problems = []
    for index, error_input in enumerate(_error_inputs(spec)):
        sample = error_input.sample_input
        named = bind(spec, [sample.input, *sample.args], sample.kwargs)
        if isinstance(named, Skip):
            TALLY.add(Skip(spec.name, f"error input: {named.reason}"))
            continue
        floating = [v for v in named.values() if isinstance(v, torch.Tensor) and v.is_floating_point()]
        dtype = floating[0].dtype if floating else torch.float32
        if dtype not in DTYPES.values():
            TALLY.add(Skip(spec.name, f"error input in {dtype}"))
            continue
        built = request_from(spec, named, dtype, index)
        if isinstance(built, Skip):
            TALLY.add(Skip(spec.name, f"error input: {built.reason}"))
            continue
        reply = client.post(_endpoint(spec), json=built[0])
        if reply.status_code == 200:
            TALLY.note(spec.name, "error input computed: its error lies in what the wire does not carry")
        elif not 400 <= reply.status_code < 500:
            problems.append(f"error input {index} ({error_input.error_regex}): {reply.status_code} {reply.text[:200]}")
        elif len(reply.json()["details"][0]["loc"]) < 2:
            problems.append(f"error input {index}: the refusal names no field: {reply.text[:200]}")
    assert not problems, "\n".join(problems)
