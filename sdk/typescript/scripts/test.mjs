// npm test: build the package, compile the tests against its declarations, and run them with
// Node's own test runner, the files side by side (the agent runs wait on models, the rest on
// the server). Needs a server: BURROW_URL and BURROW_API_KEY (the operator key), as
// tests/test_sdk_typescript.py sets them; without them only the offline tests run, and the
// run fails.

import { readdir, rm } from "node:fs/promises"
import { fileURLToPath } from "node:url"
import { run } from "node:test"
import { spec } from "node:test/reporters"

import { build, compile } from "./build.mjs"

const root = fileURLToPath(new URL("..", import.meta.url))

await build()
await rm(new URL("../build", import.meta.url), { recursive: true, force: true })
compile("tsconfig.test.json")

const only = process.argv.slice(2)
const files = (await readdir(new URL("../build", import.meta.url)))
  .filter((name) => name.endsWith(".test.js"))
  .filter((name) => !only.length || only.some((o) => name.startsWith(o)))
  .map((name) => `${root}build/${name}`)
if (!files.length) throw new Error(`no test files match ${only.join(" ")}`)

let passed = 0
let failed = 0
const stream = run({ files, concurrency: files.length })
stream.on("test:pass", () => { passed += 1 })
stream.on("test:fail", () => { failed += 1 })
const report = stream.compose(new spec())
report.pipe(process.stdout, { end: false })
report.on("end", () => {
  console.log(`npm test: ${passed} passed, ${failed} failed`)
  if (failed || !passed) process.exitCode = 1
})
