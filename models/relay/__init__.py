"""The model relay: how Claude Code, Codex and OpenCode in a box reach models while the
provider keys stay on the host.

In the box, a loopback server (`tenant_agent/relay.py`) stands in for the provider: the CLI
gets its base URL and a dummy key, and each call goes to the host services socket as
`/v1/relay/{family}/{path}` with the box token. On the host, `Relay.answer` checks the call
(`policy`: inference paths only, headers allowlisted, the model pinned to the box's, output
bounded), then passes it through to a provider that speaks the CLI's wire API, adding the key,
or translates it (`messages`, `responses`, `completions` ⇄ `models.chat`) for any other —
every `local/` model. The CLIs themselves are installed on the host by `harnesses`.

The host route that calls `Relay.answer` owns what needs the gateway: authenticating the box
token before reading the body, the tenant's budget and the model allowlist, size and time
limits, and counting the usage the answer reports.
"""

from models.relay.policy import Route, clamp_output, client_headers, pin_model, route
from models.relay.service import NATIVE, WIRES, Relay, RelayAnswer
from models.relay.wire import RelayError, UsageTap, WireApi

__all__ = ["NATIVE", "WIRES", "Relay", "RelayAnswer", "RelayError", "Route", "UsageTap",
           "WireApi", "clamp_output", "client_headers", "pin_model", "route"]
