/** Where the server is and which key to send: BURROW_URL and BURROW_API_KEY, or per call. */

import { AuthenticationError, InvalidRequestError } from "./errors.js"
import { checkOptions, describe } from "./wire.js"

export const DEFAULT_URL = "http://127.0.0.1:8420"
export const DEFAULT_TIMEOUT_S = 60

/** Per call, instead of the environment. */
export interface ClientOptions {
  /** A tenant key, or the operator key (default: BURROW_API_KEY). */
  apiKey?: string
  /** The server (default: BURROW_URL, else http://127.0.0.1:8420). */
  baseUrl?: string
  /** Seconds each HTTP call may take beyond what the server is asked to wait for (an
   * exec's or a run's timeoutS); default 60. */
  requestTimeoutS?: number
}

export interface Config {
  readonly url: string
  readonly apiKey: string
  readonly timeoutS: number
}

function env(name: string): string | undefined {
  // globalThis: the SDK runs where there is no `process` too (Deno, Bun, browsers).
  const proc = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process
  return proc?.env?.[name]
}

/** The settings of one client; options win over the environment, read at call time. */
export function resolve(options: ClientOptions = {}): Config {
  const url = (options.baseUrl || env("BURROW_URL") || DEFAULT_URL).replace(/\/+$/, "")
  let parsed: URL | undefined
  try {
    parsed = new URL(url)
  } catch {
    parsed = undefined
  }
  if (parsed === undefined || (parsed.protocol !== "http:" && parsed.protocol !== "https:")) {
    throw new InvalidRequestError(
      `${JSON.stringify(url)} is not a usable Burrow URL; set BURROW_URL or baseUrl to ` +
      "something like http://127.0.0.1:8420", { code: "invalid_url" })
  }
  const apiKey = (options.apiKey || env("BURROW_API_KEY") || "").trim()
  if (!apiKey) {
    throw new AuthenticationError(
      "no API key: set BURROW_API_KEY (a tenant key from `burrow tenant create`, or the " +
      "operator key `burrow serve` printed) or pass apiKey", { code: "no_api_key" })
  }
  const timeoutS = options.requestTimeoutS ?? DEFAULT_TIMEOUT_S
  if (typeof timeoutS !== "number" || !(timeoutS > 0)) {
    throw new TypeError(`requestTimeoutS must be a positive number of seconds, not ${describe(timeoutS)}`)
  }
  return { url, apiKey, timeoutS }
}

const CLIENT_KEYS = ["apiKey", "baseUrl", "requestTimeoutS"] as const

/** `options`, checked to hold only `known` keys and the client's, split into the call's own
 * options and the client's settings. */
export function splitClient<T extends ClientOptions>(options: T, known: readonly string[],
                                                     what: string): [Omit<T, keyof ClientOptions>, ClientOptions] {
  checkOptions(options, [...known, ...CLIENT_KEYS], what)
  const { apiKey, baseUrl, requestTimeoutS, ...rest } = options
  return [rest, { apiKey, baseUrl, requestTimeoutS }]
}

/** The Config of a call that takes the client's options alone. */
export function clientConfig(options: ClientOptions, what: string): Config {
  checkOptions(options, CLIENT_KEYS, what)
  return resolve(options)
}
