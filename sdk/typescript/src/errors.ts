/**
 * The SDK's errors, and the one place where HTTP statuses and transport failures become
 * them: no fetch TypeError or DOMException reaches a user.
 */

export interface ErrorOptions {
  code?: string
  status?: number | null
  retryAfter?: number | null
}

/**
 * Root of every error the SDK raises.
 *
 *     BurrowError
 *     ├── AuthenticationError ........ 401: missing or wrong key (BURROW_API_KEY / apiKey)
 *     ├── PermissionDeniedError ...... 403: this key may not do that
 *     ├── NotFoundError .............. 404: no such box, snapshot, file or run (or not yours)
 *     ├── ConflictError .............. 409: conflicts with the current state
 *     │   └── BoxStateError .......... 409: the box's state does not allow it
 *     ├── InvalidRequestError ........ 400, 413, 422: bad parameters, body too large
 *     ├── RateLimitError ............. 429: slow down; retry after `retryAfter` seconds
 *     ├── ServiceUnavailableError .... 503: busy or a dependency is down; retry later
 *     ├── TimeoutError ............... no answer in time
 *     ├── ConnectionError ............ the server cannot be reached
 *     └── GitError ................... a git command in the box failed (`stderr`, `exitCode`)
 *
 * Every error has `message`, `code` (the server's snake_case code, or the SDK's own) and
 * `status` (the HTTP status, null when there was no answer).
 */
export class BurrowError extends Error {
  readonly code: string
  readonly status: number | null
  readonly retryAfter: number | null

  constructor(message: string, options: ErrorOptions = {}) {
    super(message)
    this.name = new.target.name
    this.code = options.code ?? "error"
    this.status = options.status ?? null
    this.retryAfter = options.retryAfter ?? null
  }
}

/** 401: the key is missing or not valid. */
export class AuthenticationError extends BurrowError {}

/** 403: the key is valid but may not do this. */
export class PermissionDeniedError extends BurrowError {}

/** 404: no such resource, or it belongs to another tenant. */
export class NotFoundError extends BurrowError {}

/** 409: the request conflicts with the current state (a file exists, a path is a
 * directory, the box has no agent configured, ...). */
export class ConflictError extends BurrowError {}

/** 409: the box's state does not allow this (for example it is being deleted). */
export class BoxStateError extends ConflictError {}

/** 400, 413 or 422: the request is malformed, too large or has invalid parameters. */
export class InvalidRequestError extends BurrowError {}

/** 429: too many requests; wait `retryAfter` seconds. */
export class RateLimitError extends BurrowError {}

/** 503: the server is busy or a dependency (a model provider, storage) is unavailable. */
export class ServiceUnavailableError extends BurrowError {}

/** The server did not answer in time. */
export class TimeoutError extends BurrowError {}

/** The server cannot be reached. */
export class ConnectionError extends BurrowError {}

/** A git command in the box exited non-zero. */
export class GitError extends BurrowError {
  readonly stderr: string
  readonly exitCode: number | null

  constructor(message: string, options: { stderr?: string; exitCode?: number | null } = {}) {
    super(message, { code: "git_failed" })
    this.stderr = options.stderr ?? ""
    this.exitCode = options.exitCode ?? null
  }
}

const BY_STATUS: Record<number, typeof BurrowError> = {
  400: InvalidRequestError, 401: AuthenticationError, 403: PermissionDeniedError,
  404: NotFoundError, 409: ConflictError, 413: InvalidRequestError,
  422: InvalidRequestError, 429: RateLimitError, 503: ServiceUnavailableError,
}

/** The server's {"error": {"code", "message"}}, or something readable if it sent other. */
function detail(body: string, reason: string): [string, string] {
  try {
    const error = (JSON.parse(body) as { error?: { code?: unknown; message?: unknown } }).error
    if (error && error.code !== undefined && error.message !== undefined) {
      return [String(error.code), String(error.message)]
    }
  } catch {
    // not JSON: said as text below
  }
  return ["http_error", body.trim().slice(0, 300) || reason]
}

/** The error for an answer with an error status, its body read. */
export function fromResponse(status: number, statusText: string, body: string,
                             retryAfterHeader: string | null): BurrowError {
  const [code, message] = detail(body, statusText || `HTTP ${status}`)
  let cls = BY_STATUS[status] ?? BurrowError
  if (status === 409 && code === "conflict") cls = BoxStateError
  const retry = retryAfterHeader === null ? NaN : Number(retryAfterHeader)
  return new cls(message, { code, status, retryAfter: Number.isFinite(retry) ? retry : null })
}

/** What Node's fetch (undici) says went wrong: the codes of the error and of its causes
 * (ECONNREFUSED, UND_ERR_SOCKET, ...). */
function causes(error: unknown): string[] {
  const found: string[] = []
  for (let e = error, depth = 0; e && depth < 5; depth += 1) {
    const { code, cause } = e as { code?: unknown; cause?: unknown }
    if (typeof code === "string") found.push(code)
    e = cause
  }
  return found
}

/** The error for a request that got no (complete) answer. */
export function fromTransport(error: unknown, url: string): BurrowError {
  const codes = causes(error)
  const said = codes[codes.length - 1] ?? (error instanceof Error ? error.message : String(error))
  if (codes.includes("UND_ERR_HEADERS_TIMEOUT") || codes.includes("UND_ERR_BODY_TIMEOUT")) {
    return new TimeoutError(
      `Burrow at ${url} sent nothing for 300 s, which is as long as Node's fetch waits ` +
      `(${said}); stream long commands with box.exec.stream()`, { code: "timeout" })
  }
  if (codes.includes("UND_ERR_CONNECT_TIMEOUT")) {
    return new TimeoutError(`Burrow at ${url} did not accept a connection in time (${said}); ` +
                            "check BURROW_URL or baseUrl", { code: "timeout" })
  }
  if (codes.some((c) => /^E[A-Z]+$/.test(c) || c === "UND_ERR_SOCKET" ||
                        c === "UND_ERR_CLOSED")) {
    return new ConnectionError(
      `cannot reach Burrow at ${url} (${said}); start it with \`burrow serve\`, or set ` +
      "BURROW_URL (or pass baseUrl) to its address", { code: "unreachable" })
  }
  const message = error instanceof Error ? error.message : String(error)
  return new BurrowError(`request to Burrow at ${url} failed: ${message}`,
                         { code: "transport_error" })
}

const BY_CLOSE: Record<number, typeof BurrowError> = {
  4400: InvalidRequestError, 4401: AuthenticationError, 4403: PermissionDeniedError,
  4404: NotFoundError, 4429: RateLimitError, 1011: ServiceUnavailableError,
  1013: ServiceUnavailableError,
}

/** The error for a WebSocket (a terminal) the server closed before its end: a close code
 * 44xx is the HTTP status it stands for (4404: 404). */
export function fromClose(code: number, reason: string): BurrowError {
  const cls = BY_CLOSE[code] ?? BurrowError
  const status = code >= 4400 && code < 4600 ? code - 4000 : null
  return new cls(reason || `the server closed the terminal (code ${code})`,
                 { code: "terminal_closed", status })
}
