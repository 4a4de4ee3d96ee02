"""The client's connection loop, in asyncio: connect (through the `Dialer`),
run a `Link` over a fresh `ClientSession`, act on how it ended (the
`syncclient.endings` table), back off, again, until closed.  Also sends the
APPLIED reports the client was given, at the pace `AppliedReports` sets."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from runtime.ratelimit import RateLimitedLog
from syncclient.addresses import ReconnectBackoff
from syncclient.applied_reports import AppliedReports, server_interval
from syncclient.client_stats import ClientStats
from syncclient.dialer import Dialer, Target
from syncclient.endings import RULES, classify
from syncclient.link import Link
from syncclient.replica import Change, Replica
from syncclient.session import ClientSession, Committed, StalePolicy
from syncproto import DatastoreStatus, Limits

log = logging.getLogger("syncclient.client")

# Called after each applied snapshot, delta or progress (no changes): (changes, revision).
Listener = Callable[[Sequence[Change], int], None]


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """What each session is made with: protocol limits, the capabilities
    its hello advertises, the largest snapshot accepted, the read tick."""

    limits: Limits
    caps: frozenset[str]
    max_snapshot_bytes: int
    tick: float


class Connector:
    """Keeps `replica` in sync through successive connections.  `run()`
    until cancelled; `closed` set means it must not reconnect."""

    def __init__(
        self,
        replica: Replica,
        *,
        node: str,
        dialer: Dialer,
        backoff: ReconnectBackoff,
        stale: StalePolicy,
        options: SessionOptions,
        reports: AppliedReports,
        stats: ClientStats,
    ) -> None:
        self._replica = replica
        self.node = node
        self._dialer = dialer
        self.backoff = backoff
        self._stale = stale
        self._options = options
        self.reports = reports
        self._applied_default = reports.interval
        self._applied_timer: asyncio.TimerHandle | None = None
        self.stats = stats
        self.link: Link | None = None
        self.server = ""
        self.listeners: list[Listener] = []
        self.in_sync = asyncio.Event()
        self.closed = False
        self._logged_upstream: DatastoreStatus | None = None
        self._rl = RateLimitedLog(log)

    def stop_reports(self) -> None:
        """Cancel a pending APPLIED report (the client is closing)."""
        if self._applied_timer is not None:
            self._applied_timer.cancel()
            self._applied_timer = None

    def schedule_applied(self) -> None:
        """Send the pending APPLIED report when its interval allows."""
        if self._applied_timer is not None:
            return
        loop = asyncio.get_running_loop()
        delay = self.reports.due(loop.time())
        if delay is not None:
            self._applied_timer = loop.call_later(delay, self._send_applied)

    def _send_applied(self) -> None:
        self._applied_timer = None
        revision = self.reports.pending()
        if revision is not None and self.link is not None and self.link.send_applied(revision):
            self.reports.sent(revision, asyncio.get_running_loop().time())
            self.stats.applied_reports += 1

    async def run(self) -> None:
        """Connect, sync, reconnect, until cancelled or closed."""
        loop = asyncio.get_running_loop()
        while not self.closed:
            host, port = self._dialer.next()
            link: Link | None = None
            try:
                ip, reader, writer = await self._dialer.connect(host, port)
                link = self.link = self._new_link(host, ip, port, reader, writer)
                self.stats.connects += 1
                await link.run()
            except Exception as exc:
                self._ended(exc, link.server if link is not None else f"{host}:{port}")
            finally:
                self.in_sync.clear()
                self._replica.abandon_snapshot()
                self.link = None
                if link is not None:
                    await link.close()
            since = link.session.in_sync_since if link is not None else None
            delay = self.backoff.after_connection(since, loop.time())
            if not self.closed:
                await asyncio.sleep(delay)

    def _ended(self, exc: Exception, where: str) -> None:
        """Count, log and act on why a connection ended (syncclient.endings)."""
        rule = RULES[classify(exc)]
        if rule.counter is not None:
            setattr(self.stats, rule.counter, getattr(self.stats, rule.counter) + 1)
        message = rule.message.format(node=self.node, where=where, exc=exc)
        if rule.traceback:
            log.error(message, exc_info=exc)
        else:
            self._rl.log(rule.level, rule.counter or "timeout", "%s", message)
        if rule.forget_revision:
            self._replica.forget_revision()

    def _new_link(
        self,
        host: str,
        ip: str,
        port: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> Link:
        self.server = f"{host}:{port}" if ip == host else f"{host}({ip}):{port}"
        self._logged_upstream = None
        self.reports.connected()  # a new replica has been told nothing
        session = ClientSession(
            self._replica,
            node=self.node,
            now=asyncio.get_running_loop().time(),
            limits=self._options.limits,
            stale=self._stale,
            max_snapshot_bytes=self._options.max_snapshot_bytes,
            on_committed=self._deliver,
            stats=self.stats,
            caps=self._options.caps,
        )
        find = functools.partial(
            self._dialer.find_in_sync,
            (ip, port),
            node=self.node,
            revision=self._replica.revision,
            digest=self._replica.digest,
            limits=self._options.limits,
        )
        return Link(
            session,
            reader,
            writer,
            server=self.server,
            stats=self.stats,
            tick=self._options.tick,
            on_received=self._received,
            find_in_sync=find,
            on_probed=functools.partial(self._decide_move, ip),
        )

    def _received(self, session: ClientSession) -> None:
        self._check_sync(session)
        if session.connected:
            self.reports.interval = server_interval(
                session.applied_interval_ms, self._applied_default
            )
            if self.reports.pending() is not None:
                self.schedule_applied()

    def _decide_move(self, ip: str, session: ClientSession, found: Target | None) -> None:
        """Leave for `found` (the session raises StaleUpstream), or stay."""
        if found is None:
            self.stats.stale_stays += 1
            self._rl.log(
                logging.WARNING,
                "stale-stay",
                "%s: %s has lost the datastore, and no other replica is in sync: staying",
                self.node,
                self.server,
            )
            session.stay()
            return
        self._dialer.move_to(found, ip)
        session.leave()

    def _deliver(self, committed: Committed) -> None:
        """The session committed changes: mark sync, tell the listeners."""
        if self.link is not None:
            self._check_sync(self.link.session)
        for listener in self.listeners:
            try:
                listener(committed.changes, committed.revision)
            except Exception:
                log.exception("%s: listener failed", self.node)

    def _check_sync(self, session: ClientSession) -> None:
        if session.in_sync and not self.in_sync.is_set():
            self.in_sync.set()
            hello = session.core.server_hello
            log.info(
                "%s: in sync with %s at revision %d (%s)",
                self.node,
                self.server,
                self._replica.revision,
                hello.sync.value if hello is not None else "?",
            )
        status = session.upstream
        if status is not None and status is not self._logged_upstream:
            log.info("%s: %s reports datastore %s", self.node, self.server, status.value)
        self._logged_upstream = status
