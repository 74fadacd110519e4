# Generated from burrow/_async/box.py by `python -m burrow._unasync`; do not edit.
# ruff: noqa: I001
"""Box: a box on a Burrow server, with its own pooled HTTP connection."""

# `timeout=` is each HTTP call's timeout, a parameter so that both clients have it (the sync one
# has no asyncio.timeout()).

from __future__ import annotations

import builtins
from types import TracebackType
from typing import Any

from burrow._sync.agent import AgentRuns
from burrow._sync.exec import Exec
from burrow._sync.files import Files
from burrow._sync.git import Git
from burrow._sync.http import Http
from burrow._sync.processes import Processes
from burrow._config import resolve
from burrow._models import Agent, BoxInfo, PublicUrl, Snapshot


def create_body(runtime: str, name: str | None, env: dict[str, str] | None,
                labels: dict[str, str] | None, keep_alive: bool, network: str | None,
                agent: dict[str, Any] | None, git: dict[str, str] | None,
                from_snapshot: str | None, tenant: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"runtime": runtime, "keep_alive": keep_alive}
    if agent is not None:
        agent = {k: (v.value if isinstance(v, Agent) else v) for k, v in agent.items()}
    for key, value in (("name", name), ("env", env), ("labels", labels), ("network", network),
                       ("agent", agent), ("git", git), ("from_snapshot", from_snapshot),
                       ("tenant", tenant)):
        if value is not None:
            body[key] = value
    return body


class Box:
    """A box: a persistent sandbox with its files, processes and agent.

        box = Box.create(runtime="python", labels={"team": "x"})
        with box:
            r = box.exec.command("python -c 'print(1+1)'")

    Leaving `with` (or `box.close()`) closes the connection, not the box; the
    box lives on the server until `box.delete()`. Settings come from BURROW_URL and
    BURROW_API_KEY unless base_url= / api_key= are given.
    """

    def __init__(self, info: BoxInfo, http: Http) -> None:
        self.info = info
        self._http = http
        self.exec = Exec(http, info.id)
        self.files = Files(http, info.id)
        self.git = Git(self.exec)
        self.agent = AgentRuns(http, info.id)
        self.processes = Processes(http, info.id)

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def status(self) -> str:
        """The box's state when last seen; every call that returns the box refreshes it, and
        refresh() asks now."""
        return self.info.state

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.status}>"

    # --- finding and making boxes --------------------------------------------------------

    @classmethod
    def create(cls, runtime: str = "python", *, name: str | None = None,
               env: dict[str, str] | None = None, labels: dict[str, str] | None = None,
               keep_alive: bool = False, network: str | None = None,
               agent: dict[str, Any] | None = None, git: dict[str, str] | None = None,
               from_snapshot: str | None = None, tenant: str | None = None,
               api_key: str | None = None, base_url: str | None = None,
               timeout: float | None = None) -> Box:
        """Create a box and start it; it is ready for exec when this returns.

        agent: {"harness": Agent.BURROW, "model": "provider/name", "mcp_servers": {name:
        {"command", "args", "env"} or {"url", "headers"}}} (mcp_servers optional); git: {"token",
        "user_name", "user_email"}; network: "none" (default) or "egress"; tenant: operator
        keys only, the tenant that owns the box. timeout: seconds per HTTP call (default 60).
        """
        http = Http(resolve(api_key, base_url, timeout))
        body = create_body(runtime, name, env, labels, keep_alive, network, agent, git,
                           from_snapshot, tenant)
        try:
            info = BoxInfo.model_validate(http.json("POST", "/v1/boxes", json=body))
        except BaseException:
            http.close()
            raise
        return cls(info, http)

    @classmethod
    def from_snapshot(cls, snapshot_id: str, runtime: str = "python", *,
                      name: str | None = None, env: dict[str, str] | None = None,
                      labels: dict[str, str] | None = None, keep_alive: bool = False,
                      network: str | None = None, agent: dict[str, Any] | None = None,
                      git: dict[str, str] | None = None, tenant: str | None = None,
                      api_key: str | None = None, base_url: str | None = None,
                      timeout: float | None = None) -> Box:
        """A new box whose files start as the snapshot's."""
        return cls.create(runtime, name=name, env=env, labels=labels,
                          keep_alive=keep_alive, network=network, agent=agent, git=git,
                          from_snapshot=snapshot_id, tenant=tenant, api_key=api_key,
                          base_url=base_url, timeout=timeout)

    @classmethod
    def get(cls, box_id: str, *, api_key: str | None = None,
            base_url: str | None = None, timeout: float | None = None) -> Box:
        http = Http(resolve(api_key, base_url, timeout))
        try:
            info = BoxInfo.model_validate(http.json("GET", f"/v1/boxes/{box_id}"))
        except BaseException:
            http.close()
            raise
        return cls(info, http)

    @classmethod
    def list(cls, label: str | builtins.list[str] | None = None, *,
             api_key: str | None = None, base_url: str | None = None,
             timeout: float | None = None) -> builtins.list[Box]:
        """The boxes this key may see; `label` "k:v" (or several) keeps those having every
        one. Each box opens its own connection on first use."""
        config = resolve(api_key, base_url, timeout)
        http = Http(config)
        try:
            labels = [label] if isinstance(label, str) else label
            data = http.json("GET", "/v1/boxes",
                             params={"label": labels} if labels else None)
        finally:
            http.close()
        return [cls(BoxInfo.model_validate(item), Http(config)) for item in data]

    @classmethod
    def snapshots(cls, *, api_key: str | None = None, base_url: str | None = None,
                  timeout: float | None = None) -> builtins.list[Snapshot]:
        """The named snapshots this key may see."""
        http = Http(resolve(api_key, base_url, timeout))
        try:
            data = http.json("GET", "/v1/snapshots")
        finally:
            http.close()
        return [Snapshot.model_validate(item) for item in data]

    @classmethod
    def delete_snapshot(cls, snapshot_id: str, *, api_key: str | None = None,
                        base_url: str | None = None, timeout: float | None = None) -> None:
        http = Http(resolve(api_key, base_url, timeout))
        try:
            http.request("DELETE", f"/v1/snapshots/{snapshot_id}")
        finally:
            http.close()

    # --- this box ------------------------------------------------------------------------

    def _state(self, action: str) -> BoxInfo:
        data = self._http.json("POST", f"/v1/boxes/{self.id}/{action}")
        self.info = BoxInfo.model_validate(data)
        return self.info

    def refresh(self) -> BoxInfo:
        """Ask the server for the box's state now (also updates `status`)."""
        self.info = BoxInfo.model_validate(self._http.json("GET", f"/v1/boxes/{self.id}"))
        return self.info

    def pause(self) -> BoxInfo:
        """Hold the processes in RAM (no CPU); resume() is instant."""
        return self._state("pause")

    def resume(self) -> BoxInfo:
        return self._state("resume")

    def freeze(self) -> BoxInfo:
        """Stop the processes and pack the box to storage; any call (or wake()) wakes it."""
        return self._state("freeze")

    def archive(self) -> BoxInfo:
        """Freeze and drop the local layer; a wake restores it from storage."""
        return self._state("archive")

    def wake(self) -> BoxInfo:
        return self._state("wake")

    def snapshot(self, name: str) -> Snapshot:
        """A named snapshot of the box as it is now; start boxes from it with
        from_snapshot()."""
        data = self._http.json("POST", f"/v1/boxes/{self.id}/snapshots",
                               json={"name": name})
        return Snapshot.model_validate(data)

    def get_public_url(self, port: int, *, auth: str = "bearer",
                       username: str | None = None,
                       password: str | None = None) -> PublicUrl:
        """A preview URL for `port` (a server in the box listening on it): auth "bearer" (a
        token, in `.token`; `.browser_url` opens it in a browser), "basic" (`username`,
        `password`: made and shown once when not given) or "public" (anyone with the URL, if
        the operator allows it). A request to the URL wakes a frozen box. Asking again for
        the same port makes a new token; the old one stops working."""
        body: dict[str, Any] = {"port": port, "auth": auth}
        if username is not None:
            body["username"] = username
        if password is not None:
            body["password"] = password
        data = self._http.json("POST", f"/v1/boxes/{self.id}/ports", json=body)
        return PublicUrl.model_validate(data)

    def list_public_urls(self) -> builtins.list[PublicUrl]:
        """The box's open ports (without their tokens)."""
        data = self._http.json("GET", f"/v1/boxes/{self.id}/ports")
        return [PublicUrl.model_validate(p) for p in data]

    def close_public_url(self, port: int) -> None:
        """Close the port's preview URL: its token and browsers' cookies stop working."""
        self._http.request("DELETE", f"/v1/boxes/{self.id}/ports/{port}")

    def delete(self) -> None:
        """Delete the box on the server (its files and processes) and close the connection."""
        try:
            self._http.request("DELETE", f"/v1/boxes/{self.id}")
            self.info = self.info.model_copy(update={"state": "deleted"})
        finally:
            self._http.close()

    def close(self) -> None:
        """Close the connection; the box itself stays as it is."""
        self._http.close()

    def __enter__(self) -> Box:
        return self

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
