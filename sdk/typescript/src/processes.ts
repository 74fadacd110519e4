/** Background processes in a box: `box.processes.start(...)`, then list, get, logs, follow,
 * write, signal, kill, wait (the shapes of E2B's and Upstash's process handles). */

import type { Http } from "./http.js"
import { segment } from "./http.js"
import type { Command } from "./exec.js"
import type { Process, ProcessChunk, ProcessLogPiece, ProcessLogs } from "./wire.js"
import { checkOptions, describe } from "./wire.js"

/** How a process is started: its working directory, environment, whether its stdin stays
 * open for write(), and when it starts again ("on-wake": when the box wakes from a freeze;
 * "on-failure": also when it exits non-zero, after a back-off of 1 s doubling to 60 s). */
export interface ProcessOptions {
  cwd?: string
  env?: Record<string, string>
  stdin?: boolean
  restart?: "never" | "on-wake" | "on-failure"
}

/** Where to read a process's streams from (byte offsets; a box keeps the last 1-2 MiB). */
export interface LogOffsets {
  stdoutOffset?: number
  stderrOffset?: number
}

const SIGNALS = ["HUP", "INT", "QUIT", "KILL", "USR1", "USR2", "TERM", "CONT", "STOP"] as const
export type ProcessSignal = (typeof SIGNALS)[number]

function offsets(options: LogOffsets, what: string): { stdout_offset: number, stderr_offset: number } {
  checkOptions(options, ["stdoutOffset", "stderrOffset"], what)
  const out = { stdout_offset: options.stdoutOffset ?? 0, stderr_offset: options.stderrOffset ?? 0 }
  for (const value of Object.values(out)) {
    if (!Number.isInteger(value) || value < 0) {
      throw new TypeError(`${what}: an offset must be a non-negative integer, not ${describe(value)}`)
    }
  }
  return out
}

/** `cmd` is a shell command (run by `sh -c`) or an argv. A frozen box wakes first. Processes
 * run as the box's user with its limits; a freeze ends them (state "stopped"), and "on-wake"
 * (or "on-failure") ones start again when the box wakes. */
export class Processes {
  readonly #http: Http
  readonly #path: string

  /** @internal */
  constructor(http: Http, boxPath: string) {
    this.#http = http
    this.#path = `${boxPath}/processes`
  }

  #one(processId: string): string {
    return `${this.#path}/${segment(processId, "the process id")}`
  }

  /** Start `cmd` in the background; resolves once it runs (or could not start). */
  async start(cmd: Command, options: ProcessOptions = {}): Promise<Process> {
    checkOptions(options, ["cwd", "env", "stdin", "restart"], "processes.start()")
    if (typeof cmd !== "string" && !(Array.isArray(cmd) && cmd.every((a) => typeof a === "string"))) {
      throw new TypeError(`processes.start(): the command must be a string or an array of strings, not ${describe(cmd)}`)
    }
    const body = { command: cmd, stdin: options.stdin ?? false, restart: options.restart ?? "never",
                   ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
                   ...(options.env === undefined ? {} : { env: options.env }) }
    return this.#http.json<Process>("POST", this.#path, { json: body })
  }

  async list(): Promise<Process[]> {
    return this.#http.json<Process[]>("GET", this.#path)
  }

  async get(processId: string): Promise<Process> {
    return this.#http.json<Process>("GET", this.#one(processId))
  }

  /** Everything each stream holds from its offset, fetched a piece at a time;
   * `next_offset` of each says where to ask next. */
  async logs(processId: string, options: LogOffsets = {}): Promise<ProcessLogs> {
    const at = offsets(options, "processes.logs()")
    const pieces: Record<"stdout" | "stderr", ProcessLogPiece[]> = { stdout: [], stderr: [] }
    let page: ProcessLogs
    for (;;) {
      page = await this.#http.json<ProcessLogs>("GET", `${this.#one(processId)}/logs`,
                                                { params: at })
      let got = false
      for (const name of ["stdout", "stderr"] as const) {
        pieces[name].push(page[name])
        at[`${name}_offset`] = page[name].next_offset
        got ||= page[name].data.length > 0
      }
      if (!got) break
    }
    const joined = (name: "stdout" | "stderr"): ProcessLogPiece => ({
      data: pieces[name].map((p) => p.data).join(""),
      offset: pieces[name][0]?.offset ?? 0, next_offset: at[`${name}_offset`] })
    return { process: page.process, stdout: joined("stdout"), stderr: joined("stderr") }
  }

  /** Yield output as the process writes it (`type` stdout or stderr, `data`), then one
   * `exit` chunk once it ended for good. Stopping early leaves the process running. */
  follow(processId: string, options: LogOffsets = {}): AsyncGenerator<ProcessChunk, void, undefined> {
    const at = offsets(options, "processes.follow()")
    return this.#http.lines(`${this.#one(processId)}/logs`, undefined, undefined,
                            { follow: true, ...at }) as AsyncGenerator<ProcessChunk, void, undefined>
  }

  /** Wait until the process has ended for good (not between on-failure restarts). */
  async wait(processId: string): Promise<Process> {
    for await (const _chunk of this.follow(processId)) { /* to its end */ }
    return this.get(processId)
  }

  /** Write to the process's stdin (start it with stdin: true); eof closes it after. */
  async write(processId: string, data: string | Uint8Array, options: { eof?: boolean } = {}): Promise<void> {
    checkOptions(options, ["eof"], "processes.write()")
    await this.#http.request("POST", `${this.#one(processId)}/stdin`, {
      body: typeof data === "string" ? new TextEncoder().encode(data) : data,
      params: { eof: options.eof ?? false },
      headers: { "content-type": "application/octet-stream" } })
  }

  /** Signal the process and its process group. TERM, INT, QUIT or KILL also stop on-failure
   * restarts. */
  async signal(processId: string, signal: ProcessSignal = "TERM"): Promise<Process> {
    if (!SIGNALS.includes(signal)) {
      throw new TypeError(`processes.signal(): the signal must be one of ${SIGNALS.join(", ")}, not ${describe(signal)}`)
    }
    return this.#http.json<Process>("POST", `${this.#one(processId)}/signal`, { json: { signal } })
  }

  /** SIGKILL the process and its group, and forget it (its record and logs). */
  async kill(processId: string): Promise<void> {
    await this.#http.request("DELETE", this.#one(processId))
  }
}
