"""What a box with network="egress" may reach: public addresses only, unless the operator says
otherwise, and never more than the operator allows.

slirp4netns turns the box's packets into sockets of the host, so without a filter a box
reaches whatever the host reaches: the LAN, link-local metadata services, a Redis or Qdrant
next to the gateway, the host's own addresses. The filter is an nftables output chain in the
box's network namespace, set from the host (the box holds no capability there, so it cannot
change it) before slirp4netns attaches the box's only route out. In order:

    loopback, and DNS to slirp's forwarder (10.0.2.3)       accept
    operator deny, then box deny                            reject
    box allow (when the box names any): what is not in it   reject
    operator allow                                          accept
    private, loopback, link-local, CGNAT, multicast and
    reserved ranges, and every address of the host itself   reject
    the rest (public addresses)                             accept

A rule is an IPv4 CIDR or address, optionally with a port (`10.1.2.3:5432`,
`192.168.0.0/16:443`), or `*:port` for a port anywhere. Boxes get no IPv6 route, and IPv6 is
rejected too. A tenant's box rules only narrow: they come after the operator's denies and
before the operator's allows, and cannot open a default-blocked range the operator kept closed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import shutil
import subprocess
from dataclasses import dataclass, field

from boxes.errors import HostUnsupportedError, SandboxStartError
from boxes.hostenv import clean_env

DNS_FORWARDER = "10.0.2.3"
BLOCKED_BY_DEFAULT = (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.168.0.0/16", "224.0.0.0/4", "240.0.0.0/4",
)
MAX_RULES = 256


@dataclass(frozen=True)
class Rule:
    network: ipaddress.IPv4Network | None  # None: any address
    port: int | None  # None: any port

    def nft(self) -> str:
        """The rule's match, for TCP and UDP alike."""
        parts = []
        if self.network is not None:
            parts.append(f"ip daddr {self.network}")
        if self.port is not None:
            parts.append(f"meta l4proto {{ tcp, udp }} th dport {self.port}")
        return " ".join(parts)


@dataclass(frozen=True)
class EgressPolicy:
    """The operator's rules and the box's own (which only narrow)."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    box_allow: tuple[str, ...] = ()
    box_deny: tuple[str, ...] = ()
    host_addresses: tuple[str, ...] = field(default=())


def parse_rule(text: str) -> Rule:
    """`CIDR`, `address`, `CIDR:port`, `address:port` or `*:port`; ValueError saying why."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("an egress rule must be a non-empty string such as 10.0.0.0/8, "
                         "203.0.113.7:443 or *:25")
    if text.count(":") > 1:
        raise ValueError(f"{text!r}: boxes have IPv4 egress only")
    host, sep, port_text = text.strip().rpartition(":") if ":" in text else (text, "", "")
    port = None
    if sep:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
        port = int(port_text)
    if host.strip() == "*":
        if port is None:
            raise ValueError(f"{text!r}: '*' needs a port (e.g. *:25)")
        return Rule(None, port)
    try:
        network = ipaddress.ip_network(host.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not an IPv4 address or CIDR (host names are not "
                         "accepted: their addresses change)") from None
    if not isinstance(network, ipaddress.IPv4Network):
        raise ValueError(f"{text!r}: boxes have IPv4 egress only")
    return Rule(network, port)


def parse_rules(rules: tuple[str, ...] | list[str]) -> list[Rule]:
    if len(rules) > MAX_RULES:
        raise ValueError(f"at most {MAX_RULES} rules")
    return [parse_rule(r) for r in rules]


def host_addresses() -> tuple[str, ...]:
    """Every IPv4 address of this host's interfaces (a box must not reach the host)."""
    try:
        out = subprocess.run(["ip", "-j", "-4", "addr", "show"], capture_output=True,
                             text=True, timeout=10, check=True, env=clean_env()).stdout
        found = {info["local"] for link in json.loads(out)
                 for info in link.get("addr_info", []) if info.get("local")}
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError) as exc:
        raise SandboxStartError(f"cannot list the host's addresses for the egress filter: "
                                f"{exc}") from exc
    return tuple(sorted(found))


def ruleset(policy: EgressPolicy) -> str:
    """The nftables ruleset of one box's network namespace."""
    ranges = [ipaddress.IPv4Network(r) for r in BLOCKED_BY_DEFAULT]
    own = sorted({a for a in policy.host_addresses
                  if not any(ipaddress.IPv4Address(a) in r for r in ranges)})
    blocked = [*BLOCKED_BY_DEFAULT, *own]  # (nft refuses overlapping elements in a set)
    lines = ["table inet burrow_egress {", " chain operator {"]
    lines += [f"  {rule.nft()} accept" for rule in parse_rules(policy.allow)]
    lines += [f"  ip daddr {{ {', '.join(blocked)} }} reject", "  accept", " }",
              " chain out {", "  type filter hook output priority 0; policy accept;",
              '  oifname "lo" accept',
              f"  ip daddr {DNS_FORWARDER} udp dport 53 accept",
              f"  ip daddr {DNS_FORWARDER} tcp dport 53 accept",
              "  meta nfproto ipv6 reject"]
    lines += [f"  {rule.nft()} reject"
              for rule in [*parse_rules(policy.deny), *parse_rules(policy.box_deny)]]
    box_allow = parse_rules(policy.box_allow)
    lines += [f"  {rule.nft()} jump operator" for rule in box_allow]
    lines.append("  reject" if box_allow else "  jump operator")
    lines += [" }", "}"]
    return "\n".join(lines) + "\n"


def check_host() -> None:
    if shutil.which("nft") is None:
        raise HostUnsupportedError(
            "network='egress' needs nft to filter what boxes reach; install nftables "
            "(make install does it on Debian)")


async def apply(child_pid: int, policy: EgressPolicy) -> None:
    """Install the filter in the network namespace of the box whose first process is
    `child_pid` (before it has a route out)."""
    check_host()
    proc = await asyncio.create_subprocess_exec(
        "nsenter", f"--net=/proc/{child_pid}/ns/net", "--", "nft", "-f", "-",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env=clean_env())
    out, _ = await proc.communicate(ruleset(policy).encode())
    if proc.returncode != 0:
        raise SandboxStartError(f"could not install the box's egress filter: "
                                f"{out.decode(errors='replace').strip()[-500:]}")
