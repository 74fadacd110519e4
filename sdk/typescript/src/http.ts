/**
 * HTTP for one SDK object, on the platform's fetch: requests, NDJSON streams, errors mapped,
 * and close(), which stops what the object still has in flight.
 *
 * Node's fetch waits at most 300 s for an answer's headers, and 300 s between two pieces of
 * its body, whatever the caller asks: long work goes through the streamed routes, which
 * answer at once and send a line per event (agent.run() does so; exec.stream() is the way
 * for commands that run longer than that).
 */

import type { Config } from "./config.js"
import { BurrowError, TimeoutError, fromResponse, fromTransport } from "./errors.js"

export type Params = Record<string, string | number | boolean | readonly string[] | undefined>

export interface Call {
  json?: unknown
  body?: Uint8Array | string
  params?: Params
  headers?: Record<string, string>
  /** How long the server may work on it (an exec's or a run's timeoutS). */
  waitS?: number
  /** The server bounds the call itself: without waitS the client sets no limit. */
  unbounded?: boolean
}

/** An answer with its body read. */
export interface Answer {
  status: number
  headers: Headers
  body: Uint8Array
}

const TIMED_OUT = Symbol("timed out")
const CLOSED = Symbol("closed")

interface Opened {
  response: Response
  controller: AbortController
  limitS: number | undefined
  release: () => void
}

export class Http {
  readonly config: Config
  readonly #open = new Set<AbortController>()

  constructor(config: Config) {
    this.config = config
  }

  async request(method: string, path: string, call: Call = {}): Promise<Answer> {
    const opened = await this.#send(method, path, call)
    try {
      const body = new Uint8Array(await this.#read(opened, () => opened.response.arrayBuffer()))
      if (opened.response.status >= 400) throw this.#error(opened.response, body)
      return { status: opened.response.status, headers: opened.response.headers, body }
    } finally {
      opened.release()
    }
  }

  async json<T>(method: string, path: string, call: Call = {}): Promise<T> {
    const answer = await this.request(method, path, call)
    return (answer.body.length ? JSON.parse(new TextDecoder().decode(answer.body)) : null) as T
  }

  /** POST `json` (or GET with `params`, json undefined) and yield each NDJSON line of the
   * answer as it arrives. Stopping early closes the connection, which stops the work on the
   * server. */
  async *lines(path: string, json: unknown, waitS?: number,
               params?: Params): AsyncGenerator<Record<string, unknown>, void, undefined> {
    const opened = await this.#send(json === undefined ? "GET" : "POST", path,
                                    { json, waitS, params, unbounded: true })
    const { response } = opened
    let done = false
    try {
      if (response.status >= 400 || response.body === null) {
        const body = new Uint8Array(await this.#read(opened, () => response.arrayBuffer()))
        if (response.status >= 400) throw this.#error(response, body)
        return
      }
      const reader = response.body.getReader()
      const decoder = new TextDecoder()
      let buffer = ""
      try {
        for (;;) {
          const piece = await this.#read(opened, () => reader.read())
          buffer += piece.done ? decoder.decode() : decoder.decode(piece.value, { stream: true })
          let end: number
          while ((end = buffer.indexOf("\n")) >= 0) {
            const line = buffer.slice(0, end)
            buffer = buffer.slice(end + 1)
            if (line.trim()) yield decode(line)
          }
          if (piece.done) break
        }
        if (buffer.trim()) yield decode(buffer)
        done = true
      } finally {
        if (!done) await reader.cancel().catch(() => undefined)
      }
    } finally {
      if (!done) opened.controller.abort(CLOSED)
      opened.release()
    }
  }

  /** Stop every request this object has in flight (they fail with code "closed"); later
   * calls work as before. */
  close(): void {
    for (const controller of this.#open) controller.abort(CLOSED)
    this.#open.clear()
  }

  async #send(method: string, path: string, call: Call): Promise<Opened> {
    const url = new URL(this.config.url + path)
    for (const [name, value] of Object.entries(call.params ?? {})) {
      if (value === undefined) continue
      for (const one of Array.isArray(value) ? value : [value]) {
        url.searchParams.append(name, String(one))
      }
    }
    const headers: Record<string, string> = {
      authorization: `Bearer ${this.config.apiKey}`, "user-agent": "burrow-typescript",
      ...call.headers,
    }
    let body: string | Uint8Array | undefined = call.body
    if (call.json !== undefined) {
      body = JSON.stringify(call.json)
      headers["content-type"] = "application/json"
    }
    const controller = new AbortController()
    const limitS = call.unbounded && call.waitS === undefined
      ? undefined : this.config.timeoutS + (call.waitS ?? 0)
    const timer = limitS === undefined
      ? undefined : setTimeout(() => controller.abort(TIMED_OUT), limitS * 1000)
    this.#open.add(controller)
    const release = () => {
      clearTimeout(timer)
      this.#open.delete(controller)
    }
    const opened = { controller, limitS, release } as Omit<Opened, "response">
    try {
      // BodyInit wants an ArrayBuffer-backed view; fetch takes any Uint8Array.
      const response = await fetch(url, { method, headers, body: body as BodyInit | undefined,
                                          signal: controller.signal })
      return { ...opened, response }
    } catch (error) {
      release()
      throw this.#failure(error, opened)
    }
  }

  /** Read from an answer, with read failures (the connection dropped, the limit passed)
   * as the SDK's errors. */
  async #read<T>(opened: Omit<Opened, "response">, read: () => Promise<T>): Promise<T> {
    try {
      return await read()
    } catch (error) {
      throw this.#failure(error, opened)
    }
  }

  #failure(error: unknown, opened: Omit<Opened, "response">): BurrowError {
    const reason: unknown = opened.controller.signal.reason
    if (opened.controller.signal.aborted && reason === TIMED_OUT) {
      return new TimeoutError(
        `Burrow at ${this.config.url} did not answer within ${opened.limitS} s; pass a larger ` +
        "requestTimeoutS (or timeoutS for the work itself)", { code: "timeout" })
    }
    if (opened.controller.signal.aborted && reason === CLOSED) {
      return new BurrowError("the request was stopped by close()", { code: "closed" })
    }
    return fromTransport(error, this.config.url)
  }

  #error(response: Response, body: Uint8Array): BurrowError {
    return fromResponse(response.status, response.statusText, new TextDecoder().decode(body),
                        response.headers.get("retry-after"))
  }
}

function decode(line: string): Record<string, unknown> {
  let value: unknown
  try {
    value = JSON.parse(line)
  } catch {
    throw new BurrowError(`the server sent a stream line that is not JSON: ${line.slice(0, 200)}`,
                          { code: "bad_stream" })
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new BurrowError(`the server sent a stream line that is not an object: ` +
                          line.slice(0, 200), { code: "bad_stream" })
  }
  return value as Record<string, unknown>
}

/** A path segment from a caller's id: never more than one segment. */
export function segment(id: string, what: string): string {
  if (typeof id !== "string" || !id) {
    throw new TypeError(`${what} must be a non-empty string, not ${JSON.stringify(id)}`)
  }
  return encodeURIComponent(id)
}
