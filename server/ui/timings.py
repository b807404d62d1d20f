"""What the ledger does not keep about a request, remembered for the dashboard: time to first
token and each attempt (deployment, outcome, status, milliseconds).

A ``RequestSink`` the composition root adds to the Gateway's sinks. It keeps the newest
``capacity`` requests of this process in memory, by request id, so the recent-requests page
can show them beside the ledger rows; a request served by another process or before a restart
shows none. Never prompt text: only ids, names, numbers and outcomes.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

from switchboard.v1 import types_pb2

from server.core.records import RequestRecord

CAPACITY = 2000

_OUTCOMES = {
    value.number: value.name.removeprefix("ATTEMPT_OUTCOME_").lower()
    for value in types_pb2.AttemptOutcome.DESCRIPTOR.values
}

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AttemptView:
    deployment: str
    outcome: str
    status: int
    ms: float


@dataclass(frozen=True, slots=True)
class Timing:
    # Milliseconds to the first streamed chunk; None for unary calls.
    ttft_ms: float | None
    attempts: tuple[AttemptView, ...]


def _outcome(value: int) -> str:
    return _OUTCOMES.get(value, str(value))


class RecentTimings:
    """The newest requests' TTFT and attempts, by request id (a ``RequestSink``).

    ``finish`` runs on every request and ``get`` only when someone opens the requests page, so
    ``finish`` keeps what the record already holds (the TTFT and its attempts) and ``get``
    builds the views."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._by_id: OrderedDict[str, tuple[float | None, tuple[types_pb2.Attempt, ...]]] = (
            OrderedDict()
        )

    def finish(self, record: RequestRecord) -> None:
        """Never raises: the dashboard's bookkeeping must not change what the caller gets."""
        try:
            by_id = self._by_id
            by_id[record.ctx.request_id] = (record.ttft, tuple(record.run.attempts))
            if len(by_id) > self.capacity:
                by_id.popitem(last=False)
        except Exception:
            _log.exception("remembering a request's timings failed")

    def get(self, request_id: str) -> Timing | None:
        kept = self._by_id.get(request_id)
        if kept is None:
            return None
        ttft, attempts = kept
        return Timing(
            None if ttft is None else ttft * 1000.0,
            tuple(
                AttemptView(a.deployment, _outcome(a.outcome), a.http_status, a.latency_ms)
                for a in attempts
            ),
        )
