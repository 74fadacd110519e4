/** Box: a box on a Burrow server, with its exec, files, git and agent. */

import type { McpServerOptions } from "./agent.js"
import { AgentRuns, mcpServersBody } from "./agent.js"
import type { ClientOptions } from "./config.js"
import { clientConfig, resolve, splitClient } from "./config.js"
import { Exec } from "./exec.js"
import { Files } from "./files.js"
import { Git } from "./git.js"
import { Http, segment } from "./http.js"
import { Processes } from "./processes.js"
import type {
  AgentConfig, BoxCreateBody, BoxInfo, Camel, CamelKeys, EgressBody, Expect, GitBody,
  LimitsBody, NoneMissing, PortBody, PortInfo, PublicUrl, Snapshot,
} from "./wire.js"
import { describe, toWire } from "./wire.js"

/** The agent of a box's runs: a harness (default Agent.Burrow), a provider/name model, and
 * the MCP servers its runs may use, by name. */
export type AgentOptions = Partial<Pick<AgentConfig, "harness">> & Pick<AgentConfig, "model"> & {
  mcpServers?: Record<string, McpServerOptions>
}

/** What a box is created with (the API's BoxCreate, in camelCase), and where to create it. */
export type CreateOptions = Omit<Camel<BoxCreateBody>, "agent" | "git" | "limits" | "egress"> & {
  /** The harness and model of agent runs. */
  agent?: AgentOptions
  /** Git for the box: the token never enters it (a relay on the host adds it). */
  git?: Camel<GitBody>
  limits?: Camel<LimitsBody>
  /** Narrow an egress box's reach. */
  egress?: Camel<EgressBody>
} & ClientOptions

const CREATE_KEYS = ["runtime", "name", "env", "labels", "keepAlive", "network", "egress",
                     "limits", "agent", "git", "fromSnapshot", "tenant"] as const
const NESTED: Record<string, readonly string[]> = {
  agent: ["harness", "model", "mcpServers"] satisfies readonly (keyof AgentOptions)[],
  git: ["token", "userName", "userEmail", "host", "repos"] satisfies readonly CamelKeys<GitBody>[],
  limits: ["memoryMb", "pids", "cpus", "diskMb"] satisfies readonly CamelKeys<LimitsBody>[],
  egress: ["allow", "deny"] satisfies readonly CamelKeys<EgressBody>[],
}
type _CreateFields = Expect<NoneMissing<Exclude<CamelKeys<BoxCreateBody>, (typeof CREATE_KEYS)[number]>>>
type _GitFields = Expect<NoneMissing<Exclude<CamelKeys<GitBody>, "token" | "userName" | "userEmail" | "host" | "repos">>>
type _LimitFields = Expect<NoneMissing<Exclude<CamelKeys<LimitsBody>, "memoryMb" | "pids" | "cpus" | "diskMb">>>

function createBody(options: Omit<CreateOptions, keyof ClientOptions>,
                    what: string): Record<string, unknown> {
  const body = toWire(options, CREATE_KEYS, what)
  for (const [name, keys] of Object.entries(NESTED)) {
    if (body[name] !== undefined && body[name] !== null) {
      body[name] = toWire(body[name] as object, keys, `${what}'s ${name}`)
    }
  }
  const agent = body["agent"] as Record<string, unknown> | undefined
  if (agent?.["mcp_servers"] !== undefined) {
    agent["mcp_servers"] = mcpServersBody(agent["mcp_servers"], `${what}'s agent`)
  }
  return body
}

function withBrowserUrl(port: PortInfo): PublicUrl {
  return { ...port, browserUrl: port.token ? `${port.url}?token=${port.token}` : port.url }
}

function portNumber(port: unknown): number {
  if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new TypeError(`the port must be an integer from 1 to 65535, not ${describe(port)}`)
  }
  return port
}

function boxPath(id: string): string {
  return `/v1/boxes/${segment(id, "the box id")}`
}

/**
 * A box: a persistent sandbox with its files, processes and agent.
 *
 *     const box = await Box.create({ runtime: "node", labels: { team: "x" } })
 *     const r = await box.exec.command("node -e 'console.log(1 + 1)'")
 *
 * The box lives on the server until `await box.delete()`. Settings come from BURROW_URL and
 * BURROW_API_KEY unless baseUrl / apiKey are given.
 */
export class Box {
  /** The box as last seen; every call that returns the box refreshes it. */
  info: BoxInfo
  readonly exec: Exec
  readonly files: Files
  readonly git: Git
  readonly agent: AgentRuns
  readonly processes: Processes
  readonly #http: Http

  /** @internal */
  constructor(info: BoxInfo, http: Http) {
    this.info = info
    this.#http = http
    const path = boxPath(info.id)
    this.exec = new Exec(http, path)
    this.files = new Files(http, path)
    this.git = new Git(this.exec)
    this.agent = new AgentRuns(http, path)
    this.processes = new Processes(http, path)
  }

  get id(): string {
    return this.info.id
  }

  /** The box's state when last seen; refresh() asks now. */
  get status(): string {
    return this.info.state
  }

  // --- finding and making boxes ----------------------------------------------------------

  /** Create a box and start it; it is ready for exec when this resolves.
   * agent: { harness: Agent.Burrow, model: "provider/name" }; git: { token, userName,
   * userEmail }; network: "none" (default) or "egress"; tenant: operator keys only, the
   * tenant that owns the box. */
  static async create(options: CreateOptions = {}): Promise<Box> {
    const [rest, client] = splitClient(options, CREATE_KEYS, "Box.create()")
    const http = new Http(resolve(client))
    const body = createBody(rest, "Box.create()")
    return new Box(await http.json<BoxInfo>("POST", "/v1/boxes", { json: body }), http)
  }

  /** A new box whose files start as the snapshot's. */
  static async fromSnapshot(snapshotId: string,
                            options: Omit<CreateOptions, "fromSnapshot"> = {}): Promise<Box> {
    segment(snapshotId, "the snapshot id")
    return Box.create({ ...options, fromSnapshot: snapshotId })
  }

  static async get(boxId: string, options: ClientOptions = {}): Promise<Box> {
    const http = new Http(clientConfig(options, "Box.get()"))
    return new Box(await http.json<BoxInfo>("GET", boxPath(boxId)), http)
  }

  /** The boxes this key may see; `label` "k:v" (or several) keeps those having every one. */
  static async list(options: { label?: string | readonly string[] } & ClientOptions = {}): Promise<Box[]> {
    const [rest, client] = splitClient(options, ["label"], "Box.list()")
    const config = resolve(client)
    const found = await new Http(config).json<BoxInfo[]>("GET", "/v1/boxes", {
      params: { label: rest.label } })
    return found.map((info) => new Box(info, new Http(config)))
  }

  /** The named snapshots this key may see. */
  static async snapshots(options: ClientOptions = {}): Promise<Snapshot[]> {
    const http = new Http(clientConfig(options, "Box.snapshots()"))
    return http.json<Snapshot[]>("GET", "/v1/snapshots")
  }

  static async deleteSnapshot(snapshotId: string, options: ClientOptions = {}): Promise<void> {
    const http = new Http(clientConfig(options, "Box.deleteSnapshot()"))
    await http.request("DELETE", `/v1/snapshots/${segment(snapshotId, "the snapshot id")}`)
  }

  // --- this box --------------------------------------------------------------------------

  async #state(action: string): Promise<BoxInfo> {
    this.info = await this.#http.json<BoxInfo>("POST", `${boxPath(this.id)}/${action}`)
    return this.info
  }

  /** Ask the server for the box's state now (also updates `status`). */
  async refresh(): Promise<BoxInfo> {
    this.info = await this.#http.json<BoxInfo>("GET", boxPath(this.id))
    return this.info
  }

  /** Hold the processes in RAM (no CPU); resume() is instant. */
  async pause(): Promise<BoxInfo> {
    return this.#state("pause")
  }

  async resume(): Promise<BoxInfo> {
    return this.#state("resume")
  }

  /** Stop the processes and pack the box to storage; any call (or wake()) wakes it. */
  async freeze(): Promise<BoxInfo> {
    return this.#state("freeze")
  }

  /** Freeze and drop the local layer; a wake restores it from storage. */
  async archive(): Promise<BoxInfo> {
    return this.#state("archive")
  }

  async wake(): Promise<BoxInfo> {
    return this.#state("wake")
  }

  /** A named snapshot of the box as it is now; start boxes from it with fromSnapshot(). */
  async snapshot(name: string): Promise<Snapshot> {
    if (typeof name !== "string" || !name) {
      throw new TypeError(`box.snapshot(): the name must be a non-empty string, not ${describe(name)}`)
    }
    return this.#http.json<Snapshot>("POST", `${boxPath(this.id)}/snapshots`, { json: { name } })
  }

  /** A preview URL for `port` (a server in the box listening on it): auth "bearer" (a token,
   * in `.token`; `.browserUrl` opens it in a browser), "basic" (`username`, `password`: made and
   * shown once when not given) or "public" (anyone with the URL, if the operator allows it). A
   * request to the URL wakes a frozen box. Asking again for the same port makes a new token;
   * the old one stops working. */
  async getPublicUrl(port: number, options: { auth?: PortBody["auth"], username?: string,
                                              password?: string } = {}): Promise<PublicUrl> {
    const body = { port, ...toWire(options, ["auth", "username", "password"],
                                   "box.getPublicUrl()") }
    return withBrowserUrl(await this.#http.json<PortInfo>(
      "POST", `${boxPath(this.id)}/ports`, { json: body }))
  }

  /** The box's open ports (without their tokens). */
  async listPublicUrls(): Promise<PublicUrl[]> {
    const ports = await this.#http.json<PortInfo[]>("GET", `${boxPath(this.id)}/ports`)
    return ports.map(withBrowserUrl)
  }

  /** Close the port's preview URL: its token and browsers' cookies stop working. */
  async closePublicUrl(port: number): Promise<void> {
    await this.#http.request("DELETE", `${boxPath(this.id)}/ports/${portNumber(port)}`)
  }

  /** Delete the box on the server (its files and processes). */
  async delete(): Promise<void> {
    await this.#http.request("DELETE", boxPath(this.id))
    this.info = { ...this.info, state: "deleted" }
  }

  /** Stop what this object still has in flight (streams, calls); the box stays as it is. */
  close(): void {
    this.#http.close()
  }
}
