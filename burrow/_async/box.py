"""AsyncBox: a box on a Burrow server, with its own pooled HTTP connection."""

# `timeout=` is each HTTP call's timeout, a parameter so that both clients have it (the sync one
# has no asyncio.timeout()).
# ruff: noqa: ASYNC109

from __future__ import annotations

import builtins
from types import TracebackType
from typing import Any

from burrow._async.agent import AsyncAgentRuns
from burrow._async.exec import AsyncExec
from burrow._async.files import AsyncFiles
from burrow._async.git import AsyncGit
from burrow._async.http import AsyncHttp
from burrow._async.processes import AsyncProcesses
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


class AsyncBox:
    """A box: a persistent sandbox with its files, processes and agent.

        box = await AsyncBox.create(runtime="python", labels={"team": "x"})
        async with box:
            r = await box.exec.command("python -c 'print(1+1)'")

    Leaving `async with` (or `await box.aclose()`) closes the connection, not the box; the
    box lives on the server until `await box.delete()`. Settings come from BURROW_URL and
    BURROW_API_KEY unless base_url= / api_key= are given.
    """

    def __init__(self, info: BoxInfo, http: AsyncHttp) -> None:
        self.info = info
        self._http = http
        self.exec = AsyncExec(http, info.id)
        self.files = AsyncFiles(http, info.id)
        self.git = AsyncGit(self.exec)
        self.agent = AsyncAgentRuns(http, info.id)
        self.processes = AsyncProcesses(http, info.id)

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
    async def create(cls, runtime: str = "python", *, name: str | None = None,
                     env: dict[str, str] | None = None, labels: dict[str, str] | None = None,
                     keep_alive: bool = False, network: str | None = None,
                     agent: dict[str, Any] | None = None, git: dict[str, str] | None = None,
                     from_snapshot: str | None = None, tenant: str | None = None,
                     api_key: str | None = None, base_url: str | None = None,
                     timeout: float | None = None) -> AsyncBox:
        """Create a box and start it; it is ready for exec when this returns.

        agent: {"harness": Agent.BURROW, "model": "provider/name", "mcp_servers": {name:
        {"command", "args", "env"} or {"url", "headers"}}} (mcp_servers optional); git: {"token",
        "user_name", "user_email"}; network: "none" (default) or "egress"; tenant: operator
        keys only, the tenant that owns the box. timeout: seconds per HTTP call (default 60).
        """
        http = AsyncHttp(resolve(api_key, base_url, timeout))
        body = create_body(runtime, name, env, labels, keep_alive, network, agent, git,
                           from_snapshot, tenant)
        try:
            info = BoxInfo.model_validate(await http.json("POST", "/v1/boxes", json=body))
        except BaseException:
            await http.aclose()
            raise
        return cls(info, http)

    @classmethod
    async def from_snapshot(cls, snapshot_id: str, runtime: str = "python", *,
                            name: str | None = None, env: dict[str, str] | None = None,
                            labels: dict[str, str] | None = None, keep_alive: bool = False,
                            network: str | None = None, agent: dict[str, Any] | None = None,
                            git: dict[str, str] | None = None, tenant: str | None = None,
                            api_key: str | None = None, base_url: str | None = None,
                            timeout: float | None = None) -> AsyncBox:
        """A new box whose files start as the snapshot's."""
        return await cls.create(runtime, name=name, env=env, labels=labels,
                                keep_alive=keep_alive, network=network, agent=agent, git=git,
                                from_snapshot=snapshot_id, tenant=tenant, api_key=api_key,
                                base_url=base_url, timeout=timeout)

    @classmethod
    async def get(cls, box_id: str, *, api_key: str | None = None,
                  base_url: str | None = None, timeout: float | None = None) -> AsyncBox:
        http = AsyncHttp(resolve(api_key, base_url, timeout))
        try:
            info = BoxInfo.model_validate(await http.json("GET", f"/v1/boxes/{box_id}"))
        except BaseException:
            await http.aclose()
            raise
        return cls(info, http)

    @classmethod
    async def list(cls, label: str | builtins.list[str] | None = None, *,
                   api_key: str | None = None, base_url: str | None = None,
                   timeout: float | None = None) -> builtins.list[AsyncBox]:
        """The boxes this key may see; `label` "k:v" (or several) keeps those having every
        one. Each box opens its own connection on first use."""
        config = resolve(api_key, base_url, timeout)
        http = AsyncHttp(config)
        try:
            labels = [label] if isinstance(label, str) else label
            data = await http.json("GET", "/v1/boxes",
                                   params={"label": labels} if labels else None)
        finally:
            await http.aclose()
        return [cls(BoxInfo.model_validate(item), AsyncHttp(config)) for item in data]

    @classmethod
    async def snapshots(cls, *, api_key: str | None = None, base_url: str | None = None,
                        timeout: float | None = None) -> builtins.list[Snapshot]:
        """The named snapshots this key may see."""
        http = AsyncHttp(resolve(api_key, base_url, timeout))
        try:
            data = await http.json("GET", "/v1/snapshots")
        finally:
            await http.aclose()
        return [Snapshot.model_validate(item) for item in data]

    @classmethod
    async def delete_snapshot(cls, snapshot_id: str, *, api_key: str | None = None,
                              base_url: str | None = None, timeout: float | None = None) -> None:
        http = AsyncHttp(resolve(api_key, base_url, timeout))
        try:
            await http.request("DELETE", f"/v1/snapshots/{snapshot_id}")
        finally:
            await http.aclose()

    # --- this box ------------------------------------------------------------------------

    async def _state(self, action: str) -> BoxInfo:
        data = await self._http.json("POST", f"/v1/boxes/{self.id}/{action}")
        self.info = BoxInfo.model_validate(data)
        return self.info

    async def refresh(self) -> BoxInfo:
        """Ask the server for the box's state now (also updates `status`)."""
        self.info = BoxInfo.model_validate(await self._http.json("GET", f"/v1/boxes/{self.id}"))
        return self.info

    async def pause(self) -> BoxInfo:
        """Hold the processes in RAM (no CPU); resume() is instant."""
        return await self._state("pause")

    async def resume(self) -> BoxInfo:
        return await self._state("resume")

    async def freeze(self) -> BoxInfo:
        """Stop the processes and pack the box to storage; any call (or wake()) wakes it."""
        return await self._state("freeze")

    async def archive(self) -> BoxInfo:
        """Freeze and drop the local layer; a wake restores it from storage."""
        return await self._state("archive")

    async def wake(self) -> BoxInfo:
        return await self._state("wake")

    async def snapshot(self, name: str) -> Snapshot:
        """A named snapshot of the box as it is now; start boxes from it with
        from_snapshot()."""
        data = await self._http.json("POST", f"/v1/boxes/{self.id}/snapshots",
                                     json={"name": name})
        return Snapshot.model_validate(data)

    async def get_public_url(self, port: int, *, auth: str = "bearer",
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
        data = await self._http.json("POST", f"/v1/boxes/{self.id}/ports", json=body)
        return PublicUrl.model_validate(data)

    async def list_public_urls(self) -> builtins.list[PublicUrl]:
        """The box's open ports (without their tokens)."""
        data = await self._http.json("GET", f"/v1/boxes/{self.id}/ports")
        return [PublicUrl.model_validate(p) for p in data]

    async def close_public_url(self, port: int) -> None:
        """Close the port's preview URL: its token and browsers' cookies stop working."""
        await self._http.request("DELETE", f"/v1/boxes/{self.id}/ports/{port}")

    async def delete(self) -> None:
        """Delete the box on the server (its files and processes) and close the connection."""
        try:
            await self._http.request("DELETE", f"/v1/boxes/{self.id}")
            self.info = self.info.model_copy(update={"state": "deleted"})
        finally:
            await self._http.aclose()

    async def aclose(self) -> None:
        """Close the connection; the box itself stays as it is."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncBox:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()
