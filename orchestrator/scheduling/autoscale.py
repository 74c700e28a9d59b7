"""Serve's autoscaling policy for a local model, counting the demand the scheduler sent elsewhere.

Serve scales a deployment on the requests its replicas hold (running and queued, and those waiting
at handles). The scheduler keeps a local model's queue short on purpose: once the predicted time to
first token passes the SLO it spills to remote routes, so in a burst the replicas never hold more
than the SLO allows, and Serve, seeing no more than that, may never add one (or, when the local
circuit opens and every request goes elsewhere, scales down mid-burst).

So each gateway counts the requests it spilled from a local model *for load* and still has in
flight (`LoadView.overflowing`), tells the load board as it reads it, the board answers each
replica's load report with the total (`LoadBoard.report`), and the replica gives it to Serve as a
custom autoscaling metric (`LocalModel.record_autoscaling_stats`). This policy is Serve's own
(ongoing requests against `target_ongoing_requests`) with that overflow added to the ongoing
requests; Serve still applies the config's bounds, delays and factors around it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from local_models.interface import OVERFLOW_METRIC

if TYPE_CHECKING:
    from ray.serve.config import AutoscalingContext

__all__ = ["OVERFLOW_METRIC", "POLICY", "overflow_aware", "with_overflow_policy"]

POLICY = "orchestrator.scheduling.autoscale:overflow_aware"


def overflow_aware(ctx: AutoscalingContext) -> tuple[float, dict[str, Any]]:
    """Desired replicas: (ongoing + spilled-for-load in flight) / target_ongoing_requests."""
    running = ctx.current_num_replicas
    if running == 0:  # Serve's own cold start: a request waiting at a handle starts one
        return ctx.target_num_replicas, {}
    reported = (ctx.aggregated_metrics or {}).get(OVERFLOW_METRIC, {})
    overflow = max(reported.values(), default=0.0)  # every replica hears the same total from the board
    assert ctx.config is not None  # Serve gives the policy the deployment's autoscaling config
    target = ctx.config.get_target_ongoing_requests() * running
    return running * (ctx.total_num_requests + overflow) / target, {}


def with_overflow_policy(autoscaling: dict[str, Any] | None) -> dict[str, Any] | None:
    """A configured `autoscaling_config` with this policy, unless it names one of its own."""
    if autoscaling is None or "policy" in autoscaling:
        return autoscaling
    return {**autoscaling, "policy": {"policy_function": POLICY}}
