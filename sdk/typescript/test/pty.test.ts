// box.pty against a real `burrow serve`: the terminal over its WebSocket. Node 18 and 20 have
// no global WebSocket, so there this runs through the `ws` package the SDK loads itself.

import assert from "node:assert/strict"
import { test } from "node:test"

import { Box, InvalidRequestError, Terminal } from "@burrow/sdk"
import type { WebSocketConstructor } from "@burrow/sdk"

import { asNewTenant } from "./served.js"

await asNewTenant("ts-pty")
const box = await Box.create({})
const decoder = new TextDecoder()

async function until(term: Terminal, text: string): Promise<string> {
  let seen = ""
  for await (const piece of term) {
    seen += decoder.decode(piece, { stream: true })
    if (seen.includes(text)) break
  }
  return seen
}

test("pty: keystrokes and a resize reach the box's shell, and its exit comes back", async () => {
  const term = await box.pty.create({ cols: 90, rows: 20, cwd: "/tmp" })
  assert.ok(term instanceof Terminal)
  term.send("stty size; pwd\n")
  assert.match(await until(term, "/tmp\r\n"), /20 90\r\n\/tmp\r\n/)
  term.resize(120, 40)
  term.send(new TextEncoder().encode("stty size\n"))
  assert.match(await until(term, "40 120"), /40 120/)
  term.send("exit 3\n")
  assert.equal(await term.wait(), 3)
  assert.equal(term.exitCode, 3)
})

test("pty: a WebSocket class passed in is used, and a refusal is the error its code stands for", async () => {
  const name = "ws"
  const { WebSocket } = (await import(name)) as { WebSocket: WebSocketConstructor }
  let made = 0
  class Counted extends (WebSocket as unknown as new (url: string) => object) {
    constructor(url: string) {
      super(url)
      made += 1
    }
  }
  const term = await box.pty.create({ cwd: "/no/such/dir", WebSocket: Counted as unknown as WebSocketConstructor })
  assert.equal(made, 1)
  await assert.rejects(term.wait(), (error: unknown) => {
    assert.ok(error instanceof InvalidRequestError)
    assert.equal(error.status, 400)
    assert.match(error.message, /\/no\/such\/dir/)
    return true
  })
  assert.throws(() => term.send("x"), InvalidRequestError)
  await assert.rejects(box.pty.create({ cols: 0 }), TypeError)
})
