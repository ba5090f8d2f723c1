"""The downstream phase machine as data: the table, MOSN's properties, bounded walks."""

from __future__ import annotations

import inspect
import itertools
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mosnpy.proxy import downstream
from mosnpy.proxy.downstream import DownStream
from mosnpy.proxy.phases import (
    JUMPS,
    MAX_JUMPS,
    ORDER,
    IllegalTransition,
    Phase,
    allowed,
    check,
    is_backward,
    successor,
)
from mosnpy.proxy.stream_downstream import StreamDownStream

P = Phase
SETTINGS = settings(max_examples=300, deadline=None, database=None)
phases = st.sampled_from(list(Phase))
#: The longest walk: each of the allowed backward jumps, then a forward-only run.
MAX_STEPS = (MAX_JUMPS + 1) * len(ORDER)


def predecessors(target: Phase) -> set[Phase]:
    return {p for p in Phase if target in allowed(p)}


def forward(src: Phase) -> list[Phase]:
    return sorted((d for d in allowed(src) if not is_backward(src, d)), key=ORDER.index)


# --------------------------------------------------------------------------- the table


def test_order_is_every_phase_from_init_to_end() -> None:
    assert tuple(Phase) == ORDER
    assert ORDER[0] is P.INIT and ORDER[-1] is P.END
    assert [p.idx for p in ORDER] == list(range(len(ORDER)))


@pytest.mark.parametrize("machine", [DownStream, StreamDownStream], ids=lambda c: c.__name__)
def test_every_phase_has_a_handler(machine: type[DownStream]) -> None:
    names = downstream._HANDLER_NAMES
    assert set(names) == set(Phase)
    assert len(set(names.values())) == len(Phase)  # one handler per phase
    for phase in Phase:
        handler = getattr(machine, names[phase])
        # Handlers are plain functions: a phase that must wait returns an awaitable,
        # so the machine can walk inline without a task (DESIGN §4).
        assert not inspect.iscoroutinefunction(handler), (phase, handler)


@pytest.mark.parametrize("phase", list(Phase), ids=lambda p: p.value)
def test_successor_is_the_table(phase: Phase) -> None:
    # The machine's written-out successor agrees with the table, phase by phase.
    assert downstream._successor(phase) is successor(phase)


def test_jumps_cover_every_phase() -> None:
    assert set(JUMPS) == set(Phase)
    assert JUMPS[P.END] == frozenset()
    assert allowed(P.END) == frozenset()


@SETTINGS
@given(phases, phases)
def test_check_agrees_with_allowed(src: Phase, dst: Phase) -> None:
    if dst in allowed(src):
        check(src, dst)
    else:
        with pytest.raises(IllegalTransition, match=f"{src.value} -> {dst.value}"):
            check(src, dst)


def test_check_over_all_pairs() -> None:
    ok = 0
    for src in Phase:
        for dst in Phase:
            if dst in allowed(src):
                check(src, dst)
                ok += 1
            else:
                with pytest.raises(IllegalTransition):
                    check(src, dst)
    assert ok == sum(len(allowed(p)) for p in Phase)
    assert 0 < ok < len(Phase) ** 2


def test_allowed_is_successor_plus_jumps() -> None:
    for p in Phase:
        nxt = successor(p)
        assert allowed(p) == JUMPS[p] | ({nxt} if nxt is not None else set())


def test_is_backward_is_order_comparison() -> None:
    for src in Phase:
        for dst in Phase:
            assert is_backward(src, dst) == (ORDER.index(dst) <= ORDER.index(src))


# --------------------------------------------------------------------------- MOSN's properties


def test_retry_is_only_entered_by_a_jump() -> None:
    assert all(successor(p) is not P.RETRY for p in Phase)
    assert predecessors(P.RETRY) == {p for p in Phase if P.RETRY in JUMPS[p]}
    assert P.WAIT_NOTIFY in predecessors(P.RETRY)


def test_special_successors() -> None:
    assert successor(P.ONEWAY) is P.WAIT_NOTIFY
    assert successor(P.RETRY) is P.DOWN_RECV_HEADER
    assert successor(P.END) is None
    for p in ORDER[:-1]:
        if p not in (P.ONEWAY, P.RETRY):
            assert successor(p) is ORDER[ORDER.index(p) + 1]


def test_rematch_route_only_from_filter_after_route() -> None:
    assert {p for p in Phase if P.MATCH_ROUTE in JUMPS[p]} == {P.DOWN_FILTER_AFTER_ROUTE}
    assert predecessors(P.MATCH_ROUTE) == {P.DOWN_FILTER, P.DOWN_FILTER_AFTER_ROUTE}
    assert is_backward(P.DOWN_FILTER_AFTER_ROUTE, P.MATCH_ROUTE)


def test_rechoose_host_only_from_filter_after_choose_host() -> None:
    assert {p for p in Phase if P.CHOOSE_HOST in JUMPS[p]} == {P.DOWN_FILTER_AFTER_CHOOSE_HOST}
    assert predecessors(P.CHOOSE_HOST) == {P.DOWN_FILTER_AFTER_ROUTE, P.DOWN_FILTER_AFTER_CHOOSE_HOST}
    assert is_backward(P.DOWN_FILTER_AFTER_CHOOSE_HOST, P.CHOOSE_HOST)


def test_local_reply_reachable_in_one_step_before_wait_notify() -> None:
    before = ORDER[: ORDER.index(P.WAIT_NOTIFY) + 1]
    for p in before:
        # INIT does nothing; the request's end is only queued (it cannot fail), and
        # ONEWAY only decides between END and WAIT_NOTIFY.
        if p in (P.INIT, P.DOWN_RECV_TRAILER, P.ONEWAY):
            assert P.UP_FILTER not in allowed(p), p
        else:
            assert P.UP_FILTER in allowed(p), p


def test_terminate_is_a_jump_from_every_filter_phase() -> None:
    for p in (P.DOWN_FILTER, P.DOWN_FILTER_AFTER_ROUTE, P.DOWN_FILTER_AFTER_CHOOSE_HOST, P.UP_FILTER):
        assert P.END in allowed(p), p


def test_end_is_reachable_from_every_phase() -> None:
    for start in Phase:
        seen = {start}
        queue = deque([start])
        while queue:
            p = queue.popleft()
            for nxt in allowed(p) - seen:
                seen.add(nxt)
                queue.append(nxt)
        assert P.END in seen, start


def test_every_phase_but_end_has_a_forward_way_out() -> None:
    for p in ORDER[:-1]:
        assert forward(p), p


def test_end_reachable_by_forward_steps_alone() -> None:
    for start in ORDER:
        p, steps = start, 0
        while p is not P.END:
            p = forward(p)[0]
            steps += 1
            assert steps <= len(ORDER)


# --------------------------------------------------------------------------- random walks


@SETTINGS
@given(st.data())
def test_random_walks_end_within_the_jump_budget(data: st.DataObject) -> None:
    phase, jumps, steps = P.INIT, 0, 0
    path = [phase]
    while phase is not P.END:
        assert steps < MAX_STEPS, path
        options = sorted(allowed(phase), key=ORDER.index)
        if jumps >= MAX_JUMPS:
            options = forward(phase)  # the budget is spent: only forward from now on
        nxt = data.draw(st.sampled_from(options), label=f"after {phase.value}")
        check(phase, nxt)
        if is_backward(phase, nxt):
            jumps += 1
        phase = nxt
        steps += 1
        path.append(phase)
    assert jumps <= MAX_JUMPS
    assert steps <= MAX_STEPS


@SETTINGS
@given(st.lists(phases, min_size=2, max_size=30))
def test_illegal_walks_are_caught(walk: list[Phase]) -> None:
    legal = all(b in allowed(a) for a, b in itertools.pairwise(walk))
    try:
        for a, b in itertools.pairwise(walk):
            check(a, b)
    except IllegalTransition:
        assert not legal
    else:
        assert legal
