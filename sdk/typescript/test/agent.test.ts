// An agent run against a real `burrow serve --local-model`, with a bundled model: streamed,
// held to a zod schema. One run: each takes the model seconds, and box.agent.run() is this
// same stream read to its end.

import assert from "node:assert/strict"
import { test } from "node:test"

import { Agent, Box } from "@burrow/sdk"
import type { Run, RunChunk } from "@burrow/sdk"
import { z } from "zod"

import { MODEL, asNewTenant } from "./served.js"

await asNewTenant("ts-agent")

const Note = z.object({ path: z.string(), words: z.number().int() })
type Note = z.infer<typeof Note>

test("a streamed run with a zod schema yields start first and finish last, with the parsed object", { timeout: 300_000 }, async () => {
  const box = await Box.create({ agent: { harness: Agent.Burrow, model: MODEL } }) // deleted with its tenant
  assert.deepEqual(box.info.agent, { harness: "burrow", model: MODEL, mcp_servers: {} })
  await box.files.write("/workspace/notes.txt", "one two three four five\n")
  const stream = box.agent.stream({
    prompt: "How many words are in /workspace/notes.txt? Give its path and the number of words.",
    responseSchema: Note, maxTurns: 3, timeoutS: 240 })
  const chunks: RunChunk<Note>[] = []
  for await (const chunk of stream) chunks.push(chunk)
  const types = chunks.map((c) => c.type)
  assert.deepEqual([types[0], types[types.length - 1]], ["start", "finish"], types.join(" "))
  assert.equal(types.filter((t) => t === "finish").length, 1)
  const run: Run<Note> = await stream.finalRun()
  assert.ok(stream.run === run && run.status === "completed", JSON.stringify(run))
  const words: number = run.result?.words ?? -1 // typed by the schema: a number
  assert.ok(Number.isInteger(words) && typeof run.result?.path === "string", JSON.stringify(run))
  assert.equal(chunks[0]?.type === "start" && chunks[0].run_id, run.id)
  assert.deepEqual([run.model, run.harness, run.box_id], [MODEL, "burrow", box.id])
  assert.ok((run.usage?.turns ?? 0) >= 1)
  assert.deepEqual((await box.agent.list()).map((r) => r.id), [run.id])
  assert.deepEqual((await box.agent.get(run.id)).result, run.result)
})
