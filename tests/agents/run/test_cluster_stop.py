"""A stop request ends a local cluster's workers at once: the parts they were running do not go on."""

import time
from pathlib import Path

import pytest

from agents.run.cluster import Cluster

pytestmark = pytest.mark.slow


def _late_write(path: str, delay: float) -> str:
    """A stand-in for a training part: busy for `delay` seconds, then it writes its result."""
    end = time.monotonic() + delay
    while time.monotonic() < end:
        sum(range(1000))
    Path(path).write_text("written")
    return path


@pytest.mark.parametrize("now", [True, False])
def test_a_stop_kills_the_running_parts_where_a_plain_close_lets_them_finish(tmp_path: Path, now: bool) -> None:
    cluster = Cluster(workers=1)
    target = tmp_path / "result.txt"
    future = cluster.client.submit(_late_write, str(target), 2.0, pure=False)
    while future.status == "pending" and not cluster.client.processing():  # wait until the worker runs it
        time.sleep(0.05)
    time.sleep(0.3)
    cluster.client.cancel([future], force=True)  # what the sweep's driver does on a stop
    cluster.close(now=now)
    time.sleep(2.5)  # longer than the part had left: a worker still alive would have written by now
    # a plain close waits for the busy worker (Dask's nanny gives it seconds), which finishes and writes;
    # close(now=True), a stop's close, kills it first
    assert target.exists() is (not now)
