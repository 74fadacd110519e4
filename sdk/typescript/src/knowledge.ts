/** Knowledge: the shared knowledge base, as the key may see it (a tenant key sees only
 * insights enough tenants support; the operator sees everything). */

import type { ClientOptions } from "./config.js"
import { resolve, splitClient } from "./config.js"
import { Http } from "./http.js"
import type { Insight } from "./wire.js"

export class Knowledge {
  /** Insights like `query`, most relevant first (`limit` default 5). */
  static async search(query: string, options: { limit?: number } & ClientOptions = {}): Promise<Insight[]> {
    const [rest, client] = splitClient(options, ["limit"], "Knowledge.search()")
    const http = new Http(resolve(client))
    return http.json<Insight[]>("POST", "/v1/knowledge/search", {
      json: { query, limit: rest.limit ?? 5 } })
  }
}
