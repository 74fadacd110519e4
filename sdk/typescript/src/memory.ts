/**
 * Memories: what a tenant's agent holds of the tenant, as the tenant owns it (its own key,
 * or the operator's): list a page at a time, get, add, correct, delete one, delete all,
 * export; and observe(): pairs the product served itself (or a user's history it imports),
 * which the agent learns as if they had come through it. Items are memories (`m_…`) and
 * episodes (`e_…`, the tenant's own turns), each with `request_ids`, the X-Request-Ids it
 * came from.
 */

import { Http, segment } from "./http.js"
import type {
  MemoryExport, MemoryItem, MemoryPage, MemoryWiped, ObservationsAccepted, ObservedPair,
} from "./wire.js"
import { checkOptions } from "./wire.js"

/** The most pairs the server takes in one call. */
const OBSERVE_CHUNK = 1000

export type MemoryKind = "preference" | "fact" | "event" | "plan" | "episode"

export interface MemoriesListOptions {
  /** Only this kind; "episode" lists the tenant's turns instead of memories. */
  kind?: MemoryKind
  /** "all" adds the versions later ones superseded (default "current"). */
  status?: "current" | "all"
  /** Items per page, 1 to 500 (default 50). */
  limit?: number
  /** The `next_cursor` of the previous page. */
  cursor?: string
}

export interface MemoryAddOptions {
  /** What kind of memory it is (default "fact"). */
  kind?: Exclude<MemoryKind, "episode">
  /** What it is about (default: its text). */
  subject?: string
}

export class Memories {
  readonly #http: Http
  readonly #path: string

  /** @internal */
  constructor(http: Http, tenantPath: string) {
    this.#http = http
    this.#path = `${tenantPath}/memories`
  }

  #tenantPath(): string {
    return this.#path.slice(0, -"/memories".length)
  }

  #one(memoryId: string): string {
    return `${this.#path}/${segment(memoryId, "the memory id")}`
  }

  /** One page, newest first: { items, next_cursor, total }. */
  async list(options: MemoriesListOptions = {}): Promise<MemoryPage> {
    checkOptions(options, ["kind", "status", "limit", "cursor"], "memories.list()")
    const params = { status: options.status ?? "current", limit: String(options.limit ?? 50),
                     kind: options.kind, cursor: options.cursor }
    return this.#http.json<MemoryPage>("GET", this.#path, { params })
  }

  /** One memory, with `history` (the versions it superseded), or one episode. */
  async get(memoryId: string): Promise<MemoryItem> {
    return this.#http.json<MemoryItem>("GET", this.#one(memoryId))
  }

  /** Tell the agent something directly (source "api"). */
  async add(text: string, options: MemoryAddOptions = {}): Promise<MemoryItem> {
    checkOptions(options, ["kind", "subject"], "memories.add()")
    const body: Record<string, unknown> = { text, kind: options.kind ?? "fact" }
    if (options.subject !== undefined) body.subject = options.subject
    return this.#http.json<MemoryItem>("POST", this.#path, { json: body })
  }

  /** A corrected text: the new version supersedes the memory (its history is kept). */
  async correct(memoryId: string, text: string): Promise<MemoryItem> {
    return this.#http.json<MemoryItem>("PATCH", this.#one(memoryId), { json: { text } })
  }

  /** Delete a memory with the versions it superseded and the turns it came from (or one
   * episode); the ids removed. */
  async delete(memoryId: string): Promise<string[]> {
    return (await this.#http.json<{ deleted: string[] }>("DELETE", this.#one(memoryId))).deleted
  }

  /** Delete everything the agent holds of the tenant, with the requests not yet delivered
   * to it; nothing readable stays, and the home box's snapshot is replaced at its next
   * freeze. */
  async deleteAll(): Promise<MemoryWiped> {
    return this.#http.json<MemoryWiped>("DELETE", this.#path)
  }

  /** Everything, as JSON: { format: "burrow.memory/1", memories (every version), episodes, … }. */
  async export(): Promise<MemoryExport> {
    return this.#http.json<MemoryExport>("GET", `${this.#path}/export`)
  }

  /** Pairs the product served itself, for the agent to learn in order, as if they had come
   * through it: each { request: { method?, path?, body, headers? }, response?: { status,
   * body }, at?, request_id? } (bodies are strings or JSON values; headers only
   * x-burrow-user-text and x-burrow-said-at). Sent 1,000 per call; each call is stored whole
   * or not at all, so on an error the pairs of earlier calls are kept. */
  async observe(pairs: ObservedPair[]): Promise<ObservationsAccepted> {
    const totals = { accepted: 0, dropped: 0 }
    for (let start = 0; start < pairs.length; start += OBSERVE_CHUNK) {
      const answer = await this.#http.json<ObservationsAccepted>(
        "POST", `${this.#tenantPath()}/observations`,
        { json: { pairs: pairs.slice(start, start + OBSERVE_CHUNK) } })
      totals.accepted += answer.accepted
      totals.dropped += answer.dropped
    }
    return totals
  }
}
