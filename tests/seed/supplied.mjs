// What the seed's TypeScript model comparison takes as given, supplied as globals before it
// runs (node --import): `fs` (promises), and two scorers that compare an answer with the
// endpoints (METHOD /path) the documentation really has, as examples/model_comparison.py
// scores its runs.
import fs from "node:fs/promises"

const ENDPOINT = /\b(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS)\s+(\/[A-Za-z0-9_{}./:-]*)/g

function endpoints(text) {
  const found = new Set()
  for (const [, method, path] of String(text ?? "").matchAll(ENDPOINT)) {
    found.add(`${method} ${path.replace(/[.,;:]+$/, "").replace(/(.)\/$/, "$1")}`)
  }
  return found
}

/** The share (%) of the endpoints the answer names that the documentation lacks. */
function evaluateHallucination(result, docs) {
  const named = endpoints(result)
  const truth = endpoints(docs)
  const made = [...named].filter((e) => !truth.has(e)).length
  return named.size ? (100 * made) / named.size : 0
}

/** The share (%) of the documentation's endpoints the answer names. */
function evaluateAccuracy(result, docs) {
  const named = endpoints(result)
  const truth = endpoints(docs)
  return truth.size ? (100 * [...truth].filter((e) => named.has(e)).length) / truth.size : 0
}

Object.assign(globalThis, { fs, evaluateHallucination, evaluateAccuracy })
