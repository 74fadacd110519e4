/** A terminal in a box: `box.pty.create({ cols, rows, cwd })`, the box user's shell on a pty
 * (E2B's `sandbox.pty`), over the WebSocket `/v1/boxes/{id}/pty`.
 *
 * The WebSocket client: the one passed as `WebSocket` in the options, else the runtime's
 * global `WebSocket` (Node 22+, browsers, Deno, Bun), else the `ws` package (an optional peer
 * dependency: `npm install ws` on Node 18 and 20, which have no global one). The socket is
 * opened with a one-use ticket (`POST /v1/boxes/{id}/pty/tickets`), since a browser's
 * WebSocket cannot send the key in a header. */

import type { Http } from "./http.js"
import { ConnectionError, fromClose } from "./errors.js"
import type { BurrowError } from "./errors.js"
import { checkOptions, describe } from "./wire.js"

/** What a terminal needs of a WebSocket: the standard interface, which `ws` implements too. */
export interface WebSocketLike {
  binaryType: string
  readonly readyState: number
  send(data: string | ArrayBufferView | ArrayBuffer): void
  close(code?: number, reason?: string): void
  addEventListener(type: string, listener: (event: any) => void): void
}

export type WebSocketConstructor = new (url: string) => WebSocketLike

export interface PtyOptions {
  /** Columns and rows, 1 to 1000 each (default 80 x 24). */
  cols?: number
  rows?: number
  /** The directory the shell starts in (default /workspace). */
  cwd?: string
  /** The WebSocket class to use (default: the global one, else the `ws` package). */
  WebSocket?: WebSocketConstructor
}

const SEND_PIECE = 1 << 16  // the gateway takes messages of up to 1 MiB
const OPEN = 1

async function webSocketClass(given: WebSocketConstructor | undefined): Promise<WebSocketConstructor> {
  if (given !== undefined) return given
  const global = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket
  if (global !== undefined) return global
  const name = "ws"  // a variable: bundlers for browsers (which have the global) leave it be
  try {
    const loaded = (await import(name)) as { default?: WebSocketConstructor, WebSocket?: WebSocketConstructor }
    const found = loaded.WebSocket ?? loaded.default
    if (found !== undefined) return found
  } catch {
    // said below
  }
  throw new ConnectionError(
    "this runtime has no WebSocket: install the `ws` package (npm install ws), or pass one " +
    "as the WebSocket option of pty.create()", { code: "no_websocket" })
}

function size(value: number | undefined, fallback: number, what: string): number {
  const n = value ?? fallback
  if (!Number.isInteger(n) || n < 1 || n > 1000) {
    throw new TypeError(`${what} must be a whole number from 1 to 1000, not ${describe(n)}`)
  }
  return n
}

export class Pty {
  readonly #http: Http
  readonly #path: string

  /** @internal */
  constructor(http: Http, boxPath: string) {
    this.#http = http
    this.#path = `${boxPath}/pty`
  }

  /** Open the box user's shell (bash, else sh) on a terminal; a frozen box wakes first. A
   * box has at most 4 terminals open, a tenant 16 (RateLimitError beyond). */
  async create(options: PtyOptions = {}): Promise<Terminal> {
    checkOptions(options, ["cols", "rows", "cwd", "WebSocket"], "pty.create()")
    const cols = size(options.cols, 80, "cols")
    const rows = size(options.rows, 24, "rows")
    const Socket = await webSocketClass(options.WebSocket)
    const { ticket } = await this.#http.json<{ ticket: string }>("POST", `${this.#path}/tickets`)
    const url = new URL(this.#http.config.url + this.#path)
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:"
    url.searchParams.set("cols", String(cols))
    url.searchParams.set("rows", String(rows))
    if (options.cwd !== undefined) url.searchParams.set("cwd", options.cwd)
    url.searchParams.set("ticket", ticket)
    const terminal = new Terminal(new Socket(url.toString()), this.#http.config.url)
    await OPENED.get(terminal)
    return terminal
  }
}

// Each terminal's opening, for `create` to await: kept here, not on the terminal, whose public
// members are the Python SDK's too.
const OPENED = new WeakMap<Terminal, Promise<void>>()

/** An open terminal. Iterate (`for await`) for its output, Uint8Arrays, until the shell ends;
 * then `exitCode` is the shell's. `close()` hangs up the shell. A refusal (no such box, over
 * the limit) is thrown by the iteration or `wait()`. */
export class Terminal {
  /** The shell's exit code once it has ended; null until then. */
  exitCode: number | null = null
  readonly #socket: WebSocketLike
  readonly #output: Uint8Array[] = []
  #wake: (() => void) | null = null
  #ended = false
  #error: BurrowError | null = null

  /** @internal */
  constructor(socket: WebSocketLike, url: string) {
    this.#socket = socket
    socket.binaryType = "arraybuffer"
    const opened = new Promise<void>((resolve, reject) => {
      socket.addEventListener("open", () => resolve())
      socket.addEventListener("close", (event: { code: number, reason: string }) => {
        if (this.exitCode === null) {
          this.#error = event.code === 1006
            ? new ConnectionError(`the terminal's connection to Burrow at ${url} broke off`,
                                  { code: "unreachable" })
            : fromClose(event.code, event.reason)
        }
        this.#ended = true
        reject(this.#error ?? fromClose(event.code, event.reason))
        this.#notify()
      })
    })
    opened.catch(() => undefined)  // the iteration says why, if no one awaits this
    OPENED.set(this, opened)
    socket.addEventListener("message", (event: { data: unknown }) => {
      if (typeof event.data === "string") {
        const control = JSON.parse(event.data) as { type?: string, code?: number }
        if (control.type === "exit" && typeof control.code === "number") this.exitCode = control.code
      } else {
        this.#output.push(new Uint8Array(event.data as ArrayBuffer))
      }
      this.#notify()
    })
  }

  #notify(): void {
    const wake = this.#wake
    this.#wake = null
    wake?.()
  }

  #check(): void {
    if (this.#socket.readyState !== OPEN) {
      throw this.#error ?? new ConnectionError("the terminal is closed", { code: "closed" })
    }
  }

  /** Keystrokes (a string is sent as UTF-8). */
  send(data: string | Uint8Array): void {
    this.#check()
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data
    for (let start = 0; start < bytes.length; start += SEND_PIECE) {
      this.#socket.send(bytes.subarray(start, start + SEND_PIECE))
    }
  }

  resize(cols: number, rows: number): void {
    this.#check()
    this.#socket.send(JSON.stringify({ type: "resize", cols: size(cols, 80, "cols"),
                                       rows: size(rows, 24, "rows") }))
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array, void, undefined> {
    while (true) {
      const next = this.#output.shift()
      if (next !== undefined) {
        yield next
      } else if (this.#ended) {
        if (this.exitCode === null && this.#error !== null) throw this.#error
        return
      } else {
        await new Promise<void>((resolve) => { this.#wake = resolve })
      }
    }
  }

  /** The shell's exit code, once it ends (output until then is read and dropped). */
  async wait(): Promise<number> {
    for await (const _ of this) {
      // dropped
    }
    return this.exitCode as number
  }

  /** Hang up: the shell gets SIGHUP. */
  close(): void {
    this.#socket.close(1000)
  }
}
