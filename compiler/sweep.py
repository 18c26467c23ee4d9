"""`rcc sweep` as a Python call: evaluate many (model, point) pairs as independent Dask tasks, on a local
cluster of worker processes or on a cluster named by its scheduler's address, writing the results file as
points finish.

    with sweep_client(workers=2) as client:
        outcome = run_sweep(client, [SweepModel.load("models/mlp.onnx")], GridSearch(points),
                            ResultsFile.checked("out.parquet"), resume=True)

Robustness: a point that fails is a row with its error (sweep_point.py); a worker that dies has its tasks
rescheduled by Dask on the others (`allowed-failures` times, then the point is recorded as failed); with
`resume`, points whose `point_id` is already in the results file are not computed again; the file is
replaced atomically, at most every `write_interval` seconds and when the sweep ends or is interrupted.
Each model, and the `--data` set (`SweepData`), is scattered to every worker once, not sent with each task.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from distributed import Client, LocalCluster, as_completed
from distributed.client import FutureCancelledError
from distributed.comm.addressing import get_address_host_port
from distributed.scheduler import KilledWorker

from rcc.compiler.sweep_point import SweepData, SweepModel, evaluate_point
from rcc.compiler.sweep_results import ResultsFile
from rcc.compiler.sweep_search import Search
from rcc.compiler.sweep_space import Point, SweepError, point_id

Row = dict[str, Any]


class _ClosingClient(Client):
    """A Client that closes itself when connecting fails. distributed leaves a client whose start
    raised (a malformed address, a service that is not a scheduler) to `__del__`, which closes it from
    the garbage collector and prints a timeout traceback some 20 s later."""

    def start(self, **kwargs: Any) -> None:
        try:
            super().start(**kwargs)
        except BaseException:
            self.close()
            raise


def check_scheduler_address(address: str) -> str:
    """`address` if it has the form of a Dask scheduler's address (tcp://HOST:PORT; tls://, ws:// and
    wss:// too, and HOST:PORT means tcp://); SweepError naming `--scheduler` otherwise."""
    try:
        host, port = get_address_host_port(address)
    except ValueError:
        host, port = "", 0
    if not host or any(char.isspace() for char in host) or not 0 < port < 65536:
        raise SweepError(f"--scheduler {address!r}: not a Dask scheduler address (tcp://HOST:PORT)")
    return address


def _connected_client(scheduler: str, connect_timeout: float) -> Client:
    check_scheduler_address(scheduler)
    try:
        return _ClosingClient(scheduler, timeout=connect_timeout, set_as_default=False)
    except OSError as err:  # refused, unresolvable, timed out (TimeoutError is an OSError)
        raise SweepError(f"--scheduler {scheduler}: cannot reach the Dask scheduler within "
                         f"{connect_timeout:g} s ({type(err).__name__})") from None
    except Exception as err:  # something listens there but does not speak Dask (an HTTP dashboard port:
        # its reply read as a frame length is a MemoryError; other bytes fail to unpack in assorted ways)
        raise SweepError(f"--scheduler {scheduler}: what answers there is not a Dask scheduler "
                         f"({type(err).__name__})") from None


@contextmanager
def sweep_client(scheduler: str | None = None, workers: int | None = None,
                 connect_timeout: float = 10.0) -> Iterator[Client]:
    """A Dask client: of a new local cluster (`workers` processes, one thread each; default one per
    core), or connected to `scheduler` (tcp://HOST:PORT), failing with one line after `connect_timeout`
    seconds (finite and positive). A client that fails to connect is closed at once."""
    if scheduler is not None:
        with _connected_client(scheduler, connect_timeout) as client:
            yield client
        return
    cluster = LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
                           dashboard_address=":0", silence_logs=logging.ERROR)
    with cluster, Client(cluster, set_as_default=False) as client:
        yield client


@dataclass
class SweepOutcome:
    """What a sweep did: every row of the results file, how many points it computed, kept from the
    file (resumed) and saw fail."""

    rows: list[Row] = field(default_factory=list)
    computed: int = 0
    resumed: int = 0
    failed: int = 0


def _lost_row(model: SweepModel, point: Point, data_digest: str | None, err: BaseException) -> Row:
    """The row of a point Dask gave up on (its workers kept dying)."""
    return {"point_id": point_id(model.digest, point, data_digest), "model": model.name, **point, "status": "failed",
            "error": f"its workers kept dying ({type(err).__name__}: {str(err).splitlines()[0][:300]})"}


def run_sweep(client: Client, models: list[SweepModel], search: Search, results: ResultsFile | None = None,
              resume: bool = False, verify: bool = True, on_row: Callable[[Row, SweepOutcome], None] | None = None,
              timeout: float | None = None, write_interval: float = 1.0, data: SweepData | None = None
              ) -> SweepOutcome:
    """Run `search`'s points for every model on `client`'s workers; `on_row` sees each finished row.
    With `data`, every row also has the point's accuracy on it (sweep_point.accuracy_figures).
    With `resume`, rows already in `results` are kept and their points skipped. SweepError when the
    sweep takes longer than `timeout` seconds (the rows finished by then are written)."""
    outcome = SweepOutcome()
    previous = results.read() if results is not None and resume else []
    done = {row["point_id"]: row for row in previous}
    outcome.rows = list(previous)
    outcome.resumed = len(previous)
    shared = {model.digest: client.scatter(model, broadcast=True, hash=False) for model in models}
    shared_data = None if data is None else client.scatter(data, broadcast=True, hash=False)
    data_digest = None if data is None else data.digest
    by_digest = {model.digest: model for model in models}
    pending: dict[Any, tuple[SweepModel, Point]] = {}
    repeats: dict[str, list[Point]] = {}  # point_id of a running point → the same point proposed again
    finished = as_completed(loop=client.loop, timeout=timeout)
    last_write = time.monotonic()

    def submit_proposals() -> None:
        # A search may propose a point again (a model-based sampler repeats itself): a finished point is
        # observed at once from its row, a running one when it finishes; neither is computed twice.
        while proposals := search.propose(len(pending)):
            for digest, point in proposals:
                ident = point_id(digest, point, data_digest)
                if ident in done:
                    search.observe(point, digest, done[ident])
                elif ident in repeats:
                    repeats[ident].append(point)
                else:
                    future = client.submit(evaluate_point, shared[digest], point, verify, shared_data,
                                           key=f"point-{ident}", pure=False)
                    pending[future] = (by_digest[digest], point)
                    repeats[ident] = []
                    finished.add(future)

    try:
        submit_proposals()
        while pending:
            try:
                future = next(finished)
            except StopIteration:  # only when every added future is done: pending would be empty
                break
            model, point = pending.pop(future)
            try:
                row = future.result()
            except (KilledWorker, FutureCancelledError) as err:
                row = _lost_row(model, point, data_digest, err)
            done[row["point_id"]] = row
            outcome.rows.append(row)
            outcome.computed += 1
            outcome.failed += row["status"] != "ok"
            for same_point in [point, *repeats.pop(row["point_id"], [])]:
                search.observe(same_point, model.digest, row)
            if on_row is not None:
                on_row(row, outcome)
            if results is not None and time.monotonic() - last_write >= write_interval:
                results.write(outcome.rows)
                last_write = time.monotonic()
            submit_proposals()
    except TimeoutError:
        raise SweepError(f"--timeout {timeout:g}: the sweep did not finish in time; {outcome.computed} points "
                         f"were computed and written (resume with --resume)") from None
    finally:
        for future in pending:
            future.cancel()
        if results is not None and outcome.rows:
            results.write(outcome.rows)
    return outcome
