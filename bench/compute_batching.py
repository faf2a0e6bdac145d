"""The batching gain at the compute layer: 64 small requests as one ``run_batch`` against the
same 64 run one by one, on the configured device (``TORCHFN_DEVICE``), side by side.

    .venv/bin/python -m bench.compute_batching            # cpu
    TORCHFN_DEVICE=cuda python3 -m bench.compute_batching  # a GPU
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
import orjson

from app.compute.catalogue import CATALOGUE
from app.compute.engine import Engine, resolve_device
from app.compute.fusion import fusion_key
from app.compute.jobs import Job
from app.core.config import Settings
from app.core.limits import TensorLimits
from app.protocols.native.codec import decode_activation, decode_loss
from app.serving.codec import DecodeOptions

OPTIONS = DecodeOptions(CATALOGUE, TensorLimits(4_000_000, 8), 16_000_000, "float32")


def jobs_for(payload: str, count: int, grad: bool) -> list[Job]:
    rng = np.random.default_rng(0)
    jobs = []
    for _ in range(count):
        body: dict[str, Any]
        if payload == "relu256":
            body = {"function": "relu", "input": rng.standard_normal(256), "grad": grad}
            decode = decode_activation
        else:
            body = {
                "function": "cross_entropy",
                "input": rng.standard_normal((32, 10)),
                "target": rng.integers(0, 10, 32),
                "grad": grad,
            }
            decode = decode_loss
        jobs.append(decode(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), OPTIONS).job)
    return jobs


def run_one_by_one(engine: Engine, jobs: Sequence[Job]) -> None:
    for job in jobs:
        engine.run(job)


def median_ms(work: Callable[[], object], repeats: int) -> float:
    for _ in range(3):
        work()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    engine = Engine(resolve_device(Settings().device))
    print(f"device {engine.device}, {args.batch} requests per batch, median of {args.repeats}")
    print(f"{'payload':<10} {'grad':<5} {'one by one ms':>14} {'batched ms':>11} {'gain':>6}")
    for payload in ("relu256", "ce32x10"):
        for grad in (False, True):
            jobs = jobs_for(payload, args.batch, grad)
            alone = median_ms(partial(run_one_by_one, engine, jobs), args.repeats)
            batched = median_ms(partial(engine.run_group, jobs, fusion_key(jobs[0])), args.repeats)
            print(f"{payload:<10} {grad!s:<5} {alone:>14.3f} {batched:>11.3f} {alone / batched:>5.2f}x")


if __name__ == "__main__":
    main()
