// Box, Exec, Files, Git, Tenant and Knowledge against a real `burrow serve`, over real HTTP.

import assert from "node:assert/strict"
import { mkdtemp, readFile, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { test } from "node:test"

import {
  AuthenticationError, Box, BurrowError, ConflictError, GitError, InvalidRequestError,
  Knowledge, NotFoundError, Tenant,
} from "@burrow/sdk"
import type { ExecChunk } from "@burrow/sdk"

import { OPERATOR_KEY, URL, asNewTenant, eventually, unique } from "./served.js"

const { tenant, key } = await asNewTenant("ts-box")
// Deleting the tenant when the file is done deletes its boxes.
const box = await Box.create({ runtime: "python", git: { userName: "Bot", userEmail: "bot@example.com" } })

test("create passes env, labels and name into the box", async () => {
  const made = await Box.create({ name: "envy", env: { GREETING: "hi there" }, labels: { team: "x" } })
  assert.equal(made.status, "running")
  assert.deepEqual([made.info.labels, made.info.name, made.info.tenant], [{ team: "x" }, "envy", tenant.id])
  const r = await made.exec.command('printf %s "$GREETING"')
  assert.deepEqual([r.exit_code, r.stdout, r.timed_out], [0, "hi there", false])
  await made.delete()
  assert.equal(made.status, "deleted")
  await assert.rejects(Box.get(made.id), NotFoundError)
})

test("exec returns exit code and output, and takes an argv, cwd, env, stdin and a timeout", async () => {
  let r = await box.exec.command("python3 -c 'print(1+1)'; echo oops >&2; exit 3")
  assert.deepEqual([r.exit_code, r.stdout, r.stderr], [3, "2\n", "oops\n"])
  assert.ok(r.duration_ms > 0)
  r = await box.exec.command(["sh", "-c", 'echo "$X:$(pwd)"; cat'], { cwd: "/tmp", env: { X: "1" }, stdin: "in" })
  assert.equal(r.stdout, "1:/tmp\nin")
  r = await box.exec.command(["echo", "$HOME;", "x"])
  assert.equal(r.stdout, "$HOME; x\n")
  r = await box.exec.command("sleep 5", { timeoutS: 0.5 })
  assert.equal(r.timed_out, true)
  r = await box.exec.command("head -c 100 /dev/zero | tr '\\0' x", { maxOutputChars: 10 })
  assert.deepEqual([r.stdout, r.truncated], ["xxxxxxxxxx", true])
})

test("exec.stream yields output as it comes, then the exit", async () => {
  const chunks: ExecChunk[] = []
  for await (const chunk of box.exec.stream("echo a; echo b >&2; echo c; exit 4")) chunks.push(chunk)
  const last = chunks[chunks.length - 1]
  assert.ok(last && last.type === "exit" && last.exit_code === 4, JSON.stringify(chunks))
  const said = (type: string) => chunks.map((c) => (c.type === type && "data" in c ? c.data : "")).join("")
  assert.deepEqual([said("stdout"), said("stderr")], ["a\nc\n", "b\n"])
  assert.equal(chunks.filter((c) => c.type === "exit").length, 1)
})

test("stopping an exec stream early kills the command", async () => {
  // A silent command: the server notices the closed connection without waiting for output.
  const marker = unique("ticker")
  const running = async () => (await box.exec.command(["ps", "-eo", "args"])).stdout.includes(marker)
  for await (const chunk of box.exec.stream(`echo started; sleep 300 || : ${marker}`)) {
    assert.deepEqual(chunk, { type: "stdout", data: "started\n" })
    assert.ok(await running())
    break
  }
  await eventually("the command is killed", async () => !(await running()), 15)
})

test("files: write, read, list, upload, download, delete", async () => {
  await box.files.write("/workspace/a.txt", "hi")
  const bytes = Uint8Array.from({ length: 256 }, (_, i) => i)
  await box.files.write("data/b.bin", bytes) // relative: under /workspace
  assert.equal(await box.files.read("/workspace/a.txt"), "hi")
  assert.deepEqual(await box.files.readBytes("/workspace/data/b.bin"), bytes)
  const entries = new Map((await box.files.list("/workspace")).map((e) => [e.name, e]))
  assert.deepEqual([entries.get("a.txt")?.type, entries.get("a.txt")?.size], ["file", 2])
  assert.equal(entries.get("data")?.type, "dir")
  const local = await mkdtemp(join(tmpdir(), "burrow-ts-"))
  await writeFile(join(local, "up.txt"), "from the host\n")
  await box.files.upload(join(local, "up.txt"), "/workspace/up/up.txt")
  assert.equal((await box.exec.command("cat /workspace/up/up.txt")).stdout, "from the host\n")
  await box.files.download("/workspace/data/b.bin", join(local, "down", "b.bin"))
  assert.deepEqual(new Uint8Array(await readFile(join(local, "down", "b.bin"))), bytes)
  await box.files.delete("/workspace/a.txt")
  const missing = await box.files.read("/workspace/a.txt").catch((e: unknown) => e)
  assert.ok(missing instanceof NotFoundError && missing.status === 404, String(missing))
  await box.files.write("/workspace/d/x", "x")
  await assert.rejects(box.files.delete("/workspace/d"), ConflictError)
  await box.files.delete("/workspace/d", { recursive: true })
  assert.ok(!(await box.files.list("/workspace")).some((e) => e.name === "d"))
})

test("git: init, status, commit, diff and clone inside the box", async () => {
  const repo = await box.git.init({ path: "/workspace/proj" })
  assert.equal(repo, "/workspace/proj")
  await box.files.write("/workspace/proj/hello.py", "print('hello')\n")
  let status = await box.git.status()
  assert.equal(status.branch, "main")
  assert.deepEqual(status.changes, [{ status: "??", path: "hello.py" }])
  const sha = await box.git.commit("first")
  assert.match(sha, /^[0-9a-f]{40}$/)
  assert.equal((await box.git.status()).clean, true)
  await box.files.write("/workspace/proj/hello.py", "print('bye')\n")
  const diff = await box.git.diff()
  assert.ok(diff.includes("-print('hello')") && diff.includes("+print('bye')"), diff)
  await box.git.commit("second")
  const log = (await box.exec.command("git log --format=%an:%s", { cwd: repo })).stdout.split("\n")
  assert.deepEqual(log.filter(Boolean), ["Bot:second", "Bot:first"])
  const copy = await box.git.clone("/workspace/proj", { path: "/workspace/copy" })
  assert.deepEqual([copy, box.git.path], ["/workspace/copy", "/workspace/copy"])
  status = await box.git.status()
  assert.equal(status.clean, true)
  assert.equal(await box.files.read("/workspace/copy/hello.py"), "print('bye')\n")
})

test("a failing git command is a GitError with what git said", async () => {
  const error = await box.git.status({ path: "/tmp" }).catch((e: unknown) => e)
  assert.ok(error instanceof GitError, String(error))
  assert.match(error.message, /not a git repository/)
  assert.ok(error.exitCode !== 0 && error.code === "git_failed")
  await box.git.init({ path: "/workspace/empty" })
  await assert.rejects(box.git.commit("nothing"), { name: "GitError", message: /nothing to commit/ })
})

test("a snapshot seeds a new box, and is listed until deleted", async () => {
  await box.files.write("/workspace/state.txt", "kept")
  const snap = await box.snapshot("base")
  assert.deepEqual([snap.box_id, snap.name], [box.id, "base"])
  assert.ok((await Box.snapshots()).some((s) => s.id === snap.id))
  const twin = await Box.fromSnapshot(snap.id, { labels: { from: "snap" } })
  assert.notEqual(twin.id, box.id)
  assert.equal(await twin.files.read("/workspace/state.txt"), "kept")
  await twin.delete()
  await Box.deleteSnapshot(snap.id)
  assert.ok(!(await Box.snapshots()).some((s) => s.id === snap.id))
})

test("freeze, wake, pause and resume change the state; any call wakes a frozen box", async () => {
  await box.exec.command("echo warm > /workspace/w.txt")
  assert.deepEqual([(await box.freeze()).state, box.status], ["frozen", "frozen"])
  assert.deepEqual([(await box.wake()).state, box.status], ["running", "running"])
  assert.deepEqual([(await box.pause()).state, box.status], ["paused", "paused"])
  assert.equal((await box.resume()).state, "running")
  await box.freeze()
  assert.equal((await box.exec.command("cat /workspace/w.txt")).stdout, "warm\n")
  assert.deepEqual([(await box.refresh()).state, box.status], ["running", "running"])
})

test("get and list by label", async () => {
  const tag = unique("suite")
  const made = await Promise.all([0, 1].map((n) => Box.create({ labels: { suite: tag, n: String(n) } })))
  try {
    const found = await Box.list({ label: `suite:${tag}` })
    assert.deepEqual(found.map((b) => b.id).sort(), made.map((b) => b.id).sort())
    assert.deepEqual((await Box.list({ label: [`suite:${tag}`, "n:1"] })).map((b) => b.id), [made[1]?.id])
    const again = await Box.get(made[0]?.id ?? "")
    assert.equal(again.status, "running")
    assert.equal((await again.exec.command("echo $((6*7))")).stdout, "42\n")
  } finally {
    await Promise.all(made.map((b) => b.delete()))
  }
  assert.deepEqual(await Box.list({ label: `suite:${tag}` }), [])
})

test("errors carry the server's status and code and say what went wrong", async () => {
  const auth = await Box.get("b_nope", { apiKey: "not-a-key" }).catch((e: unknown) => e)
  assert.ok(auth instanceof AuthenticationError && auth.status === 401 && auth.code, String(auth))
  const missing = await Box.get("b_nope").catch((e: unknown) => e)
  assert.ok(missing instanceof NotFoundError && missing.code === "not_found", String(missing))
  assert.match(missing.message, /b_nope/)
  const invalid = await Box.create({ runtime: "cobol" as "python" }).catch((e: unknown) => e)
  assert.ok(invalid instanceof InvalidRequestError && invalid.status === 422, String(invalid))
  assert.match(invalid.message, /runtime/)
  await assert.rejects(box.exec.command("true", { timeoutS: -1 }), InvalidRequestError)
  const conflict = await box.agent.run({ prompt: "hello" }).catch((e: unknown) => e)
  assert.ok(conflict instanceof ConflictError && conflict.code === "agent_not_configured", String(conflict))
  const model = await box.agent.run({ prompt: "hi", model: "gpt-4" }).catch((e: unknown) => e)
  assert.ok(model instanceof InvalidRequestError && /provider\/name/.test(model.message), String(model))
  assert.ok(model instanceof BurrowError)
})

test("bad input is refused before anything is sent, saying what to pass", async () => {
  await assert.rejects(Box.create({ keep_alive: true } as never), {
    name: "TypeError", message: /has no option "keep_alive"; did you mean keepAlive\?/ })
  await assert.rejects(Box.create({ git: { user_name: "x" } } as never), { message: /git has no option "user_name"; did you mean userName\?/ })
  await assert.rejects(box.exec.command("" as string), { name: "TypeError", message: /non-empty string/ })
  assert.throws(() => box.exec.stream(["ls", 1] as never), { name: "TypeError", message: /array of strings/ })
  await assert.rejects(Tenant.connect(tenant.id).agent.request("GET", "/health", { timeout: 5 } as never),
                       { name: "TypeError", message: /has no option "timeout"; did you mean timeoutS\?/ })
  await assert.rejects(box.agent.run({ prompt: " " }), { name: "TypeError", message: /prompt/ })
  await assert.rejects(box.agent.run({ prompt: "p", responseSchema: "json" as never }), {
    name: "TypeError", message: /responseSchema must be a JSON schema object or a zod schema/ })
  assert.throws(() => box.agent.stream({ prompt: "p", max_turns: 2 } as never), { message: /did you mean maxTurns\?/ })
  await assert.rejects(box.files.write("x", 42 as never), { name: "TypeError", message: /string or a Uint8Array/ })
  await assert.rejects(Box.get("../tenants"), NotFoundError) // one path segment, however spelled
})

test("a tenant's agent answers through the agent route and learns from it", async () => {
  const own = Tenant.connect(tenant.id, { apiKey: key })
  const answer = await own.agent.request("POST", "/ask", {
    json: { question: "I prefer dark mode. Which theme should I pick?" },
    headers: { "X-Request-Id": "ts-req-1" } })
  assert.equal(answer.status, 200)
  assert.equal(answer.requestId, "ts-req-1")
  const asked = await own.agent.ask("What do you know?")
  assert.equal(typeof asked.answer, "string")
  assert.ok("used" in asked && "model" in asked)
  await eventually("the agent learns the preference", async () =>
    JSON.stringify((await own.agent.profile()).preferences).includes("dark mode"))
  assert.deepEqual((await own.agent.request("GET", "/health", { timeoutS: 5 })).body, { ok: true })
  await assert.rejects(own.agent.request("GET", "/_burrow/log"), NotFoundError)
  const other = Tenant.connect("someone-else", { apiKey: key })
  await assert.rejects(other.agent.profile(), NotFoundError) // another tenant's agent is not its to reach
})

test("a tenant owns its memory: add, list, recall, correct, export, delete, delete all", async () => {
  const own = Tenant.connect(tenant.id, { apiKey: key })
  const added = await own.memories.add("I'm allergic to peanuts", { subject: "allergy" })
  assert.equal(added.text, "I'm allergic to peanuts")
  assert.ok((await own.memories.list({ kind: "fact" })).items.some((i) => i.id === added.id))
  const hits = await own.agent.recall("What am I allergic to?", { limit: 5 })
  assert.equal(hits[0]?.id, added.id)
  const fixed = await own.memories.correct(added.id, "I'm allergic to peanuts and cashews")
  assert.equal((fixed["history"] as { id: string }[])[0]?.id, added.id)
  assert.equal((await own.memories.export()).format, "burrow.memory/1")
  assert.ok((await own.memories.delete(fixed.id)).includes(fixed.id))
  await assert.rejects(own.memories.get(fixed.id), NotFoundError)
  await assert.rejects(Tenant.connect("someone-else", { apiKey: key }).memories.list(), NotFoundError)
  await own.memories.add("I live in Lisbon")
  assert.equal((await own.memories.deleteAll()).replace_snapshot, true)
  assert.deepEqual(await own.agent.recall("Lisbon"), [])
})

test("the operator makes, finds and deletes tenants; a deleted tenant's key stops working", async () => {
  const made = await Tenant.create({ apiKey: OPERATOR_KEY, baseUrl: URL, policy: { keepAlive: false } })
  assert.ok(made.apiKey && made.info.home_box_id)
  assert.ok((await Tenant.list({ apiKey: OPERATOR_KEY })).some((t) => t.id === made.id))
  const fetched = await Tenant.get(made.id, { apiKey: OPERATOR_KEY })
  assert.equal(fetched.info.home_box_id, made.info.home_box_id)
  await assert.rejects(Tenant.list({ apiKey: made.apiKey }), { name: "PermissionDeniedError", status: 403 })
  await made.delete()
  await assert.rejects(Box.list({ apiKey: made.apiKey }), AuthenticationError)
  await assert.rejects(Tenant.get(made.id, { apiKey: OPERATOR_KEY }), NotFoundError)
})

test("knowledge search answers a list and filters; votes need a tenant and a shared insight", async () => {
  assert.ok(Array.isArray(await Knowledge.search("dark mode")))
  assert.ok(Array.isArray(await Knowledge.search("dark mode", { apiKey: OPERATOR_KEY, limit: 3 })))
  assert.deepEqual(await Knowledge.search("dark mode", { kinds: ["tip"], since: 4102444800 }), [])
  await assert.rejects(Knowledge.search("x", { limit: 0 }), { name: "InvalidRequestError", status: 422 })
  await assert.rejects(Knowledge.search("x", { since: 5, until: 1 }), { name: "InvalidRequestError", status: 422 })
  const unknown = "00000000-0000-4000-8000-000000000000"
  await assert.rejects(Knowledge.vote(unknown, true), { name: "NotFoundError", status: 404 })
  await assert.rejects(Knowledge.vote(unknown, false, { apiKey: OPERATOR_KEY }),
                       { name: "PermissionDeniedError", status: 403 })
})

test("a background server's preview URL: 401 without the token, the page with it or its cookie, and a frozen box woken by the next request", async () => {
  const made = await Box.create({ runtime: "python" })
  try {
    await made.files.write("site/index.html", "<h1>hello from a box</h1>")
    const server = await made.processes.start(["python3", "-m", "http.server", "8000"],
                                              { cwd: "/workspace/site", restart: "on-wake" })
    assert.equal(server.state, "running")
    const preview = await made.getPublicUrl(8000)
    assert.ok(preview.token && !preview.url.startsWith(URL), JSON.stringify(preview))
    assert.equal((await fetch(preview.url)).status, 401)

    const opened = await fetch(preview.browserUrl, { redirect: "manual" })
    assert.equal(opened.status, 303)
    assert.equal(opened.headers.get("location"), new globalThis.URL(preview.url).pathname)
    const cookie = (opened.headers.get("set-cookie") ?? "").split(";")[0] ?? ""
    assert.match(cookie, /^burrow_preview/)
    let page = await fetch(preview.url, { headers: { cookie } })
    assert.deepEqual([page.status, await page.text()], [200, "<h1>hello from a box</h1>"])
    assert.deepEqual((await made.listPublicUrls()).map((p) => [p.port, p.token]), [[8000, null]])

    assert.equal((await made.freeze()).state, "frozen")
    page = await fetch(preview.url, { headers: { authorization: `Bearer ${preview.token}` } })
    assert.deepEqual([page.status, await page.text()], [200, "<h1>hello from a box</h1>"])
    const again = await made.processes.get(server.id)
    assert.deepEqual([again.state, (await made.refresh()).state], ["running", "running"])

    await made.closePublicUrl(8000)
    assert.equal((await fetch(preview.url, { headers: { cookie } })).status, 404)  // no open port
    await assert.rejects(made.closePublicUrl(0), TypeError)
  } finally {
    await made.delete()
  }
})
