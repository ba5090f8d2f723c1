"""The downstream phase machine as data: the phases, their order and allowed jumps.

Theory of operation
-------------------
Every request walks MOSN's phase list in order (:data:`ORDER`).  Each phase's handler
returns the next phase; the normal successor is the next one in :data:`ORDER`, and any
other answer must be listed in :data:`JUMPS` for that phase, or the machine raises
:class:`IllegalTransition` (a bug, never a client's doing).  This file is the only place
the transitions live, so the machine can be read, drawn and tested as a table.

The jumps:

* a local reply (no route, direct response, redirect, a filter's hijack, an upstream
  error) jumps to ``UP_FILTER`` so the reply goes through the sender filters; so does
  an upstream response that starts while the request body is still streaming
  (``DOWN_RECV_DATA``: a gRPC bidirectional call, an early answer): from there both
  directions flow at once, the rest of the request going up as it arrives;
* a filter may ``TERMINATE`` (jump to ``END``, no response), and a stream whose
  client left, or whose response had to be cut, ends from where it stands;
* after-route filters may re-match the route, after-choose-host filters may re-choose
  the host;
* an upstream failure (a connect, a reset while sending the body or waiting, a
  timeout, a status the policy lists) that the retry policy allows jumps to
  ``RETRY``, which picks a host again and resends from ``DOWN_RECV_HEADER``;
* ``ONEWAY`` ends a request that expects no response; otherwise its normal successor
  is ``WAIT_NOTIFY`` (``RETRY`` is entered only by a jump, and its successor is
  ``DOWN_RECV_HEADER``: a retry resends the request).
"""

from __future__ import annotations

from enum import Enum
from typing import Final

from mosnpy.native import mypyc_attr

__all__ = ["IllegalTransition", "JUMPS", "MAX_JUMPS", "ORDER", "Phase", "allowed", "check", "counts_as_jump"]


class Phase(Enum):
    INIT = "Init"
    DOWN_FILTER = "DownFilter"
    MATCH_ROUTE = "MatchRoute"
    DOWN_FILTER_AFTER_ROUTE = "DownFilterAfterRoute"
    CHOOSE_HOST = "ChooseHost"
    DOWN_FILTER_AFTER_CHOOSE_HOST = "DownFilterAfterChooseHost"
    DOWN_RECV_HEADER = "DownRecvHeader"
    DOWN_RECV_DATA = "DownRecvData"
    DOWN_RECV_TRAILER = "DownRecvTrailer"
    ONEWAY = "Oneway"
    RETRY = "Retry"
    WAIT_NOTIFY = "WaitNotify"
    UP_FILTER = "UpFilter"
    UP_RECV_HEADER = "UpRecvHeader"
    UP_RECV_DATA = "UpRecvData"
    UP_RECV_TRAILER = "UpRecvTrailer"
    END = "End"

    #: position in ORDER, set below; the hot path compares these ints instead of
    #: hashing members (an Enum member hashes in Python code)
    idx: int


P = Phase

#: The phases in MOSN's order; each one's normal successor is the next.
ORDER: Final[tuple[Phase, ...]] = tuple(Phase)

_REPLY: Final = {P.UP_FILTER}
_TERMINATE: Final = {P.END}
_RETRY: Final = {P.RETRY}

#: Extra transitions each phase may take besides its normal successor.
JUMPS: Final[dict[Phase, frozenset[Phase]]] = {
    P.INIT: frozenset(),
    P.DOWN_FILTER: frozenset(_REPLY | _TERMINATE),
    P.MATCH_ROUTE: frozenset(_REPLY),
    P.DOWN_FILTER_AFTER_ROUTE: frozenset({P.MATCH_ROUTE} | _REPLY | _TERMINATE),
    P.CHOOSE_HOST: frozenset(_REPLY),
    P.DOWN_FILTER_AFTER_CHOOSE_HOST: frozenset({P.CHOOSE_HOST} | _REPLY | _TERMINATE),
    P.DOWN_RECV_HEADER: frozenset(_RETRY | _REPLY | _TERMINATE),
    P.DOWN_RECV_DATA: frozenset(_RETRY | _REPLY | _TERMINATE),
    # The request's end is queued, never waited for: it cannot fail.
    P.DOWN_RECV_TRAILER: frozenset(),
    P.ONEWAY: frozenset(_TERMINATE),
    P.RETRY: frozenset(_REPLY),
    P.WAIT_NOTIFY: frozenset(_RETRY | _REPLY | _TERMINATE),
    P.UP_FILTER: frozenset(_TERMINATE),
    P.UP_RECV_HEADER: frozenset(_TERMINATE),
    P.UP_RECV_DATA: frozenset(_TERMINATE),
    P.UP_RECV_TRAILER: frozenset(),
    P.END: frozenset(),
}

#: A request may take at most this many backward jumps (filters re-matching the route
#: or re-choosing the host) before the machine gives up, as MOSN caps its loop.
#: Retries are not counted here: the retry policy's own budget bounds them.
MAX_JUMPS: Final = 10


@mypyc_attr(native_class=False)
class IllegalTransition(RuntimeError):
    """A phase handler asked for a transition the table does not allow."""


#: Where the normal successor is not simply the next phase in ORDER: RETRY is only
#: ever entered by a jump, so ONEWAY steps over it, and a retry resends the request.
_SUCCESSOR_OVERRIDES: Final = {P.ONEWAY: P.WAIT_NOTIFY, P.RETRY: P.DOWN_RECV_HEADER}


def successor(phase: Phase) -> Phase | None:
    """The normal next phase, or None for END."""
    if phase in _SUCCESSOR_OVERRIDES:
        return _SUCCESSOR_OVERRIDES[phase]
    i = ORDER.index(phase)
    return ORDER[i + 1] if i + 1 < len(ORDER) else None


_SUCCESSOR: Final = {p: successor(p) for p in Phase}
#: The normal successor of each phase by ``Phase.idx`` (None for END): the machine's
#: fast path, always allowed.
NEXT: Final[tuple[Phase | None, ...]] = tuple(_SUCCESSOR[p] for p in Phase)


def allowed(src: Phase) -> frozenset[Phase]:
    """Every phase ``src`` may go to."""
    nxt = _SUCCESSOR[src]
    return JUMPS[src] | ({nxt} if nxt is not None else set())


# The machine checks every transition of every request, so the table is also
# compiled to plain ints: Enum members hash in Python code, small ints do not.
for _i, _p in enumerate(ORDER):
    _p.idx = _i
_ALLOWED_BY_INDEX: Final[tuple[frozenset[int], ...]] = tuple(
    frozenset(d.idx for d in allowed(p)) for p in ORDER
)


def check(src: Phase, dst: Phase) -> None:
    """Raise :class:`IllegalTransition` unless ``src → dst`` is in the table."""
    if dst.idx not in _ALLOWED_BY_INDEX[src.idx]:
        raise IllegalTransition(f"{src.value} -> {dst.value} is not an allowed transition")


def is_backward(src: Phase, dst: Phase) -> bool:
    """True for jumps that revisit an earlier phase."""
    return dst.idx <= src.idx


def counts_as_jump(src: Phase, dst: Phase) -> bool:
    """True for the backward jumps counted against :data:`MAX_JUMPS` (not retries)."""
    return dst.idx <= src.idx and src is not P.RETRY and dst is not P.RETRY
