"""What to explain, as a caller gives it, and the packet it describes."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from dataplane.trace import Packet, TraceError, packet, protocol_number
from felix_client.calc.model import Endpoint
from felix_client.explain.names import address_of


@dataclass(frozen=True, slots=True)
class Query:
    """What to explain, as given (names or addresses, protocol by name or
    number); `kernel`: from the kernel's ruleset, not the computed tables."""

    src: str
    dst: str
    protocol: str = "tcp"
    port: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    kernel: bool = False

    @staticmethod
    def of(params: Mapping[str, str]) -> Query:
        """From query parameters (`from`, `to`, `protocol`, `port`,
        `icmp_type`, `icmp_code`, `kernel`).  Raises TraceError."""

        def number(name: str) -> int | None:
            text = params.get(name)
            if text is None or text == "":
                return None
            if not (text.isascii() and text.isdigit()):
                raise TraceError(f"{name} must be a number, not {text!r:.20}")
            return int(text)

        if not params.get("from") or not params.get("to"):
            raise TraceError("both `from` and `to` are needed")
        return Query(
            params["from"],
            params["to"],
            params.get("protocol") or "tcp",
            number("port"),
            number("icmp_type"),
            number("icmp_code"),
            params.get("kernel", "") in ("1", "true", "yes"),
        )

    def params(self) -> dict[str, str]:
        """The query as parameters (`of`'s inverse)."""
        out = {"from": self.src, "to": self.dst, "protocol": self.protocol}
        for name, value in (
            ("port", self.port),
            ("icmp_type", self.icmp_type),
            ("icmp_code", self.icmp_code),
        ):
            if value is not None:
                out[name] = str(value)
        if self.kernel:
            out["kernel"] = "1"
        return out


def packet_of(q: Query, endpoints: Mapping[str, Endpoint]) -> Packet:
    """The packet a query describes, names resolved.  Raises TraceError."""
    src = address_of(q.src, endpoints)
    dst = address_of(q.dst, endpoints, ipaddress.ip_address(src).version)
    return packet(
        src,
        dst,
        protocol_number(q.protocol),
        port=q.port,
        icmp_type=q.icmp_type,
        icmp_code=q.icmp_code,
    )
