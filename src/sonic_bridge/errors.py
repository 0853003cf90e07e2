"""Stable error codes carried by ``events.Error`` and ``events.Warning``: hosts may switch on them."""

from __future__ import annotations

# Errors (events.Error.code)
WORKER_DIED = "worker_died"  # the worker process exited unexpectedly
WORKER_STALLED = "worker_stalled"  # the worker stopped answering (heartbeat too old)
WORKER_START_FAILED = "worker_start_failed"  # the worker's interpreter could not be started, or exited at once
WORKER_START_TIMEOUT = "worker_start_timeout"  # the worker did not finish starting within startup_timeout
WORKER_ENVIRONMENT = "worker_environment"  # the worker's interpreter lacks what it needs (sonic-bridge, the SDK)
VERSION_MISMATCH = "version_mismatch"  # host and worker run different sonic-bridge versions
INTERNAL = "internal_error"  # a bug: a worker task failed (the cause is in the message)
RESTART_LIMIT = "restart_limit"  # the worker died more often than the restart policy allows
WORKER_OVER_LIMIT = "worker_over_limit"  # the worker went over max_worker_memory_mb or max_worker_cpu: restarted
NO_CREDENTIALS = "no_credentials"
ACCESS_DENIED = "access_denied"
INVALID_MODEL = "invalid_model"
ENDPOINT_UNREACHABLE = "endpoint_unreachable"
TLS_FAILURE = "tls_failure"
BAD_CONFIGURATION = "bad_configuration"
SERVICE_ERROR = "service_error"  # a recoverable service error (a reconnect follows)
SERVICE_FATAL = "service_fatal"  # a service error that ends the session
RECONNECT_LIMIT = "reconnect_limit"
PROTOCOL = "protocol_error"  # an intent the session refused (e.g. unknown tool use id)

# Warnings (events.Warning.code)
HOST_RING_FULL = "host_ring_full"  # host -> worker ring full: frames dropped
WORKER_RING_FULL = "worker_ring_full"  # worker -> host ring full: reply audio or log lines dropped
WORKER_MESSAGE_TOO_LARGE = "worker_message_too_large"  # over the outbound ring's message limit: cut or refused
UNKNOWN_SERVICE_EVENT = "unknown_service_event"
BAD_SERVICE_EVENT = "bad_service_event"
LEGACY_MODEL = "legacy_model"  # the chosen model is a legacy one past its end of life (amazon.nova-sonic-v1:0)
VISION_UNAVAILABLE = "vision_unavailable"  # a look failed (no frame, stale camera, the vision model refused)
