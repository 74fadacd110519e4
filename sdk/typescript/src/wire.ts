/**
 * What travels: the API's schemas under the SDK's names (all from src/openapi.ts, generated
 * from the server's OpenAPI document), and the one place where an options object in the
 * SDK's camelCase becomes a request body in the API's snake_case.
 */

import type { components } from "./openapi.js"

type Schemas = components["schemas"]

/** A box as the server last described it; `state` is one of creating running paused
 * freezing frozen archived waking deleting deleted failed. */
export type BoxInfo = Schemas["BoxPublic"]
export type AgentConfig = Schemas["AgentConfig"]
export type ExecResult = Schemas["ExecOut"]
/** One line of a streamed exec: `stdout`/`stderr` with `data`, then `exit` with `exit_code`. */
export type ExecChunk = Schemas["ExecChunk"]
export type FileEntry = Schemas["FileEntryOut"]
export type Snapshot = Schemas["SnapshotPublic"]
/** A preview URL of one of a box's ports (box.getPublicUrl()); `token` (bearer) and a made
 * `password` (basic) are shown only when the port is opened. `browserUrl` carries the token,
 * to open once in a browser (which then keeps a cookie and drops the token from the address). */
export type PortInfo = Schemas["PortPublic"]
export type Process = Schemas["ProcessPublic"]
export type ProcessLogPiece = Schemas["ProcessLogPiece"]
export type ProcessLogs = Schemas["ProcessLogs"]
export type ProcessChunk = Schemas["ProcessChunk"]
export type FileEvent = Schemas["FileEvent"]
export type PublicUrl = PortInfo & { browserUrl: string }
export type PortBody = Schemas["PortCreate"]
export type RunUsage = Schemas["RunUsage"]
export type Insight = Schemas["InsightOut"]
/** The built-in tenant agent's answer to `ask()`. */
export type AgentAskAnswer = Schemas["AgentAskOut"]
/** What the built-in tenant agent has learned of its tenant (`profile()`). */
export type AgentProfile = Schemas["AgentProfile"]
/** A memory (`m_…`) or an episode (`e_…`) of the tenant, with the request ids it came from. */
export type MemoryItem = Schemas["MemoryItem"]
export type MemoryPage = Schemas["MemoryPage"]
export type MemoryExport = Schemas["MemoryExport"]
export type MemoryWiped = Schemas["MemoryWiped"]
export type ObservedPair = Schemas["ObservedPair"]
export type ObservationsAccepted = Schemas["ObservationsAccepted"]
/** One result of `agent.recall()`: a memory or an episode, with its score (best: 1.0). */
export type RecallResult = Schemas["RecallResult"]

/** An agent run. `result` is the validated object when a responseSchema was given (parsed
 * by it, if it is a zod schema), else the final text; null unless the run completed. */
export type Run<T = string> = Omit<Schemas["RunPublic"], "result"> & { result: T | null }

/** One event of a streamed run: start, text, tool_call, tool_result, and last finish, whose
 * `run` is the final Run. */
export type RunChunk<T = string> =
  | Exclude<Schemas["RunChunk"], { type: "finish" }>
  | { type: "finish"; run: Run<T> }

/** A tenant: `id` always; the rest as far as the call that made the object learned it
 * (`api_key` only from `Tenant.create()`: it is stored hashed). */
export type TenantInfo = { id: string } & Partial<Omit<Schemas["TenantPublic"], "id">> &
  Partial<Omit<Schemas["TenantCreated"], "id">>

export type BoxCreateBody = Schemas["BoxCreate"]
export type ExecBody = Schemas["ExecIn"]
export type RunBody = Schemas["RunCreate"]
export type GitBody = Schemas["GitIn"]
export type LimitsBody = Schemas["LimitsIn"]
export type EgressBody = Schemas["EgressIn"]
export type McpServerBody = Schemas["McpServer"]
export type TenantPolicyBody = Schemas["TenantPolicy"]

type CamelCase<S extends string> = S extends `${infer Head}_${infer Tail}`
  ? `${Head}${Capitalize<CamelCase<Tail>>}`
  : S

/** A request body's fields under their camelCase names, all optional (the server has the
 * defaults). */
export type Camel<T> = { [K in keyof T as K extends string ? CamelCase<K> : K]?: T[K] }

/** The camelCase names of T's fields: a list of them checked against T. */
export type CamelKeys<T> = keyof Camel<T> & string

/** `true` when `Missing` is empty; with `Expect`, a list of option names that fails to
 * compile, naming the field, when the API has a field the list lacks. */
export type NoneMissing<Missing> = [Missing] extends [never] ? true : { missing: Missing }
export type Expect<T extends true> = T

function snake(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)
}

/** A key as a typo or another language spells it: keep_alive, keepalive, labels. */
function alike(key: string): string {
  return key.toLowerCase().replace(/_/g, "").replace(/s$/, "")
}

/** Throw a TypeError if `options` is not an object, or has a key not among `known`,
 * naming it (and the key it may have meant): `keep_alive: true` must not pass unnoticed. */
export function checkOptions(options: unknown, known: readonly string[], what: string): void {
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new TypeError(`${what} must be an object of options, not ${describe(options)}`)
  }
  for (const key of Object.keys(options)) {
    if (known.includes(key)) continue
    const close = known.find((k) => alike(k) === alike(key))
    throw new TypeError(`${what} has no option ${JSON.stringify(key)}` +
                        (close ? `; did you mean ${close}?` : `; it takes ${known.join(", ")}`))
  }
}

/**
 * The request body for `options` (checked by checkOptions): each key under the API's
 * snake_case name, undefined ones left out. Only the top level is renamed (values such as
 * env, labels or a JSON schema travel as they are).
 */
export function toWire(options: object, known: readonly string[],
                       what: string): Record<string, unknown> {
  checkOptions(options, known, what)
  const body: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(options)) {
    if (value !== undefined) body[snake(key)] = value
  }
  return body
}

/** A value as an error message names it. */
export function describe(value: unknown): string {
  if (value === null) return "null"
  if (Array.isArray(value)) return "an array"
  if (typeof value === "string") return JSON.stringify(value.length > 40 ? value.slice(0, 40) + "…" : value)
  return typeof value === "object" ? "an object" : `${typeof value} ${String(value)}`
}
