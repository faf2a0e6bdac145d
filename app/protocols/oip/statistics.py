"""Triton's statistics extension: each model's inference statistics (``app.compute.statistics``)
in the JSON shape Triton answers ``GET /v2/models[/{name}[/versions/{version}]]/stats`` with, which
tritonclient's ``get_inference_statistics`` and perf_analyzer read.

``compute_infer`` is each compute call timed whole: casting on the host, the copy to the device,
the torch call, its gradients and the copy back are one call, not timed apart (on a GPU the
kernels run asynchronously, so a split by the host's clock would misplace their time). So
``compute_input`` and ``compute_output`` are counted as ``compute_infer`` is (perf_analyzer wants
the three counts equal) with 0 ns: their time is inside ``compute_infer``. There is no response
cache: ``cache_hit`` and ``cache_miss`` stay 0."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.compute.catalogue import FunctionSpec
from app.compute.statistics import Duration, FunctionTally, InferenceStatistics
from app.protocols.oip.metadata import MODEL_VERSION

STATISTICS_EXTENSION = "statistics"


class DurationStat(BaseModel):
    count: int = Field(description="How many times the statistic was collected.")
    ns: int = Field(description="Their total duration, in nanoseconds.")


class InferenceStats(BaseModel):
    success: DurationStat = Field(description="Requests served, from entering the compute service to their result.")
    fail: DurationStat = Field(
        description="Requests that failed in the compute service (refused for want of room or time, over the cost "
        "limit, rejected by torch, their client gone)."
    )
    queue: DurationStat = Field(description="The served requests' waits for a compute call.")
    compute_input: DurationStat = Field(description="Counted with `compute_infer`; its time is inside it (0 ns).")
    compute_infer: DurationStat = Field(
        description="The served requests' compute calls, each timed whole (cast, copy to the device, torch call, "
        "gradients, copy back); a batch's time counts for each of its requests."
    )
    compute_output: DurationStat = Field(description="Counted with `compute_infer`; its time is inside it (0 ns).")
    cache_hit: DurationStat = Field(description="Always 0: there is no response cache.")
    cache_miss: DurationStat = Field(description="Always 0: there is no response cache.")


class BatchStats(BaseModel):
    batch_size: int = Field(description="How many of this model's requests one compute call ran.")
    compute_input: DurationStat
    compute_infer: DurationStat
    compute_output: DurationStat


class ModelStats(BaseModel):
    name: str
    version: str
    last_inference: int = Field(description="When a request last ended, in milliseconds since the epoch (0: never).")
    inference_count: int = Field(description="Requests computed successfully.")
    execution_count: int = Field(description="Compute calls that ran some of its requests (a batch counts once).")
    inference_stats: InferenceStats
    response_stats: dict[str, dict[str, DurationStat]] = Field(
        description="Empty: one response per request (no decoupled models)."
    )
    batch_stats: list[BatchStats]
    memory_usage: list[dict[str, int | str]] = Field(description="Empty: a function loads nothing.")


class ModelStatsResponse(BaseModel):
    model_stats: list[ModelStats]


def _stat(duration: Duration) -> DurationStat:
    return DurationStat(count=duration.count, ns=duration.ns)


def _counted(duration: Duration) -> DurationStat:
    """A statistic not timed apart: counted as ``duration`` is, its time inside it."""
    return DurationStat(count=duration.count, ns=0)


_NONE = DurationStat(count=0, ns=0)


def model_stats(spec: FunctionSpec, tally: FunctionTally) -> ModelStats:
    return ModelStats(
        name=spec.name,
        version=MODEL_VERSION,
        last_inference=tally.last_inference_ms,
        inference_count=tally.inference_count,
        execution_count=tally.execution_count,
        inference_stats=InferenceStats(
            success=_stat(tally.success),
            fail=_stat(tally.fail),
            queue=_stat(tally.queue),
            compute_input=_counted(tally.compute),
            compute_infer=_stat(tally.compute),
            compute_output=_counted(tally.compute),
            cache_hit=_NONE,
            cache_miss=_NONE,
        ),
        response_stats={},
        batch_stats=[
            BatchStats(
                batch_size=size,
                compute_input=_counted(batch.compute_infer),
                compute_infer=_stat(batch.compute_infer),
                compute_output=_counted(batch.compute_infer),
            )
            for size, batch in sorted(tally.batches.items())
        ],
        memory_usage=[],
    )


def statistics_response(specs: list[FunctionSpec], statistics: InferenceStatistics) -> ModelStatsResponse:
    return ModelStatsResponse(model_stats=[model_stats(spec, statistics.tally(spec.name)) for spec in specs])
