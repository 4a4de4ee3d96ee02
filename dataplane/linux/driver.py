"""The `linux` dataplane driver: routes and the VXLAN device over netlink,
workload interfaces through /proc/sys, ACLs in an nftables table of our own.

It keeps the desired tables as the memory driver does (the agent's /status
and /dump read them), and the nftables table as a model (`nft_model`).
The first batch, and every `resync`, reads what the kernel holds and writes
only the difference: an agent restarting on a correct node changes nothing,
and one wrong route or rule is put back alone.  Later batches write only
what they change: per batch, netlink calls for its routes and one nftables
transaction for its sets, chains and dispatch entries.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
from collections import Counter
from dataclasses import dataclass, field

from dataplane.batch import (
    Action,
    ChainKey,
    DataplaneBatch,
    EndpointInfo,
    EndpointKind,
    RouteKind,
    Rule,
)
from dataplane.errors import DataplaneError, KernelUnavailable
from dataplane.host_settings import ConfiguredSettings, HostSettings
from dataplane.linux import nft_model as M
from dataplane.linux import nft_render as R
from dataplane.linux.ipip import Ipip
from dataplane.linux.kernel_thread import KernelThread
from dataplane.linux.links import (
    Sysctl,
    configure_host,
    configure_workload_interface,
)
from dataplane.linux.nft_counters import read_counters
from dataplane.linux.nft_eval import Table, table_of
from dataplane.linux.nft_isolate import commit_isolated
from dataplane.linux.nft_lib import Nft
from dataplane.linux.routes import RouteTable
from dataplane.linux.vxlan import Vxlan
from dataplane.memory import MemoryDataplane
from dataplane.ownership import Ownership
from dataplane.policy_counters import CounterKey, Reading
from runtime.ratelimit import RateLimitedLog

log = logging.getLogger(__name__)
IFF_UP = 1
RTMGRP_LINK = 1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100


@dataclass
class _Affected:
    chains: set[str] = field(default_factory=set)
    sets: set[str] = field(default_factory=set)
    counters: set[str] = field(default_factory=set)
    maps: bool = False


def _restrict(m: M.NftModel, a: _Affected) -> M.NftModel:
    out = M.NftModel(table=m.table)
    out.chains = {n: m.chains[n] for n in a.chains if n in m.chains}
    out.sets = {n: m.sets[n] for n in a.sets if n in m.sets}
    out.counters = {n: m.counters[n] for n in a.counters if n in m.counters}
    if a.maps:
        out.maps = {k: dict(v) for k, v in m.maps.items()}
    return out


def _by_address(endpoints: dict[str, EndpointInfo]) -> bool:
    """Whether a host endpoint is known only by its expected addresses."""
    return any(i.kind is EndpointKind.HOST and not i.interface for i in endpoints.values())


class LinuxDataplane(MemoryDataplane):
    """Programs the network namespace it runs in, or `netns` (a path such as
    /run/netns/node-1) for its kernel work only.  Needs root (CAP_NET_ADMIN)
    and libnftables; raises KernelUnavailable otherwise."""

    def __init__(
        self,
        netns: str | None = None,
        node: str = "",
        settings: HostSettings | None = None,
        delay: float = 0.0,
        ownership: Ownership | None = None,
        sysctl_root: str = "/proc/sys",
    ) -> None:
        self.ownership = ownership or Ownership()
        super().__init__(delay, self.ownership)
        self.node = node  # to tell our VXLAN endpoint from the peers'

        self.kernel_stats: Counter[str] = Counter()
        self._rl = RateLimitedLog(log)
        # Set by the operator (flags, environment): wins over FelixConfiguration.
        self._explicit = settings or HostSettings()
        self._in_force = self._explicit
        self._desired = M.base_model(
            self._in_force.failsafes(),
            self.ownership,
            self._in_force.to_host(),
            nat_excludes_hosts=self._in_force.nat_excludes_hosts(),
        )
        # Chains that could not be rendered exactly (they drop instead), by key.
        self._unrenderable: dict[str, str] = {}
        # Objects the kernel refused when programmed alone, by `set|chain <name>`.
        self._kernel_refused: dict[str, str] = {}
        # The memory tables change on the caller's thread; the kernel thread
        # reads them on its own when an address moves (host endpoints by IP).
        self._tables_lock = threading.Lock()
        self._addr_ifaces: dict[str, str] = {}  # address -> interface holding it
        self._programmed: M.NftModel | None = None  # None: read the kernel first
        self._unconfigured: set[str] = set()  # workload interfaces not there yet
        self._closed = False
        self._sysctl_root = sysctl_root
        self._thread = KernelThread(netns)
        self._thread.call(self._open)

    def _open(self) -> None:
        from pyroute2 import IPRoute  # imported here: only this driver needs it

        self._ipr = IPRoute()
        self._nft = Nft()
        self._sysctl = Sysctl(self._sysctl_root)
        if not self._sysctl.writable():
            raise KernelUnavailable(
                f"{self._sysctl_root}/net is not writable (a container's /proc/sys is"
                " read-only: mount the host's /proc/sys/net writable and pass --sysctl-root)"
            )
        self._routes = RouteTable(self._ipr)
        self._vxlan = Vxlan(self._ipr, self.node, self._in_force.vxlan())
        # Set when the VXLAN parameters changed: the batch ends with a full
        # resync (a new VNI or port replaces the devices, and with them the
        # routes through them).
        self._vxlan_changed = False
        self._ipip = Ipip(self._ipr)
        try:
            configure_host(self._sysctl)
        except DataplaneError as exc:
            # Root may write the file but the kernel asks CAP_NET_ADMIN.
            raise KernelUnavailable(f"{exc} (the agent needs CAP_NET_ADMIN)") from exc
        # Started from the kernel thread, so it watches the same namespace;
        # its netlink socket is its own (pyroute2 sockets stay in one thread).
        ready = threading.Event()
        threading.Thread(
            target=self._watch_links, args=(ready,), name="dataplane-links", daemon=True
        ).start()
        ready.wait(10)

    def _watch_links(self, ready: threading.Event) -> None:
        """A new interface may be what a pending route or an unconfigured
        workload waits for: program them at once, not at the next resync."""
        from pyroute2 import IPRoute

        self._links = IPRoute()
        self._links.bind(groups=RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR)
        ready.set()
        while not self._closed:
            try:
                events = self._links.get()
            except Exception:
                return  # the socket was closed: the driver is closing
            kinds = {e.get("event") for e in events}
            if self._closed:
                return
            try:
                if "RTM_NEWLINK" in kinds:
                    self._thread.call(self._on_new_link)
                if kinds & {"RTM_NEWADDR", "RTM_DELADDR", "RTM_NEWLINK", "RTM_DELLINK"}:
                    self._thread.call(self._on_address_change)
            except Exception:  # the kernel thread has stopped
                return

    def _on_new_link(self) -> None:
        if not self._unconfigured and not self._routes.pending:
            return
        try:
            self._configure_interfaces()
            self._routes.retry_pending()
            self._take_route_failures()
        except Exception as exc:  # as in _program: counted, never raised
            self.kernel_stats["errors"] += 1
            self._rl.log(logging.ERROR, "link", "programming a new interface failed: %s", exc)

    def _on_address_change(self) -> None:
        """A host endpoint given by its expected IPs follows its address to
        whichever interface holds it now."""
        with self._tables_lock:
            if not _by_address(self.endpoints):
                return
            chains, endpoints = list(self.chains), dict(self.endpoints)
        before = dict(self._addr_ifaces)
        try:
            self._refresh_addresses()
            if self._addr_ifaces == before or self._programmed is None:
                return
            a = _Affected(maps=True)
            a.chains = M.set_dispatch(
                self._desired, chains, endpoints, self._host_ifaces, self.ownership
            )
            self._write(a)  # raises if it cannot even isolate a refusal
        except Exception as exc:  # as in _program: counted, never raised
            self.kernel_stats["errors"] += 1
            self._programmed = None
            self._rl.log(logging.ERROR, "addr", "following a host address failed: %s", exc)

    def _refresh_addresses(self) -> None:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in self._ipr.get_links()}
        found: dict[str, str] = {}
        for a in self._ipr.get_addr():
            addr = a.get_attr("IFA_LOCAL") or a.get_attr("IFA_ADDRESS")
            if addr and a["index"] in names:
                found[str(ipaddress.ip_address(addr))] = names[a["index"]]
        self._addr_ifaces = found

    def _host_ifaces(self, info: EndpointInfo) -> list[str]:
        if info.interface:
            return [info.interface]
        found = {self._addr_ifaces.get(str(ipaddress.ip_address(a))) for a in info.addresses}
        return sorted(i for i in found if i)

    # -- the Dataplane interface -------------------------------------------------

    def apply(self, batch: DataplaneBatch) -> None:
        """Record the batch, then program it (the first time: the whole
        difference from what the kernel holds)."""
        self.stall()
        with self._tables_lock:
            admitted = self.record(batch)
        self._thread.call(lambda: self._program(admitted))

    def resync(self) -> dict[str, int]:
        """Compare the kernel with the desired tables and repair every
        difference (routes, interface settings, the nftables table).  Returns
        what it had to change."""
        return self._thread.call(self._resync_kernel)

    def close(self) -> None:
        """Release the netlink socket and the nftables context; the kernel
        state stays (a restarted agent takes it over).  Idempotent."""
        if self._closed:
            return
        self._closed = True

        def shut() -> None:
            self._nft.close()
            self._ipr.close()
            self._links.close()

        self._thread.call(shut)
        self._thread.close()

    # -- the desired nftables model ------------------------------------------------

    def _update_model(self, batch: DataplaneBatch) -> _Affected:
        m, a = self._desired, _Affected()
        for sid in batch.ipsets_delete:
            m.sets.pop(R.set_name(sid), None)
            a.sets.add(R.set_name(sid))
        unsafe: list[str] = []
        for sid in batch.ipsets_create:
            a.sets.add(R.set_name(sid))
            unsafe += M.set_set(m, sid, self.ipsets.get(sid, set()))
        # Members change by difference: a set may hold many thousands.
        for sid in batch.ipset_add.keys() | batch.ipset_remove.keys():
            if sid in self.ipsets and sid not in batch.ipsets_create:
                a.sets.add(R.set_name(sid))
                unsafe += M.update_set(
                    m, sid, batch.ipset_add.get(sid, ()), batch.ipset_remove.get(sid, ())
                )
        if unsafe:
            self.kernel_stats["unsafe_members"] += len(unsafe)
            self._rl.log(logging.ERROR, "member", "IP set members left out: %s", unsafe[0])
        for ck in batch.chains_del | batch.chains_set.keys():
            self._replace_chain(m, ck, batch.chains_set.get(ck), a)
        if batch.chains_set or batch.chains_del or batch.endpoints_set or batch.endpoints_del:
            if _by_address(self.endpoints):
                self._refresh_addresses()
            a.chains |= M.set_dispatch(
                m, self.chains, self.endpoints, self._host_ifaces, self.ownership
            )
            a.maps = True
        if batch.endpoints_set or batch.endpoints_del:
            a.sets |= M.set_sources(m, self.endpoints, self.ownership)
        if batch.pools_set or batch.pools_del:
            a.sets |= self._set_pools(m)
        if batch.hosts_set or batch.hosts_del:
            a.sets |= self._set_hosts(m)
        if batch.configured is not None:
            a.chains |= self._reconfigure(m, batch.configured, a)
        return a

    def _reconfigure(self, m: M.NftModel, configured: ConfiguredSettings, a: _Affected) -> set[str]:
        """Apply a changed FelixConfiguration: the base chains rebuilt with
        the settings now in force, in the batch's one transaction.  Returns
        the chains rewritten (none if nothing in force changed)."""
        # Fixed keys, one line each: whoever may write FelixConfiguration
        # must not be able to flood the log or grow the limiter's table.
        for level, key, text, items in (
            (
                logging.WARNING,
                "fc-not-applied",
                "fields this agent does not apply",
                configured.not_applied,
            ),
            (
                logging.ERROR,
                "fc-errors",
                "fields ignored (the value below stays)",
                configured.errors,
            ),
        ):
            if items:
                self._rl.log(level, key, "FelixConfiguration %s: %s", text, "; ".join(items))
        in_force = self._explicit.over(configured.settings)
        before, self._in_force = self._in_force, in_force
        if in_force != before:
            log.info("settings in force: %s", in_force.to_dict())
        changed: set[str] = set()
        if in_force.log_template() != before.log_template():
            self._rerender_logging(m, a)
        if in_force.vxlan() != before.vxlan():
            self._vxlan.params = in_force.vxlan()
            self._vxlan_changed = True
        if not in_force.kernel_rules_differ(before):
            return changed
        return changed | M.set_base_chains(
            m,
            in_force.failsafes(),
            self.ownership,
            in_force.to_host(),
            nat_excludes_hosts=in_force.nat_excludes_hosts(),
        )

    def _rerender_logging(self, m: M.NftModel, a: _Affected) -> None:
        """The endpoint chains with a Log rule, rendered again with the
        prefix now in force (recorded in `a`)."""
        for ck, rules in self.chains.items():
            if any(r.action is Action.LOG for r in rules):
                self._replace_chain(m, ck, rules, a)

    def _replace_chain(
        self, m: M.NftModel, ck: ChainKey, rules: tuple[Rule, ...] | None, a: _Affected
    ) -> None:
        """Remove endpoint chain `ck` (and its group chains) from the model
        and, unless `rules` is None, render it again with the settings in
        force; records in `a` the chains and counters before and after."""
        a.chains |= M.chain_names(m, ck)
        a.counters |= M.chain_counters_in(m, ck)
        M.remove_chain(m, ck)
        self._unrenderable.pop(f"chain {ck}", None)
        if rules is not None:
            why = M.set_chain(m, ck, rules, self._in_force.log_template())
            if why is not None:
                self._unrenderable[f"chain {ck}"] = why
                self._rl.log(logging.ERROR, "chain", "chain %s drops all: %s", ck, why)
        a.chains |= M.chain_names(m, ck)
        a.counters |= M.chain_counters_in(m, ck)

    @property
    def in_force(self) -> HostSettings:
        """The node-wide settings in force (flags over FelixConfiguration
        over defaults)."""
        return self._in_force

    def configuration(self) -> dict[str, object]:
        """For /status: the settings in force, and the datastore's fields
        not applied or not readable."""
        return {"in_force": self._in_force.to_dict(), **self.configured.to_dict()}

    def _set_hosts(self, m: M.NftModel) -> set[str]:
        names, problems = M.set_hosts(m, (a for addrs in self.hosts.values() for a in addrs))
        for why in problems:  # the calculation only produces canonical addresses: a bug
            self.kernel_stats["unsafe_members"] += 1
            self._rl.log(logging.ERROR, "host", "node address left out of NAT: %s", why)
        return names

    def _set_pools(self, m: M.NftModel) -> set[str]:
        names, problems = M.set_pools(m, self.pools.values())
        for why in problems:  # the calculation only produces canonical CIDRs: a bug
            self.kernel_stats["unsafe_members"] += 1
            self._rl.log(logging.ERROR, "pool", "IP pool left out of NAT: %s", why)
        return names

    @property
    def refused(self) -> dict[str, str]:
        """What the agent would not program, with the reason: objects the
        ownership gate refused, chains that could not be rendered exactly
        (they drop instead), what the kernel refused.  Read on the kernel
        thread, which changes the latter while it follows links."""
        return self._thread.call(self._refused_now)

    def _refused_now(self) -> dict[str, str]:
        with self._tables_lock:
            out = dict(self.gate.refused)
        out.update(self._unrenderable)
        out.update(self._kernel_refused)
        out.update((f"route {d}", why) for d, why in self._routes.refused.items())
        return out

    # -- on the kernel thread ------------------------------------------------------

    def _program(self, batch: DataplaneBatch) -> None:
        try:
            affected = self._update_model(batch)
        except Exception as exc:  # netlink failing while resolving host addresses
            self.kernel_stats["errors"] += 1
            self._programmed = None
            self._rl.log(logging.ERROR, "model", "dataplane model update failed: %s", exc)
        if self._programmed is None:
            self._resync_kernel()
            return
        try:
            for info in batch.endpoints_set.values():
                if info.kind is EndpointKind.WORKLOAD and info.interface:
                    self._unconfigured.add(info.interface)
            self._configure_interfaces()
            if batch.vteps_set or batch.vteps_del:
                self._vxlan.update(self.vteps, batch.vteps_set.keys() | batch.vteps_del)
            for dst in batch.routes_del:
                self._routes.delete(dst)
            if any(r.kind is RouteKind.IPIP for r in batch.routes_set.values()):
                self._ipip.ensure()
            for route in batch.routes_set.values():
                self._routes.try_set(route)
            if batch.endpoints_set or batch.vteps_set:
                # A device a pending route waits for may be there now; other
                # pending routes (an unreachable next hop) wait for the resync.
                self._routes.retry_pending()
            self._write(affected)
            self._take_route_failures()
            if self._vxlan_changed:
                self._vxlan_changed = False
                self._resync_kernel()
        except Exception as exc:  # a kernel refusal, or netlink failing under us
            # The kernel state is now unknown: read it again on the next batch.
            # Never raised to the agent: its connection and calculation go on.
            self.kernel_stats["errors"] += 1
            self._programmed = None
            self._rl.log(logging.ERROR, "apply", "dataplane update failed, will resync: %s", exc)

    def _write(self, affected: _Affected) -> None:
        """One nftables transaction for what changed in the model."""
        assert self._programmed is not None
        old = _restrict(self._programmed, affected)
        new = _restrict(self._desired, affected)
        held, written = self._commit(old, new)
        if written:
            self.kernel_stats["nft_statements"] += written
            self.kernel_stats["nft_transactions"] += 1
        self._adopt(affected, held)

    def _commit(self, old: M.NftModel, new: M.NftModel) -> tuple[M.NftModel, int]:
        """Turn the kernel's `old` into `new`: one transaction, or, if the
        kernel refuses it, object by object with the refused ones left out
        (`nft_isolate`).  Returns what the kernel holds and the statements
        written; raises DataplaneError if it cannot isolate the refusal."""
        script = M.diff(old, new)
        if not script:
            return new, 0
        names = {f"set {n}" for n in new.sets} | {f"chain {n}" for n in new.chains}
        try:
            self._nft.run("\n".join(script) + "\n")
        except DataplaneError as exc:
            self._rl.log(logging.ERROR, "isolate", "%s; retrying object by object", exc)
            held, refused, written = commit_isolated(self._run, old, new)
        else:
            held, refused, written = new, {}, len(script)
        for name in names:
            self._kernel_refused.pop(name, None)
        for name, why in refused.items():
            self._kernel_refused[name] = why
            self.kernel_stats["kernel_refusals"] += 1
            self._rl.log(logging.ERROR, "refused", "the kernel refused %s: %s", name, why)
        return held, written

    def _run(self, script: list[str]) -> None:
        self._nft.run("\n".join(script) + "\n")

    def _take_route_failures(self) -> None:
        failures, self._routes.failures = self._routes.failures, []
        if failures:
            self.kernel_stats["errors"] += len(failures)
            self._rl.log(
                logging.ERROR, "route", "%d route(s) refused, e.g. %s", len(failures), failures[0]
            )

    def _adopt(self, a: _Affected, d: M.NftModel) -> None:
        """Record that the kernel now holds `d` for the affected objects."""
        p = self._programmed
        assert p is not None
        for n in a.chains:
            if n in d.chains:
                p.chains[n] = d.chains[n]
            else:
                p.chains.pop(n, None)
        for n in a.sets:
            if n in d.sets:
                p.sets[n] = d.sets[n]
            else:
                p.sets.pop(n, None)
        for n in a.counters:
            if n in d.counters:
                p.counters[n] = d.counters[n]
            else:
                p.counters.pop(n, None)
        if a.maps:
            p.maps = {k: dict(v) for k, v in d.maps.items()}

    def _configure_interfaces(self) -> None:
        """Bring each new workload interface up and set what it needs; one
        that does not exist yet is tried again on the next batch or resync."""
        for iface in list(self._unconfigured):
            if not self.ownership.workload_interface(iface):
                self._unconfigured.discard(iface)  # never the agent's to configure
                continue
            found = self._ipr.link_lookup(ifname=iface)
            if not found:
                continue
            link = self._ipr.link("get", index=found[0])[0]
            if not link["flags"] & IFF_UP:
                self._ipr.link("set", index=found[0], state="up")
                self._sysctl.writes += 1
            if configure_workload_interface(self._sysctl, iface):
                self._unconfigured.discard(iface)

    def _resync_kernel(self) -> dict[str, int]:
        before = (self._routes.changes, self._sysctl.writes)
        try:
            self._unconfigured |= {
                i.interface
                for i in self.endpoints.values()
                if i.kind is EndpointKind.WORKLOAD and i.interface
            }
            self._configure_interfaces()
            # Dispatch is recomputed from the tables, not trusted: a model
            # update that failed half way (it is why we resync) may have left
            # the maps behind the chains.
            if _by_address(self.endpoints):
                self._refresh_addresses()
            M.set_dispatch(
                self._desired, self.chains, self.endpoints, self._host_ifaces, self.ownership
            )
            M.set_sources(self._desired, self.endpoints, self.ownership)
            self._set_pools(self._desired)
            self._set_hosts(self._desired)
            vxlan = self._vxlan.sync(self.vteps)
            if any(r.kind is RouteKind.IPIP for r in self.routes.values()):
                self._ipip.ensure()
            self._routes.resync(self.routes)
            kernel = self._read_table()
            held, written = self._commit(kernel, self._desired.copy())
            self.kernel_stats["nft_statements"] += written
            self._programmed = held.copy()
            self._take_route_failures()
        except Exception as exc:  # as in _program: counted, retried, never raised
            self.kernel_stats["errors"] += 1
            self._programmed = None
            self._rl.log(logging.ERROR, "resync", "dataplane resync failed: %s", exc)
            written, vxlan = 0, 0
        repaired = {
            "vxlan": vxlan,
            "routes": self._routes.changes - before[0],
            "sysctls": self._sysctl.writes - before[1],
            "nft_statements": written,
        }
        self.kernel_stats["resyncs"] += 1
        self.kernel_stats["repairs"] += sum(repaired.values())
        if any(repaired.values()):
            log.info("dataplane resync changed %s", repaired)
        return repaired

    def _read_table(self) -> M.NftModel:
        try:
            out = self._nft.run_json(f"list table inet {R.TABLE}")
        except DataplaneError:
            return M.NftModel(table=False)  # no table yet
        return M.from_kernel_json(json.loads(out))

    def policy_counters(self) -> dict[CounterKey, Reading]:
        """What each policy rule matched on this node so far: every named
        counter of the table, read in one netlink dump (on the kernel
        thread, between batches), by what it counts.  Raises
        DataplaneError if the table cannot be read (not there yet)."""
        return self._thread.call(self._read_counters)

    def _read_counters(self) -> dict[CounterKey, Reading]:
        found = read_counters(R.TABLE)
        keys = self._desired.counters
        return {key: r for name, r in found.items() if (key := keys.get(name)) is not None}

    def kernel_table(self) -> tuple[Table, dict[str, CounterKey]]:
        """The table as the kernel holds it now (one libnftables call, on
        the kernel thread), for `nft_eval`, with what each named counter
        counts.  Raises DataplaneError if it cannot be read."""

        def read() -> tuple[Table, dict[str, CounterKey]]:
            out = self._nft.run_json(f"list table inet {R.TABLE}", numeric=True)
            names = {n: k for n, k in self._desired.counters.items() if k is not None}
            return table_of(json.loads(out)), names

        return self._thread.call(read)

    def kernel_status(self) -> dict[str, int | str]:
        """Counters for /status: kernel writes, resyncs, repairs, errors,
        routes waiting for their device, and the interfaces host endpoint
        policy applies to (`*`: every other non-workload interface)."""
        return {
            "kernel_changes": self.kernel_changes(),
            "resyncs": self.kernel_stats["resyncs"],
            "repairs": self.kernel_stats["repairs"],
            "errors": self.kernel_stats["errors"],
            "nft_transactions": self.kernel_stats["nft_transactions"],
            "pending_routes": len(self._routes.pending),
            "refused": len(self.refused),
            "ipip": self._thread.call(lambda: self._ipip.state),
            "host_endpoint_interfaces": self._thread.call(self._policed_interfaces),
        }

    def _policed_interfaces(self) -> str:
        m, hosts = self._desired, R.host_map_names()
        names = sorted({i for n in hosts for i in m.maps[n]})
        if any(m.chains[R.any_chain(n)].rules for n in hosts):
            names.append("*")
        return ",".join(names)

    def consistent(self) -> bool:
        """Whether the kernel holds what the tables say (less the refused
        objects `refused` lists): False from a failed batch until a resync
        or a later batch succeeds."""
        return self._programmed is not None

    def kernel_changes(self) -> int:
        """Kernel writes so far: routes, settings and nftables statements."""
        return self._thread.call(
            lambda: (
                self._routes.changes
                + self._sysctl.writes
                + self._vxlan.changes
                + self.kernel_stats["nft_statements"]
            )
        )
