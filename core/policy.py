"""The operator's policy: the idle freeze policy and the ceilings of what a tenant may take
(box sizes, box count, disk, keep-alive, egress, models and tokens), all in one place. One
global policy with per-tenant overrides, validated, versioned and stored in Redis, so every
gateway and worker reads the same one and an edit applies on the next sweep, box creation,
wake or model call."""

from __future__ import annotations

import fnmatch
import json
import time
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import WatchError

from core.keys import Keys

# The activity of a box reaches Redis up to ~1 s late (it is batched); a shorter idle threshold
# could pause or freeze a box that is in use.
MIN_IDLE_S = 2
MAX_IDLE_S = 10 * 365 * 86400
# Fields the operator may override per tenant; the others bound the whole host.
RELAY_FIELDS = ("relay_allow_fields", "relay_allow_tools", "relay_allow_betas")
TENANT_FIELDS = ("pause_after_s", "freeze_after_s", "archive_after_s", "keep_alive",
                 "max_boxes_per_tenant", "max_tenant_disk_mb", "tenant_keep_alive",
                 "tenant_token_budget", "model_allowlist", "agent_model",
                 "max_snapshots_per_tenant", "max_tenant_exec_output_mb",
                 "contribute_min_age_s", "contribute_min_turns", "allow_public_ports",
                 *RELAY_FIELDS)
LIST_FIELDS = ("egress_allow", "egress_deny", "model_allowlist", *RELAY_FIELDS)
HISTORY_LIMIT = 200


class PolicyError(ValueError):
    """An invalid policy; the message says what to change."""


@dataclass(frozen=True)
class Policy:
    """None means "never" (or "no limit")."""

    pause_after_s: float | None = None
    freeze_after_s: float | None = 900
    archive_after_s: float | None = 7 * 86400
    keep_alive: bool = False
    max_warm_boxes: int | None = None
    local_layer_budget_bytes: int | None = None
    # Ceilings: the most a tenant key may ask for (operators are not bound by them). The
    # defaults fit a 2-core, 24 GiB host with a few dozen active tenants. Lowering one clamps
    # running boxes at their next wake (memory, pids, cpus; a disk keeps its size).
    max_box_memory_mb: int | None = 4096
    max_box_disk_mb: int | None = 10240
    max_box_pids: int | None = 1024
    max_box_cpus: float | None = 2.0
    max_boxes_per_tenant: int | None = 20
    # All of a tenant's boxes' disks and its named snapshots (their files' size) together.
    max_tenant_disk_mb: int | None = 51200
    max_snapshots_per_tenant: int | None = 50  # named snapshots
    tenant_keep_alive: bool = False  # whether tenants may create keep_alive boxes
    # What a box record may carry: it lives in Redis and every listing of the tenant's boxes
    # reads it (labels' keys and values are bounded by the box runtime: 63 and 256 chars).
    max_box_labels: int | None = 64
    max_box_env_bytes: int | None = 65536  # names and values, UTF-8
    # Output a tenant's collected execs (POST /exec, not /exec/stream) may hold in one
    # gateway process at once, in MB: the gateway holds a collected exec's output until it
    # has sent it, so four of them with 16 Mi characters each once took 1.2 GB.
    max_tenant_exec_output_mb: int | None = 16
    # Egress of network="egress" boxes beyond the default (public addresses only): CIDRs or
    # host:port / CIDR:port entries; deny wins over allow.
    egress_allow: tuple[str, ...] = ()
    egress_deny: tuple[str, ...] = ()
    # Model calls from boxes: which models (provider/name, * wildcards; None: any a provider
    # serves), the largest max_tokens (larger requests are clamped, not refused), each
    # tenant's tokens per period and calls per minute.
    model_allowlist: tuple[str, ...] | None = None
    model_max_tokens: int | None = 4096
    tenant_token_budget: int | None = 2_000_000
    token_budget_period_s: float = 86400
    model_calls_per_minute: int | None = 120
    # What the model relay (agent CLIs' calls, models/relay/allowlist.py) passes to a provider
    # beyond its allow-lists, with the operator's key — by default nothing that makes the
    # provider fetch, run code or keep state for a box: request fields to forward as sent
    # (e.g. "mcp_servers", "store", "previous_response_id", "background"), tool types
    # (* patterns: "web_search*" lets Anthropic's and OpenAI's web search through), and
    # beta flags of the anthropic-beta / openai-beta headers (* patterns). What they let
    # through can add input the relay does not see (search results, a stored conversation),
    # so calls using them are bounded by the budget only once their usage is counted.
    relay_allow_fields: tuple[str, ...] = ()
    relay_allow_tools: tuple[str, ...] = ()
    relay_allow_betas: tuple[str, ...] = ()
    # Texts a tenant's boxes may have the host embed per minute (POST /v1/embed on the host
    # socket: the agent's recall embeds its query there, one text a call); the embedder is
    # shared, so one box must not take it from the others.
    embed_texts_per_minute: int | None = 600
    # The tenant agents' model (provider/name): /ask answers through it and, unless it is a
    # local/ one, the extraction pass distils memories with it. None: the server's
    # BURROW_AGENT_MODEL. On model_allowlist, when there is one.
    agent_model: str | None = None
    # Before a tenant's agent's proposals count in the shared knowledge base (k tenants make an
    # insight visible, and one actor may hold k tenants): the tenant's age since it was created
    # and the turns the gateway recorded for it (neither is the box's word). Younger tenants'
    # proposals are dropped and counted (/v1/stats knowledge.refused). A day and 20 turns: one
    # actor needs k returning, talking tenants, not k sign-ups in a minute; an ordinary user's
    # own agent learns from the first turn either way. None or 0: no requirement.
    contribute_min_age_s: float | None = 86400
    contribute_min_turns: int | None = 20
    # Whether a tenant may open a port of its boxes with auth "public" (a preview URL anyone
    # can open, without a token); off, public ports of its boxes answer 403 until opened
    # again with a token or a password. Operators are not bound by it.
    allow_public_ports: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Policy:
        """From stored JSON (lists back to tuples; fields added later take their defaults)."""
        values = {k: v for k, v in data.items() if k in _FIELDS}
        for name in LIST_FIELDS:
            if isinstance(values.get(name), list):
                values[name] = tuple(values[name])
        return cls(**values)

    def merged(self, override: dict[str, Any] | None) -> Policy:
        """This policy with a tenant's overrides on top."""
        if not override:
            return self
        values: dict[str, Any] = {
            k: tuple(v) if k in LIST_FIELDS and isinstance(v, list) else v
            for k, v in override.items()}
        return replace(self, **values)

    def validate(self) -> Policy:
        for name in ("pause_after_s", "freeze_after_s", "archive_after_s"):
            _check_seconds(name, getattr(self, name))
        if not isinstance(self.keep_alive, bool):
            raise PolicyError("keep_alive must be true or false")
        _check_count("max_warm_boxes", self.max_warm_boxes, 0, 1_000_000)
        _check_count("local_layer_budget_bytes", self.local_layer_budget_bytes, 0, 1 << 60)
        self._validate_ceilings()
        self._validate_agent_model()
        age = self.contribute_min_age_s
        if age is not None and (isinstance(age, bool) or not isinstance(age, int | float)
                                or not 0 <= age <= MAX_IDLE_S):
            raise PolicyError("contribute_min_age_s must be a number of seconds between 0 and "
                              "ten years, or null for no requirement")
        _check_count("contribute_min_turns", self.contribute_min_turns, 0, 1 << 31)
        pause, freeze, archive = self.pause_after_s, self.freeze_after_s, self.archive_after_s
        if pause is not None and freeze is not None and freeze <= pause:
            raise PolicyError(
                f"freeze_after_s ({freeze:g}) must be longer than pause_after_s ({pause:g}): a box "
                "is paused first and frozen later; raise freeze_after_s or lower pause_after_s")
        if archive is not None and freeze is not None and archive < freeze:
            raise PolicyError(
                f"archive_after_s ({archive:g}) must be at least freeze_after_s ({freeze:g}): "
                "only frozen boxes are archived")
        return self

    def allows(self, model: str) -> bool:
        """Whether model_allowlist (provider/name patterns, * wildcards) lets boxes call
        `model`; no allowlist allows any."""
        allow = self.model_allowlist
        return allow is None or any(fnmatch.fnmatchcase(model, p) for p in allow)

    def _validate_agent_model(self) -> None:
        model = self.agent_model
        if model is None:
            return
        provider, _, name = model.partition("/") if isinstance(model, str) else ("", "", "")
        if not provider or not name or len(model) > 256 or any(c.isspace() for c in model):
            raise PolicyError("agent_model must be provider/name (for example "
                              "anthropic/claude-haiku-4-5), or null for the server's "
                              "BURROW_AGENT_MODEL")
        if not self.allows(model):
            raise PolicyError(f"agent_model {model} is not on model_allowlist "
                              f"({', '.join(self.model_allowlist or ()) or 'empty'}): add "
                              "it there, or choose a model it allows")

    def _validate_ceilings(self) -> None:
        # The lower bounds are the smallest box that still starts (Limits.validate's).
        for name, low, high in (("max_box_memory_mb", 16, 1 << 20),
                                ("max_box_disk_mb", 64, 1 << 24), ("max_box_pids", 8, 1 << 16),
                                ("max_boxes_per_tenant", 0, 1 << 20),
                                ("max_tenant_disk_mb", 0, 1 << 30),
                                ("max_snapshots_per_tenant", 0, 1 << 20),
                                ("max_box_labels", 0, 1 << 16),
                                ("max_box_env_bytes", 0, 1 << 30),
                                ("max_tenant_exec_output_mb", 0, 1 << 20),
                                ("model_max_tokens", 1, 1 << 24),
                                ("tenant_token_budget", 0, 1 << 50),
                                ("model_calls_per_minute", 0, 1 << 20),
                                ("embed_texts_per_minute", 0, 1 << 24)):
            _check_count(name, getattr(self, name), low, high)
        cpus = self.max_box_cpus
        if cpus is not None and (isinstance(cpus, bool) or not isinstance(cpus, int | float)
                                 or not 0.05 <= cpus <= 1024):
            raise PolicyError("max_box_cpus must be between 0.05 and 1024, or null for no limit")
        for name in ("tenant_keep_alive", "allow_public_ports"):
            if not isinstance(getattr(self, name), bool):
                raise PolicyError(f"{name} must be true or false")
        period = self.token_budget_period_s
        if isinstance(period, bool) or not isinstance(period, int | float) or not (
                60 <= period <= MAX_IDLE_S):
            raise PolicyError("token_budget_period_s must be between 60 s and ten years")
        for name in LIST_FIELDS:
            value = getattr(self, name)
            if value is None and name == "model_allowlist":
                continue
            if not isinstance(value, tuple) or len(value) > 256 or not all(
                    isinstance(v, str) and 0 < len(v) <= 256 for v in value):
                raise PolicyError(f"{name} must be a list of at most 256 strings")
        from boxes.egress import parse_rules  # the one parser of egress rules

        for name in ("egress_allow", "egress_deny"):
            try:
                parse_rules(getattr(self, name))
            except ValueError as exc:
                raise PolicyError(f"{name}: {exc}") from None


def _check_seconds(name: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError(f"{name} must be a number of seconds, or null for never")
    if not MIN_IDLE_S <= value <= MAX_IDLE_S:
        raise PolicyError(f"{name} must be between {MIN_IDLE_S} s and {MAX_IDLE_S} s (ten "
                          f"years), or null for never; got {value:g}")


def _check_count(name: str, value: object, low: int, high: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(f"{name} must be a whole number, or null for no limit")
    if not low <= value <= high:
        raise PolicyError(f"{name} must be between {low} and {high}, or null for no limit")


_FIELDS = {f.name for f in fields(Policy)}


@dataclass(frozen=True)
class Versioned:
    policy: Policy
    version: int
    updated_at: float | None
    updated_by: str | None


class Policies:
    """The global policy and the tenants' overrides in Redis; every change is recorded in a
    history (who, when, which fields from what to what)."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self._global = keys.policy()
        self._overrides = keys.policy_overrides()
        self._history = keys.policy_history()

    async def get(self) -> Versioned:
        raw = await self.redis.get(self._global)
        if raw is None:
            return Versioned(Policy(), 0, None, None)
        data = json.loads(raw)
        return Versioned(Policy.from_dict(data["policy"]), data["version"], data["updated_at"],
                         data["updated_by"])

    async def agent_model(self, tenant: str) -> str | None:
        """The tenant agents' model the policy names for `tenant` (its override, else the
        global one; None if neither does), in one round trip: it is read on every agent
        request and delivery."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(self._global)
            pipe.hget(self._overrides, tenant)
            raw, override = await pipe.execute()
        if override:
            mine = json.loads(override)
            if "agent_model" in mine:
                return str(mine["agent_model"])
        model = json.loads(raw)["policy"].get("agent_model") if raw else None
        return str(model) if model else None

    async def update(self, changes: dict[str, Any], by: str) -> Versioned:
        """Apply `changes` (a subset of the fields) to the global policy."""
        _check_names(changes, _FIELDS)
        changes = {k: () if k in ("egress_allow", "egress_deny", *RELAY_FIELDS) and v is None
                   else v for k, v in changes.items()}
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(self._global)
                    current = await self.get()
                    policy = current.policy.merged(changes).validate()
                    await self._check_overrides_with(policy)
                    new = Versioned(policy, current.version + 1, time.time(), by)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.set(self._global, json.dumps({
                        "policy": asdict(policy), "version": new.version,
                        "updated_at": new.updated_at, "updated_by": by}))
                    self._record(pipe, new.version, by, "global",
                                 _diff(asdict(current.policy), asdict(policy)))
                    await pipe.execute()
                    return new
                except WatchError:  # changed meanwhile: apply to the new one
                    continue

    async def _check_overrides_with(self, policy: Policy) -> None:
        for tenant, override in (await self.overrides()).items():
            try:
                policy.merged(override).validate()
            except PolicyError as exc:
                raise PolicyError(f"with this change, tenant {tenant}'s overrides would be "
                                  f"invalid: {exc}; change them first (PUT /v1/tenants/"
                                  f"{tenant}/policy)") from None

    async def override(self, tenant: str) -> dict[str, Any] | None:
        raw = await self.redis.hget(self._overrides, tenant)  # type: ignore[misc]
        return json.loads(raw) if raw else None

    async def overrides(self) -> dict[str, dict[str, Any]]:
        raw = await self.redis.hgetall(self._overrides)  # type: ignore[misc]
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    async def check_override(self, changes: dict[str, Any],
                             current: dict[str, Any] | None = None) -> dict[str, Any]:
        """The overrides `changes` make of `current` (a None value removes one), if they make a
        valid policy together with the global one; PolicyError otherwise."""
        _check_names(changes, set(TENANT_FIELDS), tenant=True)
        new = {k: v for k, v in {**(current or {}), **changes}.items() if v is not None}
        (await self.get()).policy.merged(new).validate()
        return new

    async def set_override(self, tenant: str, changes: dict[str, Any],
                           by: str) -> dict[str, Any] | None:
        """Change a tenant's overrides (a None value removes that override)."""
        current = await self.override(tenant) or {}
        new = await self.check_override(changes, current)
        async with self.redis.pipeline(transaction=True) as pipe:
            if new:
                pipe.hset(self._overrides, tenant, json.dumps(new))
            else:
                pipe.hdel(self._overrides, tenant)
            self._record(pipe, None, by, f"tenant:{tenant}", _diff(current, new))
            await pipe.execute()
        return new or None

    async def forget(self, tenant: str) -> None:
        await self.redis.hdel(self._overrides, tenant)  # type: ignore[misc]

    async def for_tenant(self, tenant: str | None) -> Policy:
        """The policy that applies to `tenant` (the global one with its overrides), in one
        round trip: every collected exec of a tenant reads it."""
        if not tenant:
            return (await self.get()).policy
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(self._global)
            pipe.hget(self._overrides, tenant)
            raw, override = await pipe.execute()
        base = Policy.from_dict(json.loads(raw)["policy"]) if raw else Policy()
        return base.merged(json.loads(override) if override else None)

    async def effective(self) -> tuple[Policy, dict[str, Policy]]:
        """The global policy and each overriding tenant's merged one (invalid stored overrides
        cannot happen: they are validated on the way in)."""
        base = (await self.get()).policy
        return base, {t: base.merged(o) for t, o in (await self.overrides()).items()}

    async def history(self, limit: int = 50) -> list[dict[str, Any]]:
        raw = await self.redis.lrange(self._history, 0, limit - 1)  # type: ignore[misc]
        return [json.loads(item) for item in raw]

    def _record(self, pipe: Any, version: int | None, by: str, scope: str,
                changes: dict[str, dict[str, Any]]) -> None:
        entry = {"version": version, "at": time.time(), "by": by, "scope": scope,
                 "changes": changes}
        pipe.lpush(self._history, json.dumps(entry))
        pipe.ltrim(self._history, 0, HISTORY_LIMIT - 1)


def _check_names(changes: dict[str, Any], allowed: set[str], tenant: bool = False) -> None:
    unknown = sorted(set(changes) - allowed)
    if not unknown:
        return
    if tenant and set(unknown) <= _FIELDS:
        raise PolicyError(f"{', '.join(unknown)} can only be set globally (PUT /v1/policy): it "
                          "bounds the whole host, not one tenant")
    raise PolicyError(f"unknown policy field(s) {', '.join(unknown)}; the fields are "
                      f"{', '.join(sorted(allowed))}")


def _diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: {"from": old.get(k), "to": new.get(k)}
            for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}

