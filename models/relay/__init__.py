"""The model relay: how Claude Code, Codex and OpenCode in a box reach models while the
provider keys stay on the host.

In the box, a loopback server (`tenant_agent/runs/relay.py`) stands in for the provider: the CLI
gets its base URL and a dummy key, and each call goes to the host services socket as
`/v1/relay/{family}/{path}` with the box token. On the host, `Relay.prepare` checks the call
(`policy`: inference paths only, headers allowlisted, the model pinned to the box's, output
bounded; `allowlist`: only fields, tools and content that cannot make the provider fetch, run
or keep anything) and says what it can cost at most; `Relay.send` passes it through to a
provider that speaks the CLI's wire API, adding the key, or translates it (`messages`,
`responses`, `completions` ⇄ `models.chat`) for any other — every `local/` model. The CLIs
themselves are installed on the host by `harnesses`.

The host route owns what needs the gateway: authenticating the box token before reading the
body, the tenant's budget (reserving the call's worst case between `prepare` and `send`) and
the model allowlist, size and time limits, and counting the usage the answer reports.
"""

from models.relay.allowlist import RelayAllowance
from models.relay.policy import Route, clamp_output, client_headers, pin_model, route
from models.relay.service import NATIVE, WIRES, Relay, RelayAnswer, RelayCall
from models.relay.wire import RelayError, UsageTap, WireApi

__all__ = ["NATIVE", "WIRES", "Relay", "RelayAllowance", "RelayAnswer", "RelayCall",
           "RelayError", "Route", "UsageTap", "WireApi", "clamp_output", "client_headers",
           "pin_model", "route"]
