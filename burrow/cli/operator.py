"""Operator commands: the freeze policy, stats and tenants."""

from __future__ import annotations

import time
from typing import Any

import click

from burrow.cli.app import call, json_option, main, seg
from burrow.cli.output import echo_json, human_age, human_bytes, human_s, kv, progress, table
from burrow.cli.params import Count, Duration, Size


@main.group()
def policy() -> None:
    """Show or change the idle freeze policy (operator key)."""


@policy.command("show")
@click.option("--tenant", help="show this tenant's overrides and what applies to it")
@click.option("--history", is_flag=True, help="also list recent changes: who, when, what")
@json_option
def policy_show(tenant: str | None, history: bool, as_json: bool) -> None:
    """Show the global policy (or a tenant's overrides). It applies on every sweep."""
    current = call("GET", "/v1/policy")
    data: dict[str, Any] = {"global": current}
    if tenant:
        data["tenant"] = call("GET", f"/v1/tenants/{seg(tenant)}")["policy"] or {}
    if history:
        data["history"] = call("GET", "/v1/policy/history?limit=20")
    if as_json:
        echo_json(data)
        return
    values = dict(current["policy"])
    by = current["updated_by"] or "nobody (defaults)"
    click.echo(f"global policy, version {current['version']}, last changed by {by}")
    if tenant:
        click.echo(f"tenant {tenant} overrides: "
                   + (", ".join(f"{k}={v}" for k, v in data["tenant"].items()) or "none"))
        values.update(data["tenant"])
    for name in ("pause_after_s", "freeze_after_s", "archive_after_s"):
        click.echo(f"  {name:26} {human_s(values[name])}")
    click.echo(f"  {'keep_alive':26} {'yes' if values['keep_alive'] else 'no'}")
    warm = values["max_warm_boxes"]
    click.echo(f"  {'max_warm_boxes':26} {'no limit' if warm is None else warm}")
    click.echo(f"  {'local_layer_budget_bytes':26} "
               f"{human_bytes(values['local_layer_budget_bytes'])}")
    click.echo("ceilings for tenants:")
    for name in CEILINGS:
        click.echo(f"  {name:26} {_shown(values.get(name))}")
    for change in data.get("history", []):
        fields = ", ".join(f"{k} {v['from']}->{v['to']}" for k, v in change["changes"].items())
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(change["at"]))
        click.echo(f"  {when}  {change['scope']:18} {change['by']}: {fields or 'no change'}")


CEILINGS = ("max_box_memory_mb", "max_box_disk_mb", "max_box_pids", "max_box_cpus",
            "max_boxes_per_tenant", "max_tenant_disk_mb", "max_snapshots_per_tenant",
            "max_box_labels", "max_box_env_bytes", "max_tenant_exec_output_mb",
            "tenant_keep_alive", "egress_allow", "egress_deny", "model_allowlist",
            "model_max_tokens", "tenant_token_budget", "token_budget_period_s",
            "model_calls_per_minute", "embed_texts_per_minute", "agent_model",
            "relay_allow_fields", "relay_allow_tools", "relay_allow_betas",
            "contribute_min_age_s", "contribute_min_turns")


@policy.command("set")
@click.option("--tenant", help="override for this tenant only (for the idle times, "
                               "keep-alive, --max-boxes, --max-tenant-disk, --max-snapshots, "
                               "--max-exec-output, --tenant-keep-alive, --token-budget, "
                               "--model-allow, --agent-model, the --relay-allow-* lists and "
                               "--contribute-after/--contribute-turns)")
@click.option("--pause-after", type=Duration(), help="pause (RAM kept) after this idle time; "
                                                     "e.g. 5m, or never")
@click.option("--freeze-after", type=Duration(), help="freeze to disk after this idle time")
@click.option("--archive-after", type=Duration(),
              help="drop a frozen box's local layer after this idle time")
@click.option("--keep-alive/--no-keep-alive", default=None, help="never idle-freeze")
@click.option("--max-warm", type=Count(), help="most running or paused boxes; none: no limit")
@click.option("--layer-budget", type=Size(), help="most local disk for frozen layers, e.g. 20G")
@click.option("--max-box-memory", type=Count(), help="ceiling: a tenant box's memory, MB")
@click.option("--max-box-disk", type=Count(), help="ceiling: a tenant box's disk, MB")
@click.option("--max-box-pids", type=Count(), help="ceiling: processes in a tenant box")
@click.option("--max-box-cpus", type=float, help="ceiling: CPUs of a tenant box")
@click.option("--max-boxes", type=Count(), help="ceiling: boxes per tenant")
@click.option("--max-tenant-disk", type=Count(),
              help="ceiling: a tenant's disk, all boxes and named snapshots, MB")
@click.option("--max-snapshots", type=Count(), help="ceiling: named snapshots per tenant")
@click.option("--max-labels", type=Count(), help="ceiling: labels on a tenant box")
@click.option("--max-env-bytes", type=Count(), help="ceiling: a tenant box's env, bytes")
@click.option("--max-exec-output", type=Count(),
              help="ceiling: output a tenant's collected execs hold at once, MB")
@click.option("--tenant-keep-alive/--no-tenant-keep-alive", default=None,
              help="whether tenants may create keep_alive boxes")
@click.option("--egress-allow", multiple=True, metavar="RULE",
              help="what egress boxes may reach beyond public addresses (CIDR, addr:port, "
                   "*:port); repeatable; '' clears")
@click.option("--egress-deny", multiple=True, metavar="RULE",
              help="what egress boxes may never reach; repeatable; '' clears")
@click.option("--model-allow", multiple=True, metavar="PATTERN",
              help="models boxes may call (e.g. 'local/*'); repeatable; '*' for any")
@click.option("--model-max-tokens", type=Count(), help="clamp each model call's max_tokens")
@click.option("--token-budget", type=Count(), help="model tokens per tenant per period")
@click.option("--calls-per-minute", type=Count(), help="model calls per tenant per minute")
@click.option("--embeds-per-minute", type=Count(),
              help="texts the host embeds per tenant per minute (recall queries)")
@click.option("--agent-model", metavar="PROVIDER/NAME",
              help="the model tenant agents answer /ask through and (unless local/) distil "
                   "memories with; '' for the server's BURROW_AGENT_MODEL")
@click.option("--relay-allow-field", multiple=True, metavar="FIELD",
              help="a request field the model relay forwards as sent (e.g. mcp_servers); "
                   "repeatable; '' clears")
@click.option("--relay-allow-tool", multiple=True, metavar="PATTERN",
              help="a server-side tool type the model relay forwards (e.g. 'web_search*'); "
                   "repeatable; '' clears")
@click.option("--relay-allow-beta", multiple=True, metavar="PATTERN",
              help="a beta flag the model relay forwards; repeatable; '' clears")
@click.option("--contribute-after", type=Duration(),
              help="a tenant's age before its agent's proposals count in the shared "
                   "knowledge base, e.g. 1d; 0 for at once")
@click.option("--contribute-turns", type=Count(),
              help="turns a tenant must have had before its proposals count")
@json_option
@click.pass_context
def policy_set(ctx: click.Context, /, tenant: str | None, as_json: bool, **values: Any) -> None:
    """Change only the given settings. The next sweep, box creation, wake or model call
    applies them."""
    names = {"pause_after": "pause_after_s", "freeze_after": "freeze_after_s",
             "archive_after": "archive_after_s", "keep_alive": "keep_alive",
             "max_warm": "max_warm_boxes", "layer_budget": "local_layer_budget_bytes",
             "max_box_memory": "max_box_memory_mb", "max_box_disk": "max_box_disk_mb",
             "max_box_pids": "max_box_pids", "max_box_cpus": "max_box_cpus",
             "max_boxes": "max_boxes_per_tenant", "max_tenant_disk": "max_tenant_disk_mb",
             "max_snapshots": "max_snapshots_per_tenant", "max_labels": "max_box_labels",
             "max_env_bytes": "max_box_env_bytes",
             "max_exec_output": "max_tenant_exec_output_mb",
             "relay_allow_field": "relay_allow_fields", "relay_allow_tool": "relay_allow_tools",
             "relay_allow_beta": "relay_allow_betas",
             "contribute_after": "contribute_min_age_s",
             "contribute_turns": "contribute_min_turns",
             "tenant_keep_alive": "tenant_keep_alive", "egress_allow": "egress_allow",
             "egress_deny": "egress_deny", "model_allow": "model_allowlist",
             "model_max_tokens": "model_max_tokens", "token_budget": "tenant_token_budget",
             "calls_per_minute": "model_calls_per_minute",
             "embeds_per_minute": "embed_texts_per_minute", "agent_model": "agent_model"}
    given = {names[k]: _list_value(k, v) for k, v in values.items()
             if ctx.get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE}
    if not given:
        raise click.UsageError("nothing to change; give at least one setting (see --help)")
    path = f"/v1/tenants/{seg(tenant)}/policy" if tenant else "/v1/policy"
    result = call("PUT", path, given)
    if as_json:
        echo_json(result)
    elif tenant:
        click.echo(f"tenant {tenant} overrides: " + (", ".join(
            f"{k}={v}" for k, v in (result["policy"] or {}).items()) or "none"))
    else:
        click.echo(f"global policy is now version {result['version']}; the next sweep "
                   "applies it")


def _shown(value: Any) -> str:
    if value is None:
        return "no limit"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(value) or "none"
    return str(value)


def _list_value(name: str, value: Any) -> Any:
    """Repeatable options as lists: '' clears a list; --model-allow '*' allows any model;
    --agent-model '' falls back to the server's model."""
    if name == "agent_model" and value == "":
        return None
    if not isinstance(value, tuple):
        return value
    items = [v for v in value if v]
    if name == "model_allow" and items == ["*"]:
        return None
    return items


@main.command()
@json_option
def stats(as_json: bool) -> None:
    """Show boxes per state, memory, storage and queues (operator key)."""
    data = call("GET", "/v1/stats")
    if as_json:
        echo_json(data)
        return
    states = ", ".join(f"{n} {s}" for s, n in data["boxes"].items() if n) or "none"
    storage = data["storage"]
    sweep = data["sweep"]
    last = ("never" if sweep["last_at"] is None
            else f"{data['now'] - sweep['last_at']:.0f}s ago")
    click.echo(f"tenants        {data['tenants']}")
    click.echo(f"boxes          {states}")
    click.echo(f"warm memory    {human_bytes(data['warm_memory_bytes'])}")
    click.echo(f"local layers   {human_bytes(storage['local_layer_bytes'])}")
    click.echo(f"snapshots      {human_bytes(storage['logical_bytes'])} logical, "
               f"{human_bytes(storage['stored_bytes'])} stored")
    click.echo(f"observations   {data['observations']['queue_depth']} queued jobs, "
               f"{data['observations']['backlog']} pairs waiting")
    click.echo(f"knowledge      {data['knowledge']['insights']} insights")
    click.echo(f"last sweep     {last} (every {sweep['interval_s']:g}s)")


@main.group()
def tenant() -> None:
    """Create, list and delete tenants (operator key)."""


@tenant.command("create")
@click.argument("tenant_id", metavar="[ID]", required=False)
@click.option("--pause-after", type=Duration(), help="this tenant's boxes pause after this "
                                                     "idle time, e.g. 5m (overrides the global "
                                                     "policy)")
@click.option("--freeze-after", type=Duration(), help="freeze to disk after this idle time")
@click.option("--keep-alive", is_flag=True, default=None, help="never idle-freeze its boxes")
@json_option
def tenant_create(tenant_id: str | None, pause_after: float | None, freeze_after: float | None,
                  keep_alive: bool | None, as_json: bool) -> None:
    """Create a tenant with its home box and API key.

    The ID is generated when absent. The key is printed only now.
    """
    policy = {k: v for k, v in (("pause_after_s", pause_after), ("freeze_after_s", freeze_after),
                                ("keep_alive", keep_alive)) if v is not None}
    body: dict[str, Any] = {"id": tenant_id}
    if policy:
        body["policy"] = policy
    with progress("creating tenant and its home box"):
        created = call("POST", "/v1/tenants", body)
    if as_json:
        echo_json(created)
        return
    kv([("tenant", created["id"]), ("api key", created["api_key"]),
        ("home box", created["home_box_id"])])
    click.echo("the key is shown only now: store it (export BURROW_API_KEY=... to act as "
               "this tenant)", err=True)


@tenant.command("ls")
@json_option
def tenant_ls(as_json: bool) -> None:
    """List tenants with their home box state, idle time and storage."""
    tenants = call("GET", "/v1/tenants")
    if as_json:
        echo_json(tenants)
        return
    if not tenants:
        click.echo("no tenants; create one with `burrow tenant create`")
        return
    now = time.time()
    table(["TENANT", "STATE", "IDLE", "STORAGE", "BOXES", "POLICY"],
          [(t["id"], t["state"], human_age(max(0.0, now - t["last_active_at"])),
            human_bytes(t["storage_bytes"]), t["boxes"],
            ", ".join(f"{k}={v}" for k, v in (t["policy"] or {}).items()) or "-")
           for t in tenants], right=("IDLE", "STORAGE", "BOXES"))


@tenant.command("rm")
@click.argument("tenant_ids", metavar="ID...", nargs=-1, required=True)
@json_option
def tenant_rm(tenant_ids: tuple[str, ...], as_json: bool) -> None:
    """Delete tenants with their boxes and snapshots. Their keys stop working at once."""
    for tenant_id in tenant_ids:
        with progress(f"deleting tenant {tenant_id}"):
            call("DELETE", f"/v1/tenants/{seg(tenant_id)}")
        if not as_json:
            click.echo(f"deleted tenant {tenant_id}")
    if as_json:
        echo_json({"deleted": list(tenant_ids)})
