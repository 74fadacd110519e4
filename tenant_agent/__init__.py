"""Burrow's programs inside a box (run by the box's /usr/bin/python3 -I -S: stdlib only, no
site, nothing of the server's).

- `memory/`: the tenant agent, the service of each tenant's home box (the agent protocol in
  memory/server.py: observe, recall, ask, the tenant's memories).
- `runs/`: one agent run, started through the box's daemon: the built-in harness
  (Agent.BURROW) and the third-party agent CLIs with their in-box model relay.
- `common/`: what both use: JSON without the json package, HTTP/1.1 on a service socket,
  calls to the host services socket.

The scripts here are what a box starts, by path: `__main__.py` (the tenant agent, in every
home box's service argv, kept in its record), `harness.py` and `clirun.py` (a run). Their
paths stay put across moves of the code behind them, so boxes made by an older Burrow still
wake. memory/ and runs/ import only common/ of each other, and the packages' __init__
modules stay empty: what a start imports is what its first answer waits for.
"""
