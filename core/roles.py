"""What a cluster's roles and their deployments agree on: where a box host's API listens and
which of its paths say that it lives and is ready.

`burrow host` serves its API (the gateways' and the worker's way to its boxes) on
BURROW_HOST_LISTEN, and answers HOST_API_HEALTH_PATHS there as the gateway answers its own
`/healthz` and `/readyz`: unsigned, since the kubelet that asks cannot sign, and saying nothing
a caller without the server secret could use. deploy/k8s/ probes these paths on that port;
tests/deploy/test_k8s.py holds the manifests to this module.
"""

from __future__ import annotations

import ipaddress
import re

# (liveness, readiness), in the order the gateway's health routes take them.
HOST_API_HEALTH_PATHS = ("/healthz", "/readyz")
# The gateway listens on 8420, and a second gateway on one machine takes 8421 (compose.yaml
# publishes 8420-8421): the host API keeps clear of that range.
DEFAULT_HOST_API_PORT = 8430
DEFAULT_HOST_LISTEN = f"0.0.0.0:{DEFAULT_HOST_API_PORT}"
# How long a stopped box host takes at most to freeze and give up its boxes (within
# Kubernetes' grace: deploy/k8s/host.yaml's 300 s); a request for one of them waits as long.
DRAIN_S = 240.0

_LISTEN = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]+)):(?P<port>\d{1,5})$")


def parse_listen(value: str) -> tuple[str, int]:
    """BURROW_HOST_LISTEN as (address, port): `address:port`, an IPv6 address in brackets;
    ValueError that says what to write instead."""
    match = _LISTEN.match(value.strip())
    port = int(match["port"]) if match else 0
    if match is None or not 0 < port < 65536:
        raise ValueError(f"BURROW_HOST_LISTEN {value!r}: use address:port, such as "
                         f"{DEFAULT_HOST_LISTEN} (every interface) or [::]:{DEFAULT_HOST_API_PORT}")
    if match["v6"] is not None:
        try:
            ipaddress.IPv6Address(match["v6"])
        except ValueError:
            raise ValueError(f"BURROW_HOST_LISTEN {value!r}: {match['v6']!r} is not an IPv6 "
                             "address") from None
        return match["v6"], port
    return match["host"], port
