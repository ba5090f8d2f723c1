"""benchmarks/layers.py: every suite runs, checks its exchange and reports both figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import layers

pytestmark = pytest.mark.timeout(60)

LAYERS = Path(layers.__file__).resolve()


@pytest.mark.interpreted  # calls into compiled modules are not Python calls cProfile counts
def test_every_suite_reports_time_and_calls_per_exchange() -> None:
    out = subprocess.run(
        [sys.executable, str(LAYERS), "--json", "--reps", "1", "--rounds", "64"],
        capture_output=True,
        text=True,
        timeout=50,
        check=True,
    )
    results = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(results) == set(layers.SUITES)
    for suite, figures in results.items():
        assert figures["us"] > 0, suite
        # A proxied exchange takes some tens of Python calls; zero would mean nothing ran.
        assert 20 < figures["calls"] < 1000, (suite, figures)


def test_an_http1_exchange_forwards_the_response_without_its_hop_by_hop_line() -> None:
    once, per_run = layers.http1_exchange()  # checks the bytes itself, then hands back the loop
    assert per_run == 1
    assert once() == layers.HTTP_REQUEST + layers.HTTP_FORWARDED


def test_an_unknown_suite_is_refused() -> None:
    with pytest.raises(SystemExit):
        layers.main(["--suites", "http9"])
