"""One answer to "is it alive?" and "is it ready?", which every protocol's health endpoints report
(``/healthz`` and ``/readyz``, the Open Inference Protocol's ``/v2/health/*`` and model readiness,
and their gRPC counterparts): they cannot disagree, during a drain least of all."""

from __future__ import annotations

from dataclasses import dataclass

from app.compute.service import ComputeService
from app.core.lifecycle import is_draining


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    code: str
    """``alive`` or ``ready`` when ok; else why not (``device_failure``, ``compute_stuck``,
    ``draining``, ``not_ready``)."""
    message: str


class Health:
    def __init__(self, compute: ComputeService) -> None:
        self._compute = compute

    @property
    def device(self) -> str:
        return self._compute.device

    def liveness(self) -> Verdict:
        """Fails only when a restart is the cure: the device failed for good, or a computation
        has run past ``stuck_compute_s`` (its thread cannot be interrupted)."""
        compute = self._compute
        failure = compute.device_failure
        if failure is not None:
            return Verdict(False, "device_failure", f"the device failed and the process needs a restart: {failure}")
        if compute.stuck:
            limit = compute.settings.stuck_compute_s
            return Verdict(
                False,
                "compute_stuck",
                f"a computation has run for {compute.stuck_for:.0f} s (limit {limit:g} s); the process needs a restart",
            )
        return Verdict(True, "alive", "alive")

    def readiness(self) -> Verdict:
        """Ready to take work: the device is initialised and has not failed, work is accepted, and
        the process is not draining (from the stop signal on, every readiness answer fails at once,
        so that balancers stop sending while in-flight work finishes)."""
        compute = self._compute
        if compute.device_failure is not None:
            return Verdict(False, "device_failure", "the device failed; not accepting work")
        if is_draining():
            return Verdict(False, "draining", "shutting down; not accepting new work")
        if not compute.ready:
            return Verdict(False, "not_ready", "not accepting work (starting or shutting down)")
        return Verdict(True, "ready", "ready")
