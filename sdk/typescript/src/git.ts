/** git in a box, through exec: clone, init, status, diff, commit. A failing git command
 * throws GitError with git's own words. */

import { GitError } from "./errors.js"
import type { Exec } from "./exec.js"
import type { ExecResult } from "./wire.js"
import { checkOptions } from "./wire.js"

export const WORKSPACE = "/workspace"
const COMMIT_SCRIPT = 'git add -A && git commit -q -m "$1" && git rev-parse HEAD'

export interface GitChange {
  /** The two-letter porcelain status, e.g. " M", "??", "A ". */
  status: string
  path: string
}

export interface GitStatus {
  /** The current branch; null when detached. */
  branch: string | null
  changes: GitChange[]
  clean: boolean
}

export function cloneTarget(repo: string, path: string | undefined): string {
  if (path) return path.startsWith("/") ? path : `${WORKSPACE}/${path}`
  const last = repo.replace(/\/+$/, "").split("/").pop() ?? ""
  const name = (last.split(":").pop() ?? "").replace(/\.git$/, "") || "repo"
  return `${WORKSPACE}/${name}`
}

/** git's stdout, or a GitError saying what failed and what git said. */
export function checked(result: ExecResult, what: string, path: string): string {
  if (result.exit_code === 0 && !result.timed_out) return result.stdout
  const said = (result.stderr.trim() || result.stdout.trim() || "no output").split("\n")
  const reason = result.timed_out ? "timed out" : `exit ${result.exit_code}`
  const hint = result.stderr.toLowerCase().includes("tell me who you are")
    ? "; create the box with git: { userName, userEmail } or run `git config user.name/" +
      "user.email` in it"
    : ""
  throw new GitError(`git ${what} failed in ${path} (${reason}): ${said.slice(-5).join(" | ")}${hint}`,
                     { stderr: result.stderr, exitCode: result.exit_code })
}

function branchOf(header: string): string | null {
  const head = header.slice(3)
  for (const prefix of ["No commits yet on ", "Initial commit on "]) {
    if (head.startsWith(prefix)) return head.slice(prefix.length)
  }
  if (head.startsWith("HEAD (no branch)")) return null
  return head.split("...")[0]?.split(" ")[0] ?? null
}

/** `git status --porcelain=v1 --branch -z`: NUL-separated records; a rename or copy carries
 * its source path as the next record. */
export function parseStatus(out: string): GitStatus {
  let branch: string | null = null
  const changes: GitChange[] = []
  let skip = false
  for (const record of out.split("\0")) {
    if (skip) {
      skip = false
    } else if (record.startsWith("## ")) {
      branch = branchOf(record)
    } else if (record.length > 3) {
      changes.push({ status: record.slice(0, 2), path: record.slice(3) })
      skip = record[0] === "R" || record[0] === "C"
    }
  }
  return { branch, changes, clean: changes.length === 0 }
}

/** Commands run in `path`, by default the repository this object last cloned or
 * initialised (else /workspace). */
export class Git {
  path = WORKSPACE
  readonly #exec: Exec

  /** @internal */
  constructor(exec: Exec) {
    this.#exec = exec
  }

  async #git(what: string, args: string[], path: string): Promise<string> {
    return checked(await this.#exec.command(["git", ...args], { cwd: path }), what, path)
  }

  /** Clone `repo` (a URL, or a path in the box) to `path` (default /workspace/<name>);
   * return the path, which later calls use by default. */
  async clone(repo: string, options: { path?: string; branch?: string; depth?: number } = {}): Promise<string> {
    checkOptions(options, ["path", "branch", "depth"], "git.clone()")
    const target = cloneTarget(repo, options.path)
    const args = ["clone", "--quiet"]
    if (options.branch) args.push("--branch", options.branch)
    if (options.depth) args.push("--depth", String(options.depth))
    await this.#git("clone", [...args, "--", repo, target], WORKSPACE)
    this.path = target
    return target
  }

  /** Make `path` (default /workspace) a new repository; return the path. */
  async init(options: { path?: string; branch?: string } = {}): Promise<string> {
    checkOptions(options, ["path", "branch"], "git.init()")
    const target = options.path ? cloneTarget("", options.path) : WORKSPACE
    await this.#git("init", ["init", "--quiet", `--initial-branch=${options.branch ?? "main"}`,
                             target], WORKSPACE)
    this.path = target
    return target
  }

  async status(options: { path?: string } = {}): Promise<GitStatus> {
    checkOptions(options, ["path"], "git.status()")
    const where = options.path ?? this.path
    return parseStatus(await this.#git("status", ["status", "--porcelain=v1", "--branch", "-z"],
                                       where))
  }

  /** The diff of the working tree (or, `staged`, of the index) against HEAD. */
  async diff(options: { path?: string; staged?: boolean } = {}): Promise<string> {
    checkOptions(options, ["path", "staged"], "git.diff()")
    const args = ["diff", "--no-color", ...(options.staged ? ["--cached"] : [])]
    return this.#git("diff", args, options.path ?? this.path)
  }

  /** Stage every change (`git add -A`) and commit; return the new commit's sha. */
  async commit(message: string, options: { path?: string } = {}): Promise<string> {
    checkOptions(options, ["path"], "git.commit()")
    if (typeof message !== "string" || !message.trim()) {
      throw new TypeError("git.commit(): the message must be a non-empty string")
    }
    const where = options.path ?? this.path
    const result = await this.#exec.command(["sh", "-c", COMMIT_SCRIPT, "git-commit", message],
                                            { cwd: where })
    const lines = checked(result, "commit", where).trim().split("\n")
    return lines[lines.length - 1] ?? ""
  }
}
