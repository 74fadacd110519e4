/**
 * Tenant: a tenant of a Burrow server (an end user of the product), its key, its home box,
 * and its own agent — the route a product's backend sends its users' requests through.
 * Creating, listing and deleting tenants needs the operator key; a tenant's own key reaches
 * its agent.
 */

import type { ClientOptions } from "./config.js"
import { clientConfig, resolve, splitClient } from "./config.js"
import { InvalidRequestError } from "./errors.js"
import { Http, segment } from "./http.js"
import type { MemoryKind } from "./memory.js"
import { Memories } from "./memory.js"
import type {
  AgentAskAnswer, AgentProfile, CamelKeys, Expect, NoneMissing, RecallResult, TenantInfo,
  TenantPolicyBody,
} from "./wire.js"
import { checkOptions, toWire } from "./wire.js"
import type { Camel } from "./wire.js"

/** A tenant agent's answer: its HTTP status, its body (JSON decoded when it is JSON), and
 * the request id the answer's observation is recorded under. */
export interface AgentAnswer {
  status: number
  body: unknown
  requestId: string | null
}

export interface RecallOptions {
  /** Most results, 1 to 100 (default 10). */
  limit?: number
  /** Only what was said from then on (unix seconds or ISO 8601). */
  since?: number | string
  /** Only what was said until then (unix seconds or ISO 8601). */
  until?: number | string
  /** Only these kinds: preference, fact, event, plan, episode. */
  kinds?: MemoryKind[]
}

export interface AgentRequestOptions {
  /** A JSON body. */
  json?: unknown
  /** X-Request-Id here names the request in what the agent learns from it. */
  headers?: Record<string, string>
  /** Seconds the agent may take to answer, beyond the client's requestTimeoutS. */
  timeoutS?: number
}

const POLICY_KEYS = ["pauseAfterS", "freezeAfterS", "archiveAfterS", "keepAlive",
                     "maxBoxesPerTenant", "maxTenantDiskMb", "tenantKeepAlive",
                     "tenantTokenBudget", "modelAllowlist", "agentModel",
                     "maxSnapshotsPerTenant", "maxTenantExecOutputMb", "contributeMinAgeS",
                     "contributeMinTurns", "relayAllowFields", "relayAllowTools",
                     "relayAllowBetas", "allowPublicPorts"] as const
type _PolicyFields = Expect<NoneMissing<Exclude<CamelKeys<TenantPolicyBody>, (typeof POLICY_KEYS)[number]>>>

function tenantPath(id: string): string {
  return `/v1/tenants/${segment(id, "the tenant id")}`
}

/** The tenant's agent, in its home box (woken on the first request if frozen). Every request
 * and answer is observed: the agent learns the tenant from them. */
export class TenantAgent {
  readonly #http: Http
  readonly #path: string

  /** @internal */
  constructor(http: Http, tenantId: string) {
    this.#http = http
    this.#path = `${tenantPath(tenantId)}/agent`
  }

  /** Any request to the agent (`path` is the agent's own, e.g. "/ask"); its answer, or the
   * BurrowError of an error status. */
  async request(method: string, path: string, options: AgentRequestOptions = {}): Promise<AgentAnswer> {
    checkOptions(options, ["json", "headers", "timeoutS"], "agent.request()")
    const { json, headers, timeoutS } = options
    const answer = await this.#http.request(method.toUpperCase(), `${this.#path}/${path.replace(/^\/+/, "")}`,
                                            { json, headers, waitS: timeoutS })
    const text = new TextDecoder().decode(answer.body)
    let body: unknown = text || null
    try {
      body = text ? JSON.parse(text) : null
    } catch {
      // not JSON: the text as it came
    }
    return { status: answer.status, body, requestId: answer.headers.get("x-request-id") }
  }

  /** POST /ask { question }: the agent's answer, and what it used to give it. */
  async ask(question: string, extra: Record<string, unknown> = {}): Promise<AgentAskAnswer> {
    if (typeof question !== "string") {
      throw new TypeError(`agent.ask(): the question must be a string, not ${typeof question}`)
    }
    return (await this.request("POST", "/ask", { json: { ...extra, question } })).body as AgentAskAnswer
  }

  /** GET /profile: what the agent has learned of the tenant. */
  async profile(): Promise<AgentProfile> {
    return (await this.request("GET", "/profile")).body as AgentProfile
  }

  /** POST /recall: memories and the tenant's own turns for `query`, most relevant first,
   * each with `request_ids` (the X-Request-Ids it came from); `since`/`until` (unix seconds
   * or ISO 8601) bound when it was said; not learned from. */
  async recall(query: string, options: RecallOptions = {}): Promise<RecallResult[]> {
    checkOptions(options, ["limit", "since", "until", "kinds"], "agent.recall()")
    if (typeof query !== "string") {
      throw new TypeError(`agent.recall(): the query must be a string, not ${typeof query}`)
    }
    const body: Record<string, unknown> = { query, limit: options.limit ?? 10 }
    for (const name of ["since", "until", "kinds"] as const) {
      if (options[name] !== undefined) body[name] = options[name]
    }
    const answer = await this.request("POST", "/recall", { json: body })
    const results = (answer.body as { results?: unknown } | null)?.results
    if (answer.status !== 200 || !Array.isArray(results)) {
      throw new InvalidRequestError(`the agent's /recall answered ${answer.status} without results`,
                                    { status: answer.status })
    }
    return results as RecallResult[]
  }
}

/** A tenant. `Tenant.create()` (operator key) returns it with `apiKey`, its own key, shown
 * once; `tenant.agent` talks to its agent. */
export class Tenant {
  info: TenantInfo
  readonly agent: TenantAgent
  readonly memories: Memories
  readonly #http: Http

  /** @internal */
  constructor(info: TenantInfo, http: Http) {
    this.info = info
    this.#http = http
    this.agent = new TenantAgent(http, info.id)
    this.memories = new Memories(http, tenantPath(info.id))
  }

  get id(): string {
    return this.info.id
  }

  /** The tenant's key: only on the object create() returned (it is stored hashed). */
  get apiKey(): string | null {
    return this.info.api_key ?? null
  }

  /** A new tenant with its home box and key (operator key). `policy`: overrides of the
   * operator's policy for this tenant. */
  static async create(options: { id?: string; policy?: Camel<TenantPolicyBody> } & ClientOptions = {}): Promise<Tenant> {
    const [rest, client] = splitClient(options, ["id", "policy"], "Tenant.create()")
    const body = toWire(rest, ["id", "policy"], "Tenant.create()")
    if (body["policy"] !== undefined && body["policy"] !== null) {
      body["policy"] = toWire(body["policy"] as object, POLICY_KEYS, "Tenant.create()'s policy")
    }
    const http = new Http(resolve(client))
    return new Tenant(await http.json<TenantInfo>("POST", "/v1/tenants", { json: body }), http)
  }

  /** A tenant by id (operator key): its state, last activity, storage. */
  static async get(tenantId: string, options: ClientOptions = {}): Promise<Tenant> {
    const http = new Http(clientConfig(options, "Tenant.get()"))
    return new Tenant(await http.json<TenantInfo>("GET", tenantPath(tenantId)), http)
  }

  /** A handle on a tenant without asking the server (for a tenant key, which cannot read the
   * tenant record): what a product's backend uses to reach a user's agent. */
  static connect(tenantId: string, options: ClientOptions = {}): Tenant {
    segment(tenantId, "the tenant id")
    return new Tenant({ id: tenantId }, new Http(clientConfig(options, "Tenant.connect()")))
  }

  /** Every tenant (operator key). */
  static async list(options: ClientOptions = {}): Promise<TenantInfo[]> {
    const http = new Http(clientConfig(options, "Tenant.list()"))
    return http.json<TenantInfo[]>("GET", "/v1/tenants")
  }

  /** Delete the tenant: its key stops working at once; its boxes, snapshots and support of
   * shared insights go (operator key). */
  async delete(): Promise<void> {
    await this.#http.request("DELETE", tenantPath(this.id))
  }

  /** Stop what this object still has in flight. */
  close(): void {
    this.#http.close()
  }
}
