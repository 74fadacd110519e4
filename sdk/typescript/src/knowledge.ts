/** Knowledge: the shared knowledge base, as the key may see it (a tenant key sees only
 * insights enough tenants support; the operator sees everything), and votes on what helped. */

import type { ClientOptions } from "./config.js"
import { resolve, splitClient } from "./config.js"
import { Http } from "./http.js"
import type { Insight } from "./wire.js"

export type InsightKind = "fact" | "preference" | "tip"

export interface KnowledgeSearchOptions extends ClientOptions {
  /** Most insights to return (default 5). */
  limit?: number
  /** Only insights of these kinds. */
  kinds?: InsightKind[]
  /** Only insights updated at or after this time (unix seconds). */
  since?: number
  /** Only insights updated at or before this time (unix seconds). */
  until?: number
}

export class Knowledge {
  /** Insights like `query`, most relevant first, above the server's relevance floor. */
  static async search(query: string, options: KnowledgeSearchOptions = {}): Promise<Insight[]> {
    const [rest, client] = splitClient(options, ["limit", "kinds", "since", "until"],
                                       "Knowledge.search()")
    const http = new Http(resolve(client))
    const body: Record<string, unknown> = { query, limit: rest.limit ?? 5, kinds: rest.kinds ?? [] }
    if (rest.since !== undefined) body.since = rest.since
    if (rest.until !== undefined) body.until = rest.until
    return http.json<Insight[]>("POST", "/v1/knowledge/search", { json: body })
  }

  /** The key's tenant found an insight helpful or not (one vote per tenant; the latest
   * counts); the insight with its tallies. Insights enough tenants reject fade. */
  static async vote(insightId: string, helpful: boolean, options: ClientOptions = {}): Promise<Insight> {
    const [, client] = splitClient(options, [], "Knowledge.vote()")
    const http = new Http(resolve(client))
    return http.json<Insight>("POST", `/v1/knowledge/insights/${encodeURIComponent(insightId)}/vote`,
                              { json: { helpful } })
  }
}
