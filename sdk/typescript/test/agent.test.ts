// Agent runs against a real `burrow serve --local-model`: a run held to a zod schema, and a
// streamed run held to a JSON schema, each with a bundled model (in parallel: each model has
// a llama.cpp server of its own).

import assert from "node:assert/strict"
import { describe, test } from "node:test"

import { Agent, Box } from "@burrow/sdk"
import type { Run, RunChunk } from "@burrow/sdk"
import { z } from "zod"

import { MODEL, SECOND_MODEL, asNewTenant } from "./served.js"

await asNewTenant("ts-agent")

const Note = z.object({ path: z.string(), words: z.number().int() })

describe("agent runs", { concurrency: 2 }, () => {
  test("a run with a zod schema returns the object, parsed and typed", { timeout: 300_000 }, async () => {
    const box = await Box.create({ agent: { harness: Agent.Burrow, model: MODEL } }) // the tenant's: deleted with it
    assert.deepEqual(box.info.agent, { harness: "burrow", model: MODEL })
    await box.files.write("/workspace/notes.txt", "one two three four five\n")
    const run = await box.agent.run({
      prompt: "How many words are in /workspace/notes.txt? Give its path and the number of words.",
      responseSchema: Note, maxTurns: 3, timeoutS: 240 })
    assert.equal(run.status, "completed", run.error ?? "")
    const words: number = run.result?.words ?? -1 // typed by the schema: a number
    assert.ok(Number.isInteger(words) && typeof run.result?.path === "string", JSON.stringify(run))
    assert.deepEqual([run.model, run.harness, run.box_id], [MODEL, "burrow", box.id])
    assert.ok((run.usage?.turns ?? 0) >= 1)
    const listed = await box.agent.list()
    assert.deepEqual(listed.map((r) => r.id), [run.id])
    assert.deepEqual((await box.agent.get(run.id)).result, run.result)
  })

  test("a streamed run yields start first and finish last, with the final Run", { timeout: 300_000 }, async () => {
    const box = await Box.create()
    const schema = { type: "object", properties: { answer: { type: "string" } }, required: ["answer"] }
    const stream = box.agent.stream<{ answer: string }>({
      prompt: "Say hello.", responseSchema: schema, model: SECOND_MODEL, maxTurns: 2, timeoutS: 240 })
    const chunks: RunChunk<{ answer: string }>[] = []
    for await (const chunk of stream) chunks.push(chunk)
    const types = chunks.map((c) => c.type)
    assert.equal(types[0], "start")
    assert.equal(types[types.length - 1], "finish")
    assert.equal(types.filter((t) => t === "finish").length, 1)
    const run: Run<{ answer: string }> = await stream.finalRun()
    assert.ok(stream.run === run && run.status === "completed", JSON.stringify(run))
    assert.equal(typeof run.result?.answer, "string")
    assert.equal(chunks[0]?.type === "start" && chunks[0].run_id, run.id)
    assert.equal(run.model, SECOND_MODEL)
  })
})
