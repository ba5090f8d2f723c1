"""Why an upstream could not be had: each maps to a proxy status (502/503)."""

from __future__ import annotations

__all__ = ["ConnectFailedError", "NoHealthyHostError", "OverflowError_", "UpstreamError"]


class UpstreamError(Exception):
    """Base of the upstream layer's errors."""


class NoHealthyHostError(UpstreamError):
    """The load balancer found no healthy host (502)."""


class ConnectFailedError(UpstreamError):
    """Connecting to the chosen host failed or timed out (502, retryable)."""


class OverflowError_(UpstreamError):  # named so as not to shadow the builtin OverflowError
    """A circuit breaker (max connections, max requests) is full (503, not retried)."""
