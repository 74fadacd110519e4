"""The server's settings: one object, read from the environment, built by the app factory."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from boxes.stores import check_endpoint, parse_store_url
from core.roles import DEFAULT_HOST_LISTEN, parse_listen
from models.providers import PROVIDERS

_PLACEHOLDERS = {"changeme", "change-me", "secret", "password", "operator", "admin", "test",
                 "example", "xxx", "todo"}
MIN_KEY_LENGTH = 24
_DOMAIN = re.compile(r"^(?=.{1,200}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?"
                     r"(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")
_ORIGIN = re.compile(r"^https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?/?$")


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class Settings(BaseSettings):
    # hide_input_in_errors: a refused setting's error would otherwise carry every setting read,
    # the operator key, the server secret and the provider keys among them, to wherever it is
    # printed or logged.
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True,
                                      hide_input_in_errors=True)

    data_dir: Path = Field(Path("./.burrow"), validation_alias=_env("BURROW_DATA_DIR"))
    # What every Redis key of this instance starts with (instances may share one Redis).
    redis_prefix: str = Field("burrow", pattern=r"^[a-z][a-z0-9_-]{0,31}$",
                              validation_alias=_env("BURROW_REDIS_PREFIX"))
    # Where box sockets, mount points and the runtime image live (every box uid must reach
    # it; a tmpfs is right, also one mounted nosuid,nodev,noexec). One directory per data dir
    # is made below it.
    runtime_dir: Path = Field(Path("/run/burrow"), validation_alias=_env("BURROW_RUNTIME_DIR"))
    operator_key: SecretStr | None = Field(None, validation_alias=_env("BURROW_OPERATOR_KEY"))
    redis_url: str | None = Field(None, validation_alias=_env("REDIS_URL"))
    qdrant_url: str | None = Field(None, validation_alias=_env("QDRANT_URL"))
    embed_model: str | None = Field(None, validation_alias=_env("BURROW_EMBED_MODEL"))
    # Whether agents learn from their tenants' traffic (off: no pair is recorded).
    observe: bool = Field(True, validation_alias=_env("BURROW_OBSERVE"))
    # the worker embeds the tenant's words in each pair it delivers, for the agent's recall
    observe_embeddings: bool = Field(True, validation_alias=_env("BURROW_OBSERVE_EMBEDDINGS"))
    # Most pairs waiting for one tenant's agent; beyond it new pairs are dropped and counted.
    observe_backlog_max: int = Field(10_000, ge=1,
                                     validation_alias=_env("BURROW_OBSERVE_BACKLOG_MAX"))
    # How long a tenant's agent may take to answer one delivery (a batch of up to 200
    # pairs); past it the delivery is given up, its pairs stay in the backlog, and the
    # agent is skipped for this long, twice as long each time it fails again, up to
    # observe_backoff_max_s. A tenant's deliveries run one at a time, so an agent that does
    # not answer holds one of the worker's slots for this long at most.
    observe_deadline_s: float = Field(10.0, gt=0, le=600,
                                      validation_alias=_env("BURROW_OBSERVE_DEADLINE_S"))
    observe_backoff_max_s: float = Field(300.0, gt=0, le=86400,
                                         validation_alias=_env("BURROW_OBSERVE_BACKOFF_MAX_S"))
    # An insight is shown to other tenants once this many distinct tenants support it.
    k_anonymity: int = Field(2, ge=1, le=1000, validation_alias=_env("BURROW_K_ANONYMITY"))
    dev: bool = Field(False, validation_alias=_env("BURROW_DEV"))
    # Largest request body (file uploads, agent requests, exec stdin), in bytes.
    max_body_bytes: int = Field(100 * 1024 * 1024, gt=0,
                                validation_alias=_env("BURROW_MAX_BODY_BYTES"))
    # The public port's door (gateway/frontdoor.py): connections open at once; the headers'
    # size and how long they may take to arrive; the largest body of a route that takes JSON
    # (all but file uploads, exec, the agent route and observations, which take
    # max_body_bytes); how long a body may pause, and such a JSON body take whole; requests
    # being checked for a key (or served without one) at once; requests open at once per
    # tenant (the operator is not bound).
    max_connections: int = Field(4096, ge=16, validation_alias=_env("BURROW_MAX_CONNECTIONS"))
    max_header_bytes: int = Field(64 * 1024, ge=4096,
                                  validation_alias=_env("BURROW_MAX_HEADER_BYTES"))
    header_timeout_s: float = Field(10.0, gt=0, validation_alias=_env("BURROW_HEADER_TIMEOUT_S"))
    max_json_body_bytes: int = Field(1024 * 1024, ge=4096,
                                     validation_alias=_env("BURROW_MAX_JSON_BODY_BYTES"))
    body_idle_timeout_s: float = Field(30.0, gt=0,
                                       validation_alias=_env("BURROW_BODY_IDLE_TIMEOUT_S"))
    body_timeout_s: float = Field(60.0, gt=0, validation_alias=_env("BURROW_BODY_TIMEOUT_S"))
    max_unauthenticated: int = Field(256, ge=1,
                                     validation_alias=_env("BURROW_MAX_UNAUTHENTICATED"))
    tenant_max_concurrent: int = Field(128, ge=1,
                                       validation_alias=_env("BURROW_TENANT_MAX_CONCURRENT"))
    # How long a request may wait for its box to wake before it gets 503 and a retry hint.
    wake_wait_s: float = Field(30.0, gt=0, validation_alias=_env("BURROW_WAKE_WAIT_S"))
    # The tenant agent each home box runs (argv, JSON list); default: Burrow's own.
    agent_command: list[str] | None = Field(None, validation_alias=_env("BURROW_AGENT_COMMAND"))
    # How often the idle sweeper applies the freeze policy.
    sweep_interval_s: float = Field(5.0, ge=1, le=3600,
                                    validation_alias=_env("BURROW_SWEEP_INTERVAL_S"))
    # json: one object per line with the request id; text: for reading in a terminal.
    log_format: Literal["json", "text"] = Field("json", validation_alias=_env("BURROW_LOG_FORMAT"))
    run_worker: bool = Field(True, validation_alias=_env("BURROW_RUN_WORKER"))
    launcher_pool: int = Field(2, ge=0, validation_alias=_env("BURROW_LAUNCHER_POOL"))
    # First host uid given to boxes; instances sharing a host should use different ranges.
    uid_base: int = Field(2_000_000, ge=100_000, le=4_000_000_000,
                          validation_alias=_env("BURROW_UID_BASE"))
    # Model providers for agents in boxes (POST /v1/model/chat on the host socket). The keys
    # stay on the server: the gateway adds them to upstream calls; they never enter a box.
    anthropic_api_key: SecretStr | None = Field(None, validation_alias=_env("ANTHROPIC_API_KEY"))
    openai_api_key: SecretStr | None = Field(None, validation_alias=_env("OPENAI_API_KEY"))
    openrouter_api_key: SecretStr | None = Field(None,
                                                 validation_alias=_env("OPENROUTER_API_KEY"))
    anthropic_url: str = Field("https://api.anthropic.com",
                               validation_alias=_env("BURROW_ANTHROPIC_URL"))
    openai_url: str = Field("https://api.openai.com/v1", validation_alias=_env("BURROW_OPENAI_URL"))
    openrouter_url: str = Field("https://openrouter.ai/api/v1",
                                validation_alias=_env("BURROW_OPENROUTER_URL"))
    # Any OpenAI-compatible server (llama.cpp, vLLM, Ollama's /v1) for `local/...` models.
    local_model_url: str | None = Field(None, validation_alias=_env("BURROW_LOCAL_MODEL_URL"))
    # Per `local/` model name, the server that serves it (JSON); others go to local_model_url.
    # --local-model sets it for the bundled models, one llama.cpp server each.
    local_model_routes: dict[str, str] = Field(default_factory=dict,
                                               validation_alias=_env("BURROW_LOCAL_MODEL_ROUTES"))
    # Start the bundled local model server (llama.cpp with SmolLM2 135M and Gemma 3 270M) as a
    # child process and point local_model_url at it.
    local_model: bool = Field(False, validation_alias=_env("BURROW_LOCAL_MODEL"))
    # The model tenant agents answer through (provider/name), and by default distil memories
    # with; unset: they answer from what they know, and the rules learn.
    agent_model: str | None = Field(None, validation_alias=_env("BURROW_AGENT_MODEL"))
    # The model tenant agents distil memories with, one call per batch of new turns, off the
    # request path. Unset: agent_model, unless that is a local/ one (the bundled small models
    # extract worse than the rules, bench/memory.py --utterances; and llama.cpp answers one
    # request at a time, so extraction would queue /ask behind it); "none": the rules alone.
    agent_extract_model: str | None = Field(
        None, validation_alias=_env("BURROW_AGENT_EXTRACT_MODEL"))
    # The model the shared knowledge base asks (provider/name, on the operator's budget): to
    # state several tenants' contributions as one general sentence, and (unless
    # knowledge_model_distils is off) to rewrite each contribution as a general statement.
    # Whatever it answers is checked by rules first; unset: rules alone.
    knowledge_model: str | None = Field(None, validation_alias=_env("BURROW_KNOWLEDGE_MODEL"))
    knowledge_model_distils: bool = Field(
        True, validation_alias=_env("BURROW_KNOWLEDGE_MODEL_DISTILS"))
    # Where the git relay sends each git host's traffic (JSON, host -> base URL); a host not
    # named goes to https://<host>.
    git_hosts: dict[str, str] = Field(default_factory=dict,
                                      validation_alias=_env("BURROW_GIT_HOSTS"))
    # The DNS resolver egress boxes' forwarder asks (an IPv4 address); unset: the host's.
    egress_dns: str | None = Field(None, validation_alias=_env("BURROW_EGRESS_DNS"))
    # The host services socket (what boxes call): largest body, how long a box may take to
    # send its headers and between pieces of its body, requests open at once per box.
    host_max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024,
                                     validation_alias=_env("BURROW_HOST_MAX_BODY_BYTES"))
    host_header_timeout_s: float = Field(10.0, gt=0,
                                         validation_alias=_env("BURROW_HOST_HEADER_TIMEOUT_S"))
    host_idle_timeout_s: float = Field(30.0, gt=0,
                                       validation_alias=_env("BURROW_HOST_IDLE_TIMEOUT_S"))
    host_max_concurrent: int = Field(8, ge=1, validation_alias=_env("BURROW_HOST_MAX_CONCURRENT"))
    # Connections open at once to the host socket, per box (by the peer's uid) and in all; the
    # total is also held to a quarter of the process's file descriptor limit (its soft limit
    # is raised to the hard one at start), so that a flood of boxes leaves the rest of the
    # gateway its files.
    host_max_connections_per_box: int = Field(
        32, ge=1, validation_alias=_env("BURROW_HOST_MAX_CONNECTIONS_PER_BOX"))
    host_max_connections: int = Field(4096, ge=1,
                                      validation_alias=_env("BURROW_HOST_MAX_CONNECTIONS"))
    # Bytes of request bodies the host socket holds read ahead (git pushes stream, uncounted):
    # per box at once (at least one body of host_max_body_bytes), and for all boxes together.
    host_max_box_buffered_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, validation_alias=_env("BURROW_HOST_MAX_BOX_BUFFERED_BYTES"))
    host_max_buffered_bytes: int = Field(
        256 * 1024 * 1024, ge=1024, validation_alias=_env("BURROW_HOST_MAX_BUFFERED_BYTES"))
    # The git hosts a box's git relay may reach (JSON list) at https://<host>, on public
    # addresses only; hosts named in BURROW_GIT_HOSTS are reached as mapped there. Default: the
    # public forges.
    git_allowed_hosts: list[str] = Field(
        ["github.com", "gitlab.com", "bitbucket.org", "codeberg.org"],
        validation_alias=_env("BURROW_GIT_ALLOWED_HOSTS"))
    # How long one upstream model call may take, in seconds.
    model_timeout_s: float = Field(300.0, gt=0, validation_alias=_env("BURROW_MODEL_TIMEOUT_S"))

    # --- box hosts of a cluster: leases and placement (core/hosts.py, boxes/hosts.py) -----
    # How long a box host's lease lasts unless renewed (it renews every third of it): a host
    # not heard from for this long is lost, its boxes are woken on other hosts, and whatever
    # it still writes for them is refused.
    host_lease_s: float = Field(10.0, ge=0.5, le=300, validation_alias=_env("BURROW_HOST_LEASE_S"))
    # This machine's name among the box hosts (its id adds a tag per start); unset: its
    # hostname.
    host_name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,95}$",
                                  validation_alias=_env("BURROW_HOST_NAME"))
    # Where the gateways and the worker reach this box host (host:port or a URL); unset: its
    # name.
    host_address: str | None = Field(None, min_length=1, max_length=256,
                                     validation_alias=_env("BURROW_HOST_ADDRESS"))
    # The boxes this host runs at most at once, and the memory (MB) they may take together;
    # unset: the memory this process may use (its cgroup's limit, else the machine's).
    host_max_boxes: int = Field(1000, ge=1, validation_alias=_env("BURROW_HOST_MAX_BOXES"))
    host_memory_mb: int | None = Field(None, ge=1, validation_alias=_env("BURROW_HOST_MEMORY_MB"))
    # --- the tenant agents' reading of what their tenants say (core/parsing.py) -------------
    # The worker parses the tenant's words in each pair it delivers (spaCy's English pipeline,
    # in a child process of its own: ~15 ms of CPU a pair, ~700 MB) and embeds the memories
    # the agent will make of them, so that the agent finds what the tenant says about itself
    # by structure and tells updates by meaning; off: the agent's rules alone read the words.
    observe_parses: bool = Field(True, validation_alias=_env("BURROW_OBSERVE_PARSES"))

    # --- the snapshot store (boxes/stores.py; docs/boxes.md, "The snapshot store") ---
    # Where frozen boxes' snapshots live: unset, the data dir's store/ on this machine's disk;
    # file:///path, a directory of this machine; s3://bucket/prefix, any S3-compatible store
    # (credentials from the AWS chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a web identity
    # token, container or instance credentials). Checked at start.
    store_url: str = Field("", validation_alias=_env("BURROW_STORE_URL"))
    # The S3 API of a store that is not AWS S3 (SeaweedFS, Ceph RGW, Garage, R2), as
    # http(s)://host[:port]; and the bucket's region where the store needs one (unset:
    # AWS_REGION, else us-east-1).
    s3_endpoint: str | None = Field(None, validation_alias=_env("BURROW_S3_ENDPOINT"))
    s3_region: str | None = Field(None, validation_alias=_env("BURROW_S3_REGION"))
    # This host's cache of an s3 store's blobs and manifests (in the data dir), in bytes: the
    # least recently used go beyond it. A wake whose blobs are cached asks the store nothing.
    store_cache_bytes: int = Field(4 << 30, ge=1 << 20,
                                   validation_alias=_env("BURROW_STORE_CACHE_BYTES"))
    # Blobs a wake (or a freeze) fetches (or uploads) at once.
    store_fetch_parallel: int = Field(8, ge=1, le=64,
                                      validation_alias=_env("BURROW_STORE_FETCH_PARALLEL"))

    # --- the snapshot store's format during a rolling upgrade (docs/boxes.md, "Upgrading
    # hosts") ---
    # The manifest format a freeze to an s3:// store writes: 2, small files in pack objects
    # (a cold wake fetches a few objects, not one per file); or 1, every file a blob of its
    # own, as Burrow wrote before pack objects, which hosts still on such a release read.
    # Keep 1 until every host runs this release, then set 2. Both are always read; a file://
    # store writes 1 either way.
    store_format: int = Field(2, ge=1, le=2, validation_alias=_env("BURROW_STORE_FORMAT"))

    # --- the cluster's deployment (deploy/k8s/): what its manifests set that the roles read --
    # Where `burrow host` serves its API to the gateways and the worker (address:port); every
    # request but its health paths (core/roles.py) must be signed with the server secret.
    # Read by `burrow host`.
    host_listen: str = Field(DEFAULT_HOST_LISTEN, validation_alias=_env("BURROW_HOST_LISTEN"))
    # The secret box tokens, dashboard sessions and the signatures between roles derive from.
    # Unset: the data dir's server.secret, made on first start (one machine). A cluster's
    # roles each have a data dir of their own, so they must all be given this one (at least
    # 24 random characters: `openssl rand -hex 32`). Changing it signs out the dashboard and
    # gives running boxes tokens that no longer pass until they restart.
    server_secret: SecretStr | None = Field(None,
                                            validation_alias=_env("BURROW_SERVER_SECRET"))
    # How often a box host checkpoints each running box whose files changed (the changed part
    # of its layer, to the store): a lost host costs a box at most this much of its files.
    # 0: never. Read by `burrow host`.
    checkpoint_s: float = Field(60.0, ge=0, le=86400,
                                validation_alias=_env("BURROW_CHECKPOINT_S"))

    # --- preview URLs of boxes' ports (core/previews.py, gateway/preview.py; docs/previews.md)
    # Where the gateway serves previews (address:port), an origin of their own, never the
    # API's or the dashboard's; "off": no previews. Unset: `burrow serve` and `burrow gateway`
    # listen on their --host at their --port + 20 (8440); an app built otherwise serves none.
    preview_listen: str | None = Field(None, validation_alias=_env("BURROW_PREVIEW_LISTEN"))
    # Host-based previews, {port}-{box}.{domain} (a wildcard DNS name to the preview listener);
    # unset: path-based ones, {preview url}/{box}/{port}/.
    preview_domain: str | None = Field(None, validation_alias=_env("BURROW_PREVIEW_DOMAIN"))
    # The preview origin as browsers reach it (scheme://host[:port]): its scheme says whether
    # preview cookies are Secure (https). Unset: http:// and the listen address (in domain
    # mode the domain and the listen port).
    preview_url: str | None = Field(None, validation_alias=_env("BURROW_PREVIEW_URL"))
    # How long a preview request waits for the box's port to listen (a dev server starting
    # again after a wake) before it answers 502.
    preview_wait_s: float = Field(10.0, ge=0, le=60, validation_alias=_env("BURROW_PREVIEW_WAIT_S"))
    # Connections open at once to the preview listener, in all and per box.
    preview_max_connections: int = Field(
        2048, ge=1, validation_alias=_env("BURROW_PREVIEW_MAX_CONNECTIONS"))
    preview_max_connections_per_box: int = Field(
        128, ge=1, validation_alias=_env("BURROW_PREVIEW_MAX_CONNECTIONS_PER_BOX"))

    @field_validator("preview_listen")
    @classmethod
    def _preview_listen(cls, value: str | None) -> str | None:
        if value is None or value == "off":
            return value
        try:
            parse_listen(value)
        except ValueError as exc:
            raise ValueError(str(exc).replace("BURROW_HOST_LISTEN", "BURROW_PREVIEW_LISTEN")
                             + ', or "off"') from None
        return value

    @field_validator("preview_domain")
    @classmethod
    def _preview_domain(cls, value: str | None) -> str | None:
        if value and not _DOMAIN.match(value):
            raise ValueError(f"BURROW_PREVIEW_DOMAIN {value!r}: use a DNS name in lowercase, "
                             "such as preview.example.com (its wildcard *.preview.example.com "
                             "pointing at the preview listener)")
        return value or None

    @field_validator("preview_url")
    @classmethod
    def _preview_url(cls, value: str | None) -> str | None:
        if value and not _ORIGIN.match(value):
            raise ValueError(f"BURROW_PREVIEW_URL {value!r}: use scheme://host[:port] with "
                             "http or https and no path, such as https://preview.example.com")
        return value.rstrip("/") if value else None

    @field_validator("store_url")
    @classmethod
    def _store_url(cls, value: str) -> str:
        parse_store_url(value)
        return value

    @field_validator("s3_endpoint")
    @classmethod
    def _s3_endpoint(cls, value: str | None) -> str | None:
        return check_endpoint(value)

    # --- durable, general knowledge (knowledge/episodic.py, core/episodes.py) ---------------
    # Whether the worker attaches to each pair it delivers the sentences of the tenant's words
    # the host judges episodic (what happened around the time they were said, a mood), so the
    # tenant's agent proposes none of them as shared knowledge; the knowledge base refuses
    # them either way. Off: the parse is saved, the agent proposes them, the host refuses.
    observe_episodes: bool = Field(True, validation_alias=_env("BURROW_OBSERVE_EPISODES"))

    @field_validator("agent_model", "knowledge_model", "agent_extract_model")
    @classmethod
    def _model_name(cls, value: str | None, info: ValidationInfo) -> str | None:
        if not value:
            return None
        if value == "none" and info.field_name == "agent_extract_model":
            return value
        provider, _, name = value.partition("/")
        if provider not in PROVIDERS or not name:
            setting = f"BURROW_{(info.field_name or '').upper()}"
            raise ValueError(f"{setting} must be provider/name with provider one of "
                             f"{', '.join(PROVIDERS)} (for example local/gemma-3-270m or "
                             f"anthropic/claude-haiku-4-5), not {value!r}")
        return value

    @field_validator("host_listen")
    @classmethod
    def _host_listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        if self.dev:
            return self
        for name, secret, example, unset in (
                ("BURROW_OPERATOR_KEY", self.operator_key, "openssl rand -hex 24",
                 "leave it unset to have one generated"),
                ("BURROW_SERVER_SECRET", self.server_secret, "openssl rand -hex 32",
                 "leave it unset on one machine to keep the data dir's server.secret")):
            value = secret.get_secret_value() if secret is not None else None
            if value is not None and (value.lower() in _PLACEHOLDERS
                                      or len(value) < MIN_KEY_LENGTH):
                raise ValueError(
                    f"{name} looks like a placeholder; use a random key of at least "
                    f"{MIN_KEY_LENGTH} characters (for example `{example}`), {unset}, or set "
                    "BURROW_DEV=1 for local development")
        return self

    @property
    def extraction_model(self) -> str | None:
        """The model the worker names to the tenant agents for their extraction pass."""
        return self.extraction_model_for(self.agent_model)

    def extraction_model_for(self, agent_model: str | None) -> str | None:
        """The extraction pass's model for agents whose model is `agent_model` (a tenant's
        policy may name its own): BURROW_AGENT_EXTRACT_MODEL, else that model unless local."""
        if self.agent_extract_model is not None:
            return None if self.agent_extract_model == "none" else self.agent_extract_model
        return None if agent_model is None or agent_model.startswith("local/") else agent_model
