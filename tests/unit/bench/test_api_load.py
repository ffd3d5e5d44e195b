"""Reading wrk's report (CI has no wrk, so the smoke run uses the Python load generator)."""

from __future__ import annotations

import pytest

from bench.api_load import parse_wrk

REPORT = """\
Running 8s test @ http://127.0.0.1:41234/tasks
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    22.17ms   10.09ms  61.94ms   69.33%
    Req/Sec   370.23     62.36   470.00     70.00%
  Latency Distribution
     50%   20.75ms
     75%   27.32ms
     90%   34.65ms
     99%  {p99}
  5921 requests in 8.02s, 2.01MB read
{errors}Requests/sec:    738.21
Transfer/sec:    256.37KB
"""


@pytest.mark.parametrize(("p99", "ms"), [("53.40ms", 53.4), ("812.00us", 0.812), ("1.20s", 1200)])
def test_requests_per_second_and_p99_in_ms(p99: str, ms: float) -> None:
    figures = parse_wrk(REPORT.format(p99=p99, errors=""))
    assert figures["rps"] == 738.21
    assert figures["p99_ms"] == pytest.approx(ms)


@pytest.mark.parametrize(
    "errors",
    [
        "  Non-2xx or 3xx responses: 12\n",
        "  Socket errors: connect 0, read 0, write 0, timeout 5\n",
    ],
)
def test_errors_under_load_fail_the_run(errors: str) -> None:
    with pytest.raises(RuntimeError, match="errors under load"):
        parse_wrk(REPORT.format(p99="53.40ms", errors=errors))


def test_output_without_figures_fails_the_run() -> None:
    with pytest.raises(RuntimeError, match="unexpected output"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")
