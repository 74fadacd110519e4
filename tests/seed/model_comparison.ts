// The seed's model comparison snippet in TypeScript, as written for Upstash Box: the same
// documentation and prompt in one box per model, scored side by side. tests/
// test_sdk_typescript.py runs it against Burrow with only the import line and the model
// names changed; it supplies `fs`, `evaluateHallucination` and `evaluateAccuracy`
// (tests/seed/supplied.mjs).
import { Box } from "@upstash/box"

const models = ["anthropic/claude-opus-4-6", "openai/gpt-5.3-codex", "openrouter/google/gemini-2.5-pro"]
const docs = await fs.readFile("./documentation.md", "utf-8")
const prompt = `Extract all API endpoints from this documentation:\n${docs}`
const boxes = await Promise.all(
  models.map((model) => Box.create({ runtime: "node", agent: { model } })),
)
const results = await Promise.all(boxes.map((box) => box.agent.run({ prompt })))
const evaluation = results.map((r, i) => ({
  model: models[i],
  result: r.result,
  hallucinationPct: evaluateHallucination(r.result, docs),
  accuracyScore: evaluateAccuracy(r.result, docs),
}))
const bestModel = evaluation.sort((a, b) => a.hallucinationPct - b.hallucinationPct)[0]
