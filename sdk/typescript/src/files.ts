/** Files in a box: raw bytes up and down, listing, deleting. Relative paths are under
 * /workspace. */

import type { Http } from "./http.js"
import type { FileEntry, FileEvent } from "./wire.js"
import { checkOptions, describe } from "./wire.js"

// upload() and download() need the local disk: Node's (or a runtime that offers node:fs),
// loaded only when they are called.
interface LocalFs {
  readFile(path: string): Promise<Uint8Array>
  writeFile(path: string, data: Uint8Array): Promise<void>
  mkdir(path: string, options: { recursive: true }): Promise<unknown>
}
const NODE_FS = "node:fs/promises"

async function localFs(what: string): Promise<LocalFs> {
  try {
    return (await import(NODE_FS)) as LocalFs
  } catch {
    throw new TypeError(`files.${what}() needs node:fs, which this runtime lacks; use ` +
                        `files.${what === "upload" ? "write" : "readBytes"}() instead`)
  }
}

function checkPath(path: unknown, what: string): string {
  if (typeof path !== "string" || !path) {
    throw new TypeError(`files.${what}(): the path must be a non-empty string, not ${describe(path)}`)
  }
  return path
}

export class Files {
  readonly #http: Http
  readonly #path: string

  /** @internal */
  constructor(http: Http, boxPath: string) {
    this.#http = http
    this.#path = `${boxPath}/files`
  }

  /** Write `data` (a string is UTF-8 encoded) to `path`, creating parents, replacing a file. */
  async write(path: string, data: string | Uint8Array, options: { mode?: number } = {}): Promise<void> {
    checkOptions(options, ["mode"], "files.write()")
    if (typeof data !== "string" && !(data instanceof Uint8Array)) {
      throw new TypeError(`files.write(): data must be a string or a Uint8Array, not ${describe(data)}`)
    }
    await this.#http.request("PUT", this.#path, {
      params: { path: checkPath(path, "write"), mode: options.mode },
      body: typeof data === "string" ? new TextEncoder().encode(data) : data,
      headers: { "content-type": "application/octet-stream" } })
  }

  async readBytes(path: string): Promise<Uint8Array> {
    const answer = await this.#http.request("GET", this.#path, {
      params: { path: checkPath(path, "readBytes") } })
    return answer.body
  }

  /** The file as text (`encoding`: any the platform's TextDecoder knows). */
  async read(path: string, options: { encoding?: string } = {}): Promise<string> {
    checkOptions(options, ["encoding"], "files.read()")
    const bytes = await this.readBytes(checkPath(path, "read"))
    return new TextDecoder(options.encoding ?? "utf-8").decode(bytes)
  }

  async list(path = "/workspace"): Promise<FileEntry[]> {
    return this.#http.json<FileEntry[]>("GET", `${this.#path}/list`, {
      params: { path: checkPath(path, "list") } })
  }

  /** Yield what happens under `path` as it happens (`type` created, modified, deleted or
   * moved, `path`); "overflow" means some events were lost; the last is "end" (the path is
   * gone, or the box froze). Stop iterating to end the watch. */
  watch(path = "/workspace", options: { recursive?: boolean } = {}): AsyncGenerator<FileEvent, void, undefined> {
    checkOptions(options, ["recursive"], "files.watch()")
    return this.#http.lines(`${this.#path}/watch`, undefined, undefined, {
      path: checkPath(path, "watch"), recursive: options.recursive ?? false,
    }) as AsyncGenerator<FileEvent, void, undefined>
  }

  async delete(path: string, options: { recursive?: boolean } = {}): Promise<void> {
    checkOptions(options, ["recursive"], "files.delete()")
    await this.#http.request("DELETE", this.#path, {
      params: { path: checkPath(path, "delete"), recursive: options.recursive ?? false } })
  }

  /** Copy a file from this machine into the box. */
  async upload(localPath: string, remotePath: string): Promise<void> {
    const fs = await localFs("upload")
    await this.write(remotePath, await fs.readFile(checkPath(localPath, "upload")))
  }

  /** Copy a file from the box to this machine (parent directories are created). */
  async download(remotePath: string, localPath: string): Promise<void> {
    const fs = await localFs("download")
    const data = await this.readBytes(remotePath)
    const parent = checkPath(localPath, "download").replace(/[/\\][^/\\]*$/, "")
    if (parent && parent !== localPath) await fs.mkdir(parent, { recursive: true })
    await fs.writeFile(localPath, data)
  }
}
