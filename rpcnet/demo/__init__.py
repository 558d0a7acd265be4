"""``rpcnet demo``: a real cluster on this machine, one worker killed and restarted.

With no set-up it writes development certificates and a gossip key into a
temporary directory, starts a director and ``--workers`` workers (the
programs in this package, :mod:`rpcnet.demo.director` and
:mod:`rpcnet.demo.worker`, run as ``python -m``) as separate processes, and
joins them itself as a client node. Everything ships in the package, so it
runs the same from a wheel as from a checkout. A steady stream of idempotent ``infer`` calls then flows
through one :class:`~rpcnet.cluster.ClusterClient` per load-balancing
strategy while a live view shows members (state, tags), calls per worker,
calls in flight, p50/p99 and errors. Partway through one worker gets SIGKILL:
the view shows the client's node detect it and the calls fail over; later
the worker restarts on the same addresses and traffic returns to it. A
summary follows: calls ok and failed, detection time, time back in rotation,
and the distribution of calls per strategy. The exit status is non-zero if
any call failed, or if the kill was never detected or the worker never
served again.

On a terminal the view is redrawn a few times a second; otherwise (CI, a
log) it prints one line per second plus a line per scenario event.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import attrs

from ..testing.processes import NodeProcess

__all__ = ["STRATEGIES", "PROGRAMS", "MIN_KILL_DURATION", "ExampleProcess", "DemoSummary", "program_command",
           "run_demo", "main"]

#: Load-balancing strategies the demo drives, one ClusterClient each.
STRATEGIES: tuple[str, ...] = ("round-robin", "random", "least-connections")
#: The programs the demo runs as processes: modules of this package.
PROGRAMS: tuple[str, ...] = ("director", "worker")
#: Runs at least this long kill a worker and restart it; shorter ones only drive traffic.
MIN_KILL_DURATION = 20.0


def program_command(name: str) -> list[str]:
    """The command line of a demo program (``python -m rpcnet.demo.<name>``)."""
    if name not in PROGRAMS:
        raise ValueError(f"no demo program {name!r}; the programs are {', '.join(PROGRAMS)}")
    return [sys.executable, "-m", f"{__name__}.{name}"]


class ExampleProcess(NodeProcess):
    """A demo program (director or worker) run with ``--json``; its stdout
    lines (ready, cluster events) are collected like an ``rpcnet node``'s."""

    @classmethod
    async def launch(
        cls, program: str, args: Sequence[str] = (), *, env: dict[str, str] | None = None, timeout: float = 30.0
    ) -> ExampleProcess:
        node = cls([*program_command(program), "--json", *args], env)
        await node.spawn(timeout)
        return node

    @property
    def pid(self) -> int:
        assert self.ready is not None
        return int(self.ready["pid"])


def _percentile(sorted_values: Sequence[float], fraction: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f} ms"


@attrs.define
class Traffic:
    """What the client saw, call by call."""

    started: float
    ok: int = 0
    failed: int = 0
    errors: list[str] = attrs.field(factory=list)
    per_worker: dict[str, int] = attrs.field(factory=dict)
    per_strategy: dict[str, dict[str, int]] = attrs.field(factory=dict)
    latencies: dict[str, list[float]] = attrs.field(factory=dict)
    #: (monotonic end time, latency) of recent calls, for the live percentiles.
    recent: list[tuple[float, float]] = attrs.field(factory=list)
    #: (worker, pid) -> monotonic time its first answer arrived.
    first_answer: dict[tuple[str, int], float] = attrs.field(factory=dict)
    #: worker -> monotonic time of its latest answer.
    last_answer: dict[str, float] = attrs.field(factory=dict)

    def record_ok(self, strategy: str, reply: dict[str, Any], latency: float, now: float) -> None:
        self.ok += 1
        worker = str(reply.get("worker"))
        self.per_worker[worker] = self.per_worker.get(worker, 0) + 1
        by_worker = self.per_strategy.setdefault(strategy, {})
        by_worker[worker] = by_worker.get(worker, 0) + 1
        self.latencies.setdefault(strategy, []).append(latency)
        self.recent.append((now, latency))
        self.first_answer.setdefault((worker, int(reply.get("pid", 0))), now)
        self.last_answer[worker] = now

    def record_failure(self, error: BaseException) -> None:
        self.failed += 1
        if len(self.errors) < 10:
            self.errors.append(f"{type(error).__name__}: {error}")

    def window(self, now: float, seconds: float = 2.0) -> list[float]:
        horizon = now - seconds
        cut = 0
        while cut < len(self.recent) and self.recent[cut][0] < horizon:
            cut += 1
        del self.recent[:cut]
        return sorted(latency for _, latency in self.recent)


@attrs.define
class DemoSummary:
    duration: float
    strategies: tuple[str, ...]
    ok: int
    failed: int
    errors: list[str]
    victim: str | None
    #: Seconds from SIGKILL to the client node's ``failed`` event.
    detection: float | None
    #: Seconds from the restarted process being ready to the client's joined/recovered
    #: event; negative when the node announced itself before it reported ready.
    rejoin_event: float | None
    #: Seconds from the restarted process being ready to its first answer.
    back_in_rotation: float | None
    per_strategy: dict[str, dict[str, int]]
    percentiles: dict[str, tuple[float | None, float | None]]
    retries: int
    ejections: int
    #: False for runs shorter than MIN_KILL_DURATION: traffic only, no worker killed.
    kill: bool = True

    @property
    def complete(self) -> bool:
        if not self.kill:
            return self.ok > 0
        return self.detection is not None and self.back_in_rotation is not None

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or not self.complete else 0

    def render(self) -> str:
        lines = ["", "summary", f"  ran {self.duration:.1f} s; calls ok {self.ok}, failed {self.failed}"]
        if not self.kill:
            lines.append(f"  no worker was killed: runs of at least {MIN_KILL_DURATION:g} s kill one and restart it")
        if self.victim is not None:
            detection = "never (not within the run)" if self.detection is None else f"{self.detection:.2f} s after SIGKILL"
            lines.append(f"  {self.victim}: client node declared it failed {detection}; the registry dropped it at that event")
            if self.back_in_rotation is None:
                lines.append(f"  {self.victim} restarted but served no call before the end")
            else:
                if self.rejoin_event is None:
                    event = "never saw it join"
                elif self.rejoin_event < 0:
                    # The restarted node announces itself while it starts,
                    # before the demo hears that it is ready.
                    event = f"saw it join {-self.rejoin_event:.2f} s before it was ready"
                else:
                    event = f"saw it join {self.rejoin_event:.2f} s after it was ready"
                lines.append(
                    f"  {self.victim} restarted on the same addresses: client {event}, "
                    f"first answer {self.back_in_rotation:.2f} s after ready"
                )
        lines.append(f"  retries {self.retries}, local ejections {self.ejections}")
        workers = sorted({w for counts in self.per_strategy.values() for w in counts})
        header = ["strategy", *workers, "p50", "p99"]
        rows = [header]
        for strategy in self.strategies:
            counts = self.per_strategy.get(strategy, {})
            p50, p99 = self.percentiles.get(strategy, (None, None))
            rows.append([strategy, *(str(counts.get(w, 0)) for w in workers), _ms(p50), _ms(p99)])
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines.append("  calls answered per worker, by strategy:")
        for row in rows:
            lines.append("    " + "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))))
        for error in self.errors:
            lines.append(f"  error: {error}")
        if self.failed:
            verdict = f"FAILED: {self.failed} call(s) failed"
        elif not self.complete:
            verdict = ("INCOMPLETE: the kill was not detected or the worker did not come back within the run" if self.kill
                       else "INCOMPLETE: no call was answered")
        else:
            verdict = "OK: no call failed"
        lines.append(f"  {verdict}")
        return "\n".join(lines)


class _Demo:
    def __init__(self, *, duration: float, strategies: Sequence[str], workers: int, rate: float,
                 concurrency: int, out: TextIO, live: bool, transport: str = "quic") -> None:
        self.duration = duration
        self.transport = transport
        self.strategies = tuple(strategies)
        self.worker_count = workers
        self.rate = rate
        self.concurrency = concurrency
        self.out = out
        self.live = live
        self.processes: list[ExampleProcess] = []
        self.workers: dict[str, ExampleProcess] = {}
        self.timeline: list[tuple[float, str]] = []
        self.changed = asyncio.Event()
        self.member_events: list[tuple[float, Any]] = []
        self.stopping = False
        self.started = time.monotonic()
        self.traffic = Traffic(started=self.started)
        self.victim: str | None = None
        self.killed_at: float | None = None
        self.failed_at: float | None = None
        self.restarting = False
        self.restarted_ready: float | None = None
        self.rejoined_at: float | None = None
        self.restarted_pid: int | None = None
        self._frame_height = 0
        self.cluster: Any = None
        self.registries: dict[str, Any] = {}
        self.clients: dict[str, Any] = {}
        self.load_end = float("inf")

    # -- helpers -----------------------------------------------------------

    def elapsed(self, at: float | None = None) -> float:
        return (time.monotonic() if at is None else at) - self.started

    def note(self, text: str) -> None:
        self.timeline.append((self.elapsed(), text))
        if not self.live:
            self.out.write(f"[{self.elapsed():5.1f}s] {text}\n")
            self.out.flush()

    async def until(self, predicate: Callable[[], bool], deadline: float) -> bool:
        """Wait (on cluster events and answers) until ``predicate()`` holds or ``deadline`` (monotonic) passes."""
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(remaining, 0.1))
        return True

    async def _sleep_until(self, at: float) -> None:
        delay = at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    # -- the run ---------------------------------------------------------------

    async def run(self, workdir: Path) -> DemoSummary:
        from ..certs import write_dev_certs
        from ..cluster import Cluster, ClusterClient, ClusterConfig, Keyring
        from ..cluster.workers import WorkerRegistry
        from ..config import RpcConfig, TlsConfig
        from ..rpc import RpcServer

        certs = workdir / "certs"
        write_dev_certs(certs, server_names=["127.0.0.1", "localhost"], client_names=["client"], days=2)
        key = Keyring.generate()
        env = {"RPCNET_CERTS": str(certs), "RPCNET_GOSSIP_KEY": key, "RPCNET_RPC__TRANSPORT": self.transport}
        self.note(f"certificates and a gossip key written to {workdir}")

        director = await ExampleProcess.launch("director", ["--director", "127.0.0.1:0", "--table-every", "0"], env=env)
        self.processes.append(director)
        env["DIRECTOR_ADDR"] = director.rpc
        self.note(f"director up at {director.rpc} (pid {director.pid})")
        labels = [f"worker-{i}" for i in range(1, self.worker_count + 1)]
        started = await asyncio.gather(*(self._start_worker(label, env) for label in labels), return_exceptions=True)
        for result in started:
            if isinstance(result, BaseException):
                raise result
        self.note(f"{len(labels)} workers up: " + ", ".join(f"{w} (pid {p.pid})" for w, p in self.workers.items()))

        tls = TlsConfig(ca_file=certs / "ca.pem", cert_file=certs / "server.pem", key_file=certs / "server.key")
        server = RpcServer(RpcConfig(transport=self.transport, tls=attrs.evolve(tls, require_client_cert=True)))
        await server.start("127.0.0.1:0")
        cluster = Cluster(server, ClusterConfig(node_id="demo-client", tags={"role": "client"}, seeds=[director.rpc],
                                                gossip_keys=(key,)))
        subscription = cluster.subscribe()
        registries: dict[str, WorkerRegistry] = self.registries
        clients: dict[str, ClusterClient] = self.clients
        tasks: list[asyncio.Task[Any]] = []
        try:
            await cluster.start()
            self.cluster = cluster
            tasks.append(asyncio.ensure_future(self._follow(subscription)))
            for strategy in self.strategies:
                registry = registries[strategy] = WorkerRegistry(cluster, strategy=strategy, filter="role=worker",
                                                                 plugins=server.plugins)
                await registry.start()
                clients[strategy] = ClusterClient(registry, RpcConfig(transport=self.transport, tls=tls), cluster=cluster, plugins=server.plugins,
                                                  idempotent=["infer"])
                await clients[strategy].start()
            everyone = lambda: all(len(r.workers()) == self.worker_count for r in registries.values())  # noqa: E731
            if not await self.until(everyone, time.monotonic() + 20):
                raise RuntimeError(f"the client node saw {len(next(iter(registries.values())).workers())} of "
                                   f"{self.worker_count} workers after 20 s")
            self.note(f"client node joined; driving ~{self.rate:g} infer calls/s through {', '.join(self.strategies)}")
            load_started = time.monotonic()
            self.load_end = load_started + self.duration
            loads = [asyncio.ensure_future(self._load(i)) for i in range(self.concurrency)]
            tasks.extend(loads)
            view = asyncio.ensure_future(self._view())
            tasks.append(view)
            if self.duration >= MIN_KILL_DURATION:
                await self._scenario(load_started, labels, env)
            await self._sleep_until(self.load_end)
            self.stopping = True
            await asyncio.gather(*loads)
            view.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await view
            self._draw()
        finally:
            self.stopping = True
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for client in clients.values():
                await client.close()
            for registry in registries.values():
                await registry.close()
            with contextlib.suppress(Exception):
                await cluster.leave(timeout=1.0)
            await cluster.close()
            await server.stop(grace=0.5)
        return self._summary()

    async def _start_worker(self, label: str, env: dict[str, str], listen: str = "127.0.0.1:0",
                            gossip: str = "127.0.0.1:0") -> ExampleProcess:
        process = await ExampleProcess.launch(
            "worker", ["--label", label, "--listen", listen, "--gossip", gossip, "--infer-ms", "4"], env=env
        )
        self.processes.append(process)
        self.workers[label] = process
        return process

    async def _follow(self, subscription: Any) -> None:
        async for event in subscription:
            member = getattr(event, "member", None)
            now = time.monotonic()
            self.member_events.append((now, event))
            if member is not None and member.id == self.victim:
                if event.kind == "failed" and self.killed_at is not None and self.failed_at is None:
                    self.failed_at = now
                    self.note(f"client node: {member.id} failed, {now - self.killed_at:.2f} s after SIGKILL; "
                              "out of rotation, calls fail over")
                elif event.kind == "suspect" and self.failed_at is None and self.killed_at is not None:
                    self.note(f"client node: {member.id} suspect ({now - self.killed_at:.2f} s after SIGKILL)")
                elif event.kind in ("joined", "recovered") and self.restarting and self.rejoined_at is None:
                    self.rejoined_at = now
                    when = "while it was starting" if self.restarted_ready is None else (
                        f"{now - self.restarted_ready:.2f} s after its restart was ready")
                    self.note(f"client node: {member.id} {event.kind} (incarnation {member.incarnation}), {when}")
            self.changed.set()

    async def _load(self, index: int) -> None:
        """One of ``concurrency`` callers; together they pace to ``rate`` calls per second."""
        interval = self.concurrency / self.rate
        next_start = time.monotonic() + index * interval / self.concurrency
        cycle = itertools.cycle(self.strategies[index % len(self.strategies):] + self.strategies[: index % len(self.strategies)])
        for call_number in itertools.count():
            if self.stopping or time.monotonic() >= self.load_end:
                return
            await self._sleep_until(next_start)
            next_start += interval
            strategy = next(cycle)
            begun = time.monotonic()
            try:
                reply = await self.clients[strategy].call_worker(
                    "infer", {"prompt": f"call {index}-{call_number}"}, timeout=20.0
                )
            except Exception as error:  # every failure counts, whatever its kind
                self.traffic.record_failure(error)
                self.note(f"call failed: {type(error).__name__}: {error}")
                continue
            now = time.monotonic()
            self.traffic.record_ok(strategy, reply, now - begun, now)
            self.changed.set()

    async def _scenario(self, load_started: float, labels: list[str], env: dict[str, str]) -> None:
        """SIGKILL one worker, wait for detection, restart it, wait for its first answer."""
        self.victim = labels[1] if len(labels) > 1 else labels[0]
        await self._sleep_until(load_started + 0.3 * self.duration)
        process = self.workers[self.victim]
        self.note(f"SIGKILL {self.victim} (pid {process.pid})")
        self.killed_at = time.monotonic()
        await process.kill()
        self.changed.set()
        await self.until(lambda: self.failed_at is not None, self.load_end - 5)
        restart_at = max(load_started + 0.55 * self.duration, (self.failed_at or time.monotonic()) + 2.0)
        await self._sleep_until(min(restart_at, self.load_end - 5))
        self.note(f"restarting {self.victim} on the same addresses ({process.rpc}, gossip {process.gossip})")
        self.restarting = True
        restarted = await self._start_worker(self.victim, env, listen=process.rpc, gossip=process.gossip)
        self.restarted_ready = time.monotonic()
        self.restarted_pid = restarted.pid
        self.note(f"{self.victim} ready again (pid {restarted.pid})")
        key = (self.victim, restarted.pid)
        if await self.until(lambda: key in self.traffic.first_answer, self.load_end):
            self.note(f"{self.victim} answers again, {self.traffic.first_answer[key] - self.restarted_ready:.2f} s after ready")

    # -- the view ------------------------------------------------------------------

    async def _view(self) -> None:
        period = 0.25 if self.live else 1.0
        while True:
            self._draw()
            await asyncio.sleep(period)

    def _member_rows(self) -> list[list[str]]:
        rows = [["MEMBER", "TAGS", "STATE", "HEALTH", "CALLS", "IN-FLIGHT", "ERRORS"]]
        stats: dict[str, tuple[int, int]] = {}
        for registry in self.registries.values():
            for worker in registry.workers():
                s = registry.stats(worker.node_id)
                in_flight, errors = stats.get(worker.node_id, (0, 0))
                stats[worker.node_id] = (in_flight + s.in_flight, errors + s.recent_errors)
        for member in sorted(self.cluster.members(), key=lambda m: m.id):
            tags = ",".join(f"{k}={v}" for k, v in sorted(member.tags.items()) if not k.startswith("rpcnet."))
            health = member.tags.get("rpcnet.health", "-")
            calls = str(self.traffic.per_worker.get(member.id, 0)) if member.tags.get("role") == "worker" else ""
            in_flight, errors = stats.get(member.id, (None, None))
            rows.append([member.id, tags or "-", member.state.value, health, calls,
                         "" if in_flight is None else str(in_flight), "" if errors is None else str(errors)])
        return rows

    def _frame(self) -> list[str]:
        now = time.monotonic()
        window = self.traffic.window(now)
        header = (f"rpcnet demo  t={self.elapsed(now):.1f}s  calls ok {self.traffic.ok}  failed {self.traffic.failed}  "
                  f"p50 {_ms(_percentile(window, 0.5))}  p99 {_ms(_percentile(window, 0.99))}  (last 2 s)")
        rows = self._member_rows()
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = [header]
        lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        lines.append("  ERRORS: worker attempts that failed in the last 10 s (each retried on another worker)")
        lines += [f"  [{t:5.1f}s] {text}" for t, text in self.timeline[-8:]]
        return lines

    def _draw(self) -> None:
        if self.cluster is None:
            return
        if self.live:
            frame = self._frame()
            prefix = f"\x1b[{self._frame_height}F\x1b[J" if self._frame_height else ""
            self.out.write(prefix + "\n".join(frame) + "\n")
            self._frame_height = len(frame)
        else:
            now = time.monotonic()
            window = self.traffic.window(now)
            workers = []
            for row in self._member_rows()[1:]:
                if "role=worker" in row[1].split(","):
                    workers.append(f"{row[0]} {row[2]} {row[4]}" + (f"/{row[5]}" if row[5] else ""))
            self.out.write(
                f"[{self.elapsed(now):5.1f}s] ok {self.traffic.ok} failed {self.traffic.failed} "
                f"p50 {_ms(_percentile(window, 0.5))} p99 {_ms(_percentile(window, 0.99))} | "
                f"worker state calls/in-flight: {', '.join(workers)}\n"
            )
        self.out.flush()

    def _summary(self) -> DemoSummary:
        def since(at: float | None, origin: float | None) -> float | None:
            return None if at is None or origin is None else at - origin

        first = None
        if self.victim is not None and self.restarted_pid is not None:
            first = self.traffic.first_answer.get((self.victim, self.restarted_pid))
        percentiles = {}
        for strategy, values in self.traffic.latencies.items():
            ordered = sorted(values)
            percentiles[strategy] = (_percentile(ordered, 0.5), _percentile(ordered, 0.99))
        clients = self.clients
        return DemoSummary(
            duration=self.elapsed(),
            kill=self.duration >= MIN_KILL_DURATION,
            strategies=self.strategies,
            ok=self.traffic.ok,
            failed=self.traffic.failed,
            errors=list(self.traffic.errors),
            victim=self.victim,
            detection=since(self.failed_at, self.killed_at),
            rejoin_event=since(self.rejoined_at, self.restarted_ready),
            back_in_rotation=since(first, self.restarted_ready),
            per_strategy={s: dict(sorted(c.items())) for s, c in self.traffic.per_strategy.items()},
            percentiles=percentiles,
            retries=sum(c.stats.retries for c in clients.values()),
            ejections=sum(c.stats.ejections for c in clients.values()),
        )

    async def stop_processes(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.processes), return_exceptions=True)


async def run_demo(
    *,
    duration: float = 40.0,
    strategies: Sequence[str] = STRATEGIES,
    workers: int = 3,
    rate: float = 150.0,
    concurrency: int = 12,
    out: TextIO | None = None,
    live: bool | None = None,
    transport: str = "quic",
) -> DemoSummary:
    """Run the demo; every child process is stopped before this returns or raises."""
    if duration < 5:
        raise ValueError(f"the demo needs at least 5 s of traffic (and {MIN_KILL_DURATION:g} s to kill, detect, restart "
                         f"and rejoin a worker); got --duration {duration:g}")
    if workers < 2:
        raise ValueError(f"the demo needs at least 2 workers so calls can fail over; got --workers {workers}")
    if rate <= 0 or concurrency < 1:
        raise ValueError("rate must be > 0 and concurrency >= 1")
    out = out or sys.stdout
    live = out.isatty() if live is None else live
    demo = _Demo(duration=duration, strategies=strategies, workers=workers, rate=rate, concurrency=concurrency,
                 out=out, live=live, transport=transport)
    with tempfile.TemporaryDirectory(prefix="rpcnet-demo-") as workdir:
        try:
            return await demo.run(Path(workdir))
        finally:
            await asyncio.shield(demo.stop_processes())


def main(
    *, duration: float = 40.0, strategy: str = "all", workers: int = 3, rate: float = 150.0, transport: str = "quic"
) -> int:
    """The ``rpcnet demo`` command: run, print the summary, return the exit status."""
    strategies = STRATEGIES if strategy == "all" else (strategy,)
    if strategy != "all":
        from ..plugins import make_plugin_manager

        make_plugin_manager().strategy("load-balancer", strategy)  # an unknown name raises, listing the known ones
    if transport != "quic":
        from .plugins import make_plugin_manager

        make_plugin_manager().strategy("transport", transport)

    terminated = []

    async def run() -> DemoSummary:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def terminate() -> None:
            terminated.append(signal.SIGTERM)
            task.cancel()

        loop.add_signal_handler(signal.SIGTERM, terminate)
        return await run_demo(duration=duration, strategies=strategies, workers=workers, rate=rate, transport=transport)

    try:
        summary = asyncio.run(run())
    except (KeyboardInterrupt, asyncio.CancelledError):
        sys.stderr.write("demo interrupted; every child process was stopped\n")
        return 128 + (signal.SIGTERM if terminated else signal.SIGINT)
    print(summary.render(), flush=True)
    return summary.exit_code
