"""Every Redis key of one Burrow instance, spelled here and nowhere else (like arq's
constants.py): one method per key family, each under the instance's prefix
(BURROW_REDIS_PREFIX), so that instances sharing one Redis never touch each other's state.

The job queue is an instance's too. arq names its own keys `arq:job:<job id>`,
`arq:result:<job id>`, `arq:in-progress:<job id>` and `arq:retry:<job id>`, and a cron job's
id is `<its name>:<its time>`: left to its defaults, every instance shares `arq:queue`, a
worker runs another instance's jobs (with its own services), and two instances' crons take
the same ids, so one of them skips. Here the queue is `{prefix}:queue` and every job id
(cron names included) starts with `{prefix}:`, so arq's keys are the instance's too
(`owns()` tells them apart).

The lower packages do not import this module (they sit below core/): each names the
families it needs as a Protocol (boxes/keys.py, knowledge/keys.py, models/keys.py) that
`Keys` answers, and is handed the instance's `Keys`.
"""

from __future__ import annotations

import re

from arq.constants import (
    health_check_key_suffix,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)

PREFIX = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
DEFAULT_PREFIX = "burrow"
# arq's keys of one job: each is followed by the job's id.
_ARQ_JOB_KEYS = (job_key_prefix, result_key_prefix, in_progress_key_prefix, retry_key_prefix)


class Keys:
    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        if not PREFIX.match(prefix):
            raise ValueError(f"{prefix!r} is not a Redis prefix: lowercase letters, digits, "
                             "'_' and '-', starting with a letter, at most 32 characters")
        self.prefix = prefix

    def __repr__(self) -> str:
        return f"Keys({self.prefix!r})"

    def owns(self, key: str | bytes) -> bool:
        """Whether `key` is this instance's: under its prefix, or one of arq's keys of a job
        whose id is."""
        name = key.decode() if isinstance(key, bytes) else key
        mine = f"{self.prefix}:"
        return name.startswith(mine) or any(
            name.startswith(arq + mine) for arq in _ARQ_JOB_KEYS)

    # --- boxes (boxes/registry.py, boxes/locks.py) -------------------------------------------

    def box(self, box_id: str) -> str:
        """A box's record (hash)."""
        return f"{self.prefix}:box:{box_id}"

    def boxes(self) -> str:
        """The ids of every box (set)."""
        return f"{self.prefix}:boxes"

    def owner_boxes(self, owner: str) -> str:
        """The ids of an owner's boxes (set): listing a tenant's boxes reads its own only."""
        return f"{self.prefix}:boxes:owner:{owner}"

    def closed_owners(self) -> str:
        """Owners closed to new boxes while their deletion runs (set)."""
        return f"{self.prefix}:owners:closed"

    def uid_counter(self) -> str:
        """The last host uid given to a box, above the uid base (counter)."""
        return f"{self.prefix}:uid_counter"

    def box_lock(self, box_id: str) -> str:
        """The lock every transition of a box is taken under (token with a TTL)."""
        return f"{self.prefix}:lock:box:{box_id}"

    # --- box hosts (boxes/hosts.py, boxes/placement.py, boxes/registry.py) -------------------

    def hosts(self) -> str:
        """The ids of every registered host, live or lapsed a short while (set)."""
        return f"{self.prefix}:hosts"

    def host(self, host_id: str) -> str:
        """A host's registration: address, capacity, load, draining (hash; outlives the lease
        a while, so a lapsed host is still listed)."""
        return f"{self.prefix}:host:{host_id}"

    def host_lease(self, host_id: str) -> str:
        """A host's lease: it exists while the host renews it (flag with a TTL)."""
        return f"{self.prefix}:host-lease:{host_id}"

    def host_layers(self, host_id: str) -> str:
        """The box layers a host reports cached: box id -> generation (hash)."""
        return f"{self.prefix}:host-layers:{host_id}"

    def transport_nonce(self, nonce: str) -> str:
        """A nonce of a signed request between roles, kept while its time is valid
        (core/transport.py)."""
        return f"{self.prefix}:nonce:{nonce}"

    # --- preview URLs of boxes' ports (core/previews.py) -----------------------------------

    def box_ports(self, box_id: str) -> str:
        """A box's open ports, each with its auth and hashed secret (hash: port -> JSON)."""
        return f"{self.prefix}:ports:box:{box_id}"

    def owner_ports(self, owner: str) -> str:
        """The boxes of an owner that have open ports (set), for the owner's deletion."""
        return f"{self.prefix}:ports:owner:{owner}"

    # --- tenants (core/tenants.py) -----------------------------------------------------------

    def tenant(self, tenant: str) -> str:
        """A tenant's record (hash: its data, and `deleting` while it is deleted)."""
        return f"{self.prefix}:tenant:{tenant}"

    def tenant_reserved(self, tenant: str) -> str:
        """A tenant id taken while the tenant is created (flag with a TTL)."""
        return f"{self.prefix}:tenant:{tenant}:reserved"

    def api_key(self, key_hash: str) -> str:
        """The tenant an API key (by its hash) belongs to."""
        return f"{self.prefix}:apikey:{key_hash}"

    def tenants(self) -> str:
        """The ids of every tenant (set)."""
        return f"{self.prefix}:tenants"

    # --- agent runs (core/runs.py) -----------------------------------------------------------

    def run(self, run_id: str) -> str:
        """A run's record (JSON, kept a week)."""
        return f"{self.prefix}:run:{run_id}"

    def run_meter(self, run_id: str) -> str:
        """What the host counted of a relayed run's model calls (hash)."""
        return f"{self.prefix}:run:{run_id}:meter"

    def box_runs(self, box_id: str) -> str:
        """A box's runs, newest first (list)."""
        return f"{self.prefix}:runs:{box_id}"

    def runs_in_progress(self, box_id: str) -> str:
        """A box's relayed runs in progress: run id -> deadline (hash)."""
        return f"{self.prefix}:runs-in-progress:{box_id}"

    # --- observations (core/observations.py) -------------------------------------------------

    def observed_seq(self, tenant: str) -> str:
        """A tenant's last observation sequence number (counter)."""
        return f"{self.prefix}:obs:seq:{tenant}"

    def observed_backlog(self, tenant: str) -> str:
        """A tenant's pairs waiting for its agent, in sequence order (list)."""
        return f"{self.prefix}:obs:backlog:{tenant}"

    def observed_delivered(self, tenant: str) -> str:
        """A cluster tenant's pairs its agent was given that no durable snapshot of its box
        holds yet (list, in sequence order): given again if the box wakes from an older
        state (core/observations.py)."""
        return f"{self.prefix}:obs:delivered:{tenant}"

    def observed_dropped(self, tenant: str) -> str:
        """Pairs dropped because the tenant's backlog was full (counter)."""
        return f"{self.prefix}:obs:dropped:{tenant}"

    def observed_unanswered(self, tenant: str) -> str:
        """The mark of an agent that let a delivery time out (hash: n, until)."""
        return f"{self.prefix}:obs:stalled:{tenant}"

    def observed_pending(self) -> str:
        """"tenant box_id" of every backlog that may hold pairs (set)."""
        return f"{self.prefix}:obs:pending"

    def delivery_lease(self, tenant: str) -> str:
        """A tenant's delivery lease: one delivery at a time (token with a TTL)."""
        return f"{self.prefix}:lock:observe:{tenant}"

    # --- policy (core/policy.py) -------------------------------------------------------------

    def policy(self) -> str:
        """The global policy, versioned (JSON)."""
        return f"{self.prefix}:policy"

    def policy_overrides(self) -> str:
        """Tenants' overrides: tenant -> JSON (hash)."""
        return f"{self.prefix}:policy:tenants"

    def policy_history(self) -> str:
        """Every policy change, newest first (list)."""
        return f"{self.prefix}:policy:history"

    # --- the shared knowledge base (knowledge/base.py, knowledge/votes.py) -------------------

    def kb_tenant(self, tenant: str) -> str:
        """The clusters a tenant supports (set), so a withdrawal touches only them."""
        return f"{self.prefix}:kb:tenant:{tenant}"

    def kb_refused(self) -> str:
        """Proposals refused, by reason (hash of counters)."""
        return f"{self.prefix}:kb:refused"

    def kb_lock(self) -> str:
        """The lock merging writes are serialised by, across workers."""
        return f"{self.prefix}:lock:kb"

    def kb_votes(self, insight_id: str) -> str:
        """An insight's votes: contributor -> 1 or -1 (hash)."""
        return f"{self.prefix}:kb:votes:{insight_id}"

    def kb_voted(self, tenant: str) -> str:
        """The insights a tenant voted on (set)."""
        return f"{self.prefix}:kb:voted:{tenant}"

    # --- model budgets (models/budgets.py) ---------------------------------------------------

    def model_usage(self, tenant: str) -> str:
        """A tenant's model usage: provider:what -> count (hash)."""
        return f"{self.prefix}:model:usage:{tenant}"

    def model_usage_total(self) -> str:
        """Every tenant's model usage together (hash)."""
        return f"{self.prefix}:model:usage-total"

    def model_budget(self, tenant: str, window: int) -> str:
        """Tokens a tenant spent in one budget period (counter)."""
        return f"{self.prefix}:model:budget:{tenant}:{window}"

    def model_rate(self, tenant: str, minute: int) -> str:
        """A tenant's model calls in one minute (counter)."""
        return f"{self.prefix}:model:rate:{tenant}:{minute}"

    def model_embeds(self, tenant: str, minute: int) -> str:
        """Texts the host embedded for a tenant in one minute (counter)."""
        return f"{self.prefix}:model:embed:{tenant}:{minute}"

    def model_windows(self, tenant: str) -> str:
        """A pattern (SCAN MATCH) of a tenant's budget, rate and embed counters."""
        return f"{self.prefix}:model:*:{tenant}:*"

    # --- the idle sweep (workers/sweeper.py) -------------------------------------------------

    def sweep_due(self) -> str:
        """Set for one sweep interval after a sweep starts (flag with a TTL)."""
        return f"{self.prefix}:sweep:due"

    def sweep_lock(self) -> str:
        """Held while a sweep runs."""
        return f"{self.prefix}:lock:sweep"

    def sweep_last(self) -> str:
        """What the last sweep did (JSON)."""
        return f"{self.prefix}:sweep:last"

    # --- the operator's history (core/history.py) --------------------------------------------

    def history_wakes(self, minute: int) -> str:
        """Wakes that ended in one minute (counter with a TTL; minute: Unix time // 60)."""
        return f"{self.prefix}:history:wakes:{minute}"

    def history_wake_ms(self, minute: int) -> str:
        """A uniform sample of one minute's wake durations, in ms (list with a TTL)."""
        return f"{self.prefix}:history:wake-ms:{minute}"

    def history_samples(self) -> str:
        """Boxes per state, queue depth and backlog, one sample a minute scored by its minute
        (sorted set, cut to the window at each write)."""
        return f"{self.prefix}:history:samples"

    def history_claim(self, minute: int) -> str:
        """The worker that takes one minute's sample (flag with a TTL)."""
        return f"{self.prefix}:history:claim:{minute}"

    # --- the job queue (arq) -----------------------------------------------------------------

    def queue(self) -> str:
        """The instance's arq queue (sorted set of job ids)."""
        return f"{self.prefix}:queue"

    def worker_health(self) -> str:
        """Where a worker of this queue records that it is alive (arq's health check)."""
        return self.queue() + health_check_key_suffix

    def job(self, kind: str, *parts: str) -> str:
        """A job id: arq keys the job by it (`arq:job:<id>`, …), so it starts with the
        prefix; `parts` make it unique where a job must be one of its kind at a time."""
        return ":".join((f"{self.prefix}:job:{kind}", *parts))

    def job_taken(self, job_id: str) -> str:
        """arq's mark that a worker has taken the job `job_id` (deleted, it may run again)."""
        return in_progress_key_prefix + job_id

    def cron(self, name: str) -> str:
        """A cron job's name; arq makes each run's job id `<name>:<time>` from it."""
        return f"{self.prefix}:cron:{name}"
