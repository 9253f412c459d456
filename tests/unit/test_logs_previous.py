"""`gossamer logs --previous`: the last terminated run of a container, from the runtime's one log per container."""

from __future__ import annotations

from gossamer.cli.main import previous_run

LOG = """\
starting v1
boom
[gossamer 2026-12-02T07:00:00] default/web-x/web exited (code 3); restarting in 0.5s
starting v1
still boom
[gossamer 2026-12-02T07:00:01] default/web-x/web exited (code 3); restarting in 1.0s
starting v1
serving
"""


def test_previous_is_the_run_before_the_last_restart() -> None:
    marker = "[gossamer 2026-12-02T07:00:01] default/web-x/web exited (code 3); restarting in 1.0s\n"
    assert previous_run(LOG) == "starting v1\nstill boom\n" + marker


def test_the_first_run_is_previous_after_one_restart() -> None:
    first = LOG.split("starting v1\nstill")[0]
    assert previous_run(first + "starting v1\n") == first


def test_a_container_that_never_terminated_has_no_previous_run() -> None:
    assert previous_run("starting v1\nserving\n") is None
