/** Commands in a box: `box.exec.command(...)` collected, `box.exec.stream(...)` line by line. */

import type { Http } from "./http.js"
import type { CamelKeys, ExecBody, ExecChunk, ExecResult, Expect, NoneMissing } from "./wire.js"
import { describe, toWire } from "./wire.js"

/** A shell command (run by `sh -c`) or an argv. */
export type Command = string | readonly string[]

export interface ExecOptions {
  /** Working directory in the box (default /workspace). */
  cwd?: string
  env?: Record<string, string>
  /** Seconds before the command is killed (the result says `timed_out`). */
  timeoutS?: number
  stdin?: string
}

export interface CommandOptions extends ExecOptions {
  /** Characters kept of each of stdout and stderr (server default 1 Mi); `truncated` says
   * whether more was dropped (stream() passes everything). */
  maxOutputChars?: number
}

const COMMAND_KEYS = ["cwd", "env", "timeoutS", "stdin", "maxOutputChars"] as const
// Every field of the API's ExecIn but the command has its option here.
type _ExecFields = Expect<NoneMissing<
  Exclude<CamelKeys<ExecBody>, "command" | (typeof COMMAND_KEYS)[number]>>>

export function execBody(cmd: Command, options: CommandOptions, keys: readonly string[],
                         what: string): Record<string, unknown> {
  const valid = typeof cmd === "string"
    ? cmd.length > 0
    : Array.isArray(cmd) && cmd.length > 0 && cmd.every((a) => typeof a === "string")
  if (!valid) {
    throw new TypeError(`${what}: the command must be a non-empty string (run by sh -c) or a ` +
                        `non-empty array of strings (an argv), not ${describe(cmd)}`)
  }
  return { command: typeof cmd === "string" ? cmd : [...cmd], ...toWire(options, keys, what) }
}

/** A frozen box wakes first. */
export class Exec {
  readonly #http: Http
  readonly #path: string

  /** @internal */
  constructor(http: Http, boxPath: string) {
    this.#http = http
    this.#path = `${boxPath}/exec`
  }

  /** Run `cmd` to the end; a non-zero exit is a result (`exit_code`), not an error. */
  async command(cmd: Command, options: CommandOptions = {}): Promise<ExecResult> {
    const body = execBody(cmd, options, COMMAND_KEYS, "exec.command()")
    return this.#http.json<ExecResult>("POST", this.#path, {
      json: body, waitS: options.timeoutS, unbounded: true })
  }

  /** Yield output as it arrives (`type` stdout or stderr, `data`), then one `exit` chunk
   * with `exit_code`. Stopping early (break) kills the command at its next output. */
  stream(cmd: Command, options: ExecOptions = {}): AsyncGenerator<ExecChunk, void, undefined> {
    const body = execBody(cmd, options, COMMAND_KEYS.filter((k) => k !== "maxOutputChars"),
                          "exec.stream()")
    // The server's lines are ExecChunks (its OpenAPI document says so; the types are its).
    return this.#http.lines(`${this.#path}/stream`, body, options.timeoutS) as
      AsyncGenerator<ExecChunk, void, undefined>
  }
}
