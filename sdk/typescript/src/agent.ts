/** Agent runs in a box: `box.agent.run({ prompt })` to the end, `box.agent.stream(...)` event
 * by event. */

import { BurrowError } from "./errors.js"
import type { Http } from "./http.js"
import type { JsonSchema, Parsed, ResponseSchema, ZodLike } from "./schema.js"
import { checkSchema, jsonSchemaOf, parseRun } from "./schema.js"
import type {
  Camel, CamelKeys, Expect, McpServerBody, NoneMissing, Run, RunBody, RunChunk,
} from "./wire.js"
import { describe, toWire } from "./wire.js"

/** The agent harness that runs prompts in a box (`agent: { harness: Agent.ClaudeCode, ... }`). */
export const Agent = {
  /** Burrow's built-in harness. */
  Burrow: "burrow",
  ClaudeCode: "claude-code",
  Codex: "codex",
  OpenCode: "opencode",
} as const satisfies Record<string, NonNullable<RunBody["harness"]>>
export type Agent = (typeof Agent)[keyof typeof Agent]
// Every harness the API knows has its name here.
type _Harnesses = Expect<NoneMissing<Exclude<NonNullable<RunBody["harness"]>, Agent>>>

/**
 * An MCP server for agent runs: a `command` (with `args`, `env`, `cwd`) the run starts inside
 * the box, or a `url` (with `headers`) the box reaches through its own network. Its tools
 * reach the model as `mcp__<server>__<tool>`.
 */
export type McpServerOptions = Camel<McpServerBody>

const MCP_KEYS = ["command", "args", "env", "cwd", "url", "headers", "timeoutS"] as const
type _McpFields = Expect<NoneMissing<Exclude<CamelKeys<McpServerBody>, (typeof MCP_KEYS)[number]>>>

/** `{ name: server }` as the API takes it (a server's own keys in snake_case); what is wrong
 * with it is thrown here, at the call. */
export function mcpServersBody(servers: unknown, what: string): Record<string, unknown> {
  if (typeof servers !== "object" || servers === null || Array.isArray(servers)) {
    throw new TypeError(`${what}: mcpServers must be an object of servers by name, not ` +
                        describe(servers))
  }
  const body: Record<string, unknown> = {}
  for (const [name, server] of Object.entries(servers)) {
    body[name] = toWire(server as object, MCP_KEYS, `${what}'s MCP server ${JSON.stringify(name)}`)
  }
  return body
}

export interface RunOptions {
  prompt: string
  /** A JSON schema or a zod schema the result must match (the agent is asked again when it
   * does not); with a zod schema `result` is what it parses to. */
  responseSchema?: ResponseSchema
  /** Seconds the run may take (server default 600). */
  timeoutS?: number
  /** Model calls before the run gives up (server default 10). */
  maxTurns?: number
  /** provider/name, instead of the box's model. */
  model?: string
  /** Instead of the box's harness. */
  harness?: Agent
  /** Agent CLIs only: a trimmed tool set and prompt for small-context models (default: on
   * for local/ models). */
  trim?: boolean
  /** MCP servers for this run by name, added to the box's agent's (a name the box has is
   * replaced for this run). */
  mcpServers?: Record<string, McpServerOptions>
}

const RUN_KEYS = ["prompt", "responseSchema", "timeoutS", "maxTurns", "model", "harness",
                  "trim", "mcpServers"] as const
type _RunFields = Expect<NoneMissing<Exclude<CamelKeys<RunBody>, (typeof RUN_KEYS)[number]>>>

/** The request body; what is wrong with the options is thrown here, at the call. */
function runBody(options: RunOptions, what: string): Record<string, unknown> {
  const body = toWire(options, RUN_KEYS, what)
  if (typeof options.prompt !== "string" || !options.prompt.trim()) {
    throw new TypeError(`${what}: prompt must be a non-empty string, not ${describe(options.prompt)}`)
  }
  checkSchema(options.responseSchema)
  delete body["response_schema"]
  if (body["mcp_servers"] !== undefined) body["mcp_servers"] = mcpServersBody(body["mcp_servers"], what)
  return body
}

/**
 * The chunks of a run as they happen (start, text, tool_call, tool_result, finish); after
 * the finish chunk, `run` is the final Run. Iterate it once; stopping early (break, close())
 * stops the run.
 */
export class RunStream<T = string> implements AsyncIterable<RunChunk<T>> {
  /** The final Run, once the finish chunk has been read. */
  run: Run<T> | null = null
  readonly #chunks: AsyncGenerator<RunChunk<T>, void, undefined>

  /** @internal */
  constructor(lines: () => Promise<AsyncGenerator<Record<string, unknown>, void, undefined>>,
              schema: unknown) {
    this.#chunks = this.#read(lines, schema)
  }

  async *#read(lines: () => Promise<AsyncGenerator<Record<string, unknown>, void, undefined>>,
               schema: unknown): AsyncGenerator<RunChunk<T>, void, undefined> {
    for await (const line of await lines()) {
      if (line["type"] === "finish" && typeof line["run"] === "object" && line["run"] !== null) {
        this.run = parseRun<T>(line["run"] as Record<string, unknown>, schema)
        yield { type: "finish", run: this.run }
      } else {
        yield line as RunChunk<T>
      }
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<RunChunk<T>> {
    return this.#chunks
  }

  /** Read the rest of the stream; return the final Run. */
  async finalRun(): Promise<Run<T>> {
    for await (const _ of this.#chunks) {
      // the chunks are not needed, only the finish
    }
    if (this.run === null) {
      throw new BurrowError("the run's stream ended without its finish event", { code: "bad_stream" })
    }
    return this.run
  }

  /** Stop reading; a run still going is stopped. */
  async close(): Promise<void> {
    await this.#chunks.return(undefined)
  }
}

/** The box's agent (configured at create with `agent: { harness, model }`, or per run). */
export class AgentRuns {
  readonly #http: Http
  readonly #path: string

  /** @internal */
  constructor(http: Http, boxPath: string) {
    this.#http = http
    this.#path = `${boxPath}/agent/runs`
  }

  /**
   * Run the agent on `prompt` to the end. With `responseSchema` the answer is validated and
   * `run.result` is the object (parsed by it, for a zod schema). A failed or timed-out run
   * is returned (`run.status`, `run.error`), not thrown.
   */
  run<S extends ZodLike>(options: RunOptions & { responseSchema: S }): Promise<Run<Parsed<S>>>
  run<T = unknown>(options: RunOptions & { responseSchema: JsonSchema }): Promise<Run<T>>
  run(options: RunOptions): Promise<Run<string>>
  async run(options: RunOptions): Promise<Run<unknown>> {
    // Through the streamed route: it answers at once, where the plain one answers when the
    // run ends, and Node's fetch gives up on an answer after 300 s.
    return this.#stream<unknown>(options, "agent.run()").finalRun()
  }

  /** Like run(), as its events happen: iterate for the chunks; afterwards `.run` (or
   * `await stream.finalRun()`) is the final Run. */
  stream<S extends ZodLike>(options: RunOptions & { responseSchema: S }): RunStream<Parsed<S>>
  stream<T = unknown>(options: RunOptions & { responseSchema: JsonSchema }): RunStream<T>
  stream(options: RunOptions): RunStream<string>
  stream(options: RunOptions): RunStream<unknown> {
    return this.#stream<unknown>(options, "agent.stream()")
  }

  #stream<T>(options: RunOptions, what: string): RunStream<T> {
    const body = runBody(options, what)
    const lines = async () => {
      const schema = await jsonSchemaOf(options.responseSchema)
      return this.#http.lines(`${this.#path}/stream`,
                              schema === undefined ? body : { ...body, response_schema: schema },
                              options.timeoutS)
    }
    return new RunStream<T>(lines, options.responseSchema)
  }

  /** The box's runs, newest first. */
  async list(): Promise<Run<unknown>[]> {
    const runs = await this.#http.json<Record<string, unknown>[]>("GET", this.#path)
    return runs.map((run) => parseRun<unknown>(run, undefined))
  }

  async get(runId: string): Promise<Run<unknown>> {
    const run = await this.#http.json<Record<string, unknown>>(
      "GET", `${this.#path}/${encodeURIComponent(runId)}`)
    return parseRun<unknown>(run, undefined)
  }
}
