// What needs no server: the public names in both builds, the harness names, the error tree,
// the settings, what a response schema becomes, and git's porcelain parsed.

import assert from "node:assert/strict"
import { createServer } from "node:net"
import { createRequire } from "node:module"
import { test } from "node:test"

import * as sdk from "@burrow/sdk"
import { Agent, AuthenticationError, Box, BurrowError, ConnectionError, InvalidRequestError } from "@burrow/sdk"
import { z } from "zod"

// Internals, from the ESM build: not in the package's exports.
import { mcpServersBody } from "../dist/esm/agent.js"
import { parseStatus } from "../dist/esm/git.js"
import { jsonSchemaOf, parseRun } from "../dist/esm/schema.js"

const VALUES = [
  "Agent", "AgentRuns", "AuthenticationError", "Box", "BoxStateError", "BurrowError",
  "ConflictError", "ConnectionError", "Exec", "Files", "Git", "GitError", "InvalidRequestError",
  "Knowledge", "Memories", "NotFoundError", "PermissionDeniedError", "Processes", "RateLimitError",
  "RunStream", "ServiceUnavailableError", "Tenant", "TenantAgent", "TimeoutError",
]

test("the ESM and the CommonJS builds export the same pinned names", () => {
  assert.deepEqual(Object.keys(sdk).sort(), VALUES)
  const cjs = createRequire(import.meta.url)("@burrow/sdk") as Record<string, unknown>
  assert.deepEqual(Object.keys(cjs).sort(), VALUES)
  assert.deepEqual(cjs["Agent"], sdk.Agent)
  assert.notEqual(cjs["Box"], sdk.Box) // really the other build, not the same module
})

test("Agent names the harnesses as the API does", () => {
  assert.deepEqual({ ...Agent }, { Burrow: "burrow", ClaudeCode: "claude-code", Codex: "codex", OpenCode: "opencode" })
})

test("every error is a BurrowError with its own name, code and status", () => {
  const errors = VALUES.filter((name) => name.endsWith("Error"))
    .map((name) => (sdk as unknown as Record<string, typeof BurrowError>)[name] as typeof BurrowError)
  for (const cls of errors) {
    const error = new cls("m", { code: "c", status: 409 })
    assert.ok(error instanceof BurrowError && error instanceof Error)
    assert.equal(error.name, cls.name)
    if (cls !== sdk.GitError) assert.deepEqual([error.message, error.code, error.status], ["m", "c", 409])
  }
  assert.ok(new sdk.BoxStateError("m") instanceof sdk.ConflictError)
  const git = new sdk.GitError("git failed", { stderr: "fatal", exitCode: 128 })
  assert.deepEqual([git.code, git.stderr, git.exitCode, git.status], ["git_failed", "fatal", 128, null])
})

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => resolve(typeof address === "object" && address ? address.port : 0))
    })
  })
}

test("settings come from BURROW_URL and BURROW_API_KEY; options win", async () => {
  const saved = { ...process.env }
  try {
    delete process.env["BURROW_API_KEY"]
    await assert.rejects(Box.get("b_1"), (e: unknown) =>
      e instanceof AuthenticationError && e.code === "no_api_key" && /BURROW_API_KEY/.test(e.message))
    process.env["BURROW_API_KEY"] = "env-key"
    const [fromEnv, fromOption] = [await freePort(), await freePort()]
    process.env["BURROW_URL"] = `http://127.0.0.1:${fromEnv}/`
    const env = await Box.get("b_1").catch((e: unknown) => e)
    assert.ok(env instanceof ConnectionError && env.message.includes(`127.0.0.1:${fromEnv}`), String(env))
    const option = await Box.get("b_1", { baseUrl: `http://127.0.0.1:${fromOption}` }).catch((e: unknown) => e)
    assert.ok(option instanceof ConnectionError, String(option))
    assert.ok(option.message.includes(`127.0.0.1:${fromOption}`) && /burrow serve/.test(option.message) &&
              /BURROW_URL/.test(option.message) && option.code === "unreachable", option.message)
    await assert.rejects(Box.list({ baseUrl: "127.0.0.1:8420" }), (e: unknown) =>
      e instanceof InvalidRequestError && e.code === "invalid_url" && /BURROW_URL/.test(e.message))
    await assert.rejects(Box.list({ requestTimeoutS: 0 }), { name: "TypeError", message: /requestTimeoutS/ })
  } finally {
    process.env = saved
  }
})

test("an option a call does not take is a TypeError naming it", async () => {
  await assert.rejects(Box.create({ apikey: "k" } as never), { name: "TypeError", message: /Box.create\(\) has no option "apikey"; did you mean apiKey\?/ })
  await assert.rejects(Box.get("b_1", { label: "a:b" } as never), {
    name: "TypeError", message: /Box.get\(\) has no option "label"; it takes apiKey, baseUrl, requestTimeoutS/ })
  await assert.rejects(Box.list({ labels: "a:b" } as never), { message: /did you mean label\?/ })
  await assert.rejects(sdk.Tenant.create({ policy: { freeze_after_s: 60 } } as never), {
    message: /policy has no option "freeze_after_s"; did you mean freezeAfterS\?/ })
  await assert.rejects(sdk.Knowledge.search("q", "five" as never), { message: /must be an object of options, not "five"/ })
})

test("a zod responseSchema is sent as its JSON schema and parses the result", async () => {
  const Answer = z.object({ city: z.string(), population: z.number().int() })
  const json = await jsonSchemaOf(Answer)
  assert.deepEqual([json?.["type"], json?.["required"], "$schema" in (json ?? {})], ["object", ["city", "population"], false])
  const plain = { type: "object", properties: { x: { type: "string" } } }
  assert.equal(await jsonSchemaOf(plain), plain)
  assert.equal(await jsonSchemaOf(undefined), undefined)
  await assert.rejects(jsonSchemaOf({ _def: {}, safeParse: () => 0 }), /zod 3 schema/)
  await assert.rejects(jsonSchemaOf([]), /JSON schema object or a zod schema, not an array/)

  const run = { id: "run_1", box_id: "b_1", status: "completed", result: { city: "Oslo", population: 700000 } }
  assert.deepEqual(parseRun(run, Answer).result, { city: "Oslo", population: 700000 })
  assert.equal(parseRun({ ...run, status: "failed", result: "junk" }, Answer).result, null)
  assert.throws(() => parseRun({ ...run, result: { city: "Oslo" } }, Answer),
                (e: unknown) => e instanceof BurrowError && e.code === "invalid_result")
  assert.equal(parseRun({ ...run, result: "just text" }, undefined).result, "just text")
})

test("mcpServers go by name, each server's options in the API's snake_case", () => {
  const servers = {
    calc: { command: "python3", args: ["s.py"], env: { MY_KEY: "v" }, timeoutS: 5 },
    web: { url: "https://mcp.example.com/mcp", headers: { Authorization: "Bearer t" } },
  }
  assert.deepEqual(mcpServersBody(servers, "agent.run()"), {
    calc: { command: "python3", args: ["s.py"], env: { MY_KEY: "v" }, timeout_s: 5 },
    web: { url: "https://mcp.example.com/mcp", headers: { Authorization: "Bearer t" } },
  })
  assert.throws(() => mcpServersBody({ calc: { cmd: "python3" } }, "agent.run()"),
                /agent.run\(\)'s MCP server "calc" has no option "cmd"/)
  assert.throws(() => mcpServersBody([], "agent.run()"), /mcpServers must be an object of servers by name/)
})

test("git's porcelain status is parsed", () => {
  const status = parseStatus("## main...origin/main [ahead 1]\0 M a.py\0R  new.py\0old.py\0?? dir/x y.txt\0")
  assert.equal(status.branch, "main")
  assert.equal(status.clean, false)
  assert.deepEqual(status.changes.map((c) => [c.status, c.path]),
                   [[" M", "a.py"], ["R ", "new.py"], ["??", "dir/x y.txt"]])
  assert.equal(parseStatus("## No commits yet on trunk\0").branch, "trunk")
  assert.equal(parseStatus("## HEAD (no branch)\0").branch, null)
})
