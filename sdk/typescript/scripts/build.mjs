// The package's builds: ESM (dist/esm) and CommonJS (dist/cjs), each with its .d.ts, from
// one source. dist/cjs gets a package.json of its own that marks its .js files CommonJS
// (the package itself is "type": "module").
//
// A build whose inputs have not changed since the last one is skipped (dist/.inputs holds
// their hash), so that `npm test` after a build leaves dist alone: programs already running
// from it (the seed snippets in the suite) are not pulled from under them.

import { spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import { mkdir, readFile, readdir, rm, writeFile } from "node:fs/promises"
import { createRequire } from "node:module"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const dist = new URL("../dist/", import.meta.url)
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc")
const INPUTS = ["package.json", "package-lock.json", "tsconfig.json", "tsconfig.cjs.json"]

export function compile(project) {
  const done = spawnSync(process.execPath, [tsc, "-p", project], { cwd: root, stdio: "inherit" })
  if (done.status !== 0) throw new Error(`tsc -p ${project} failed`)
}

async function inputsHash() {
  const sources = (await readdir(new URL("../src", import.meta.url))).sort().map((f) => `src/${f}`)
  const hash = createHash("sha256")
  for (const file of [...INPUTS, ...sources]) {
    hash.update(`${file}\0`).update(await readFile(new URL(`../${file}`, import.meta.url))).update("\0")
  }
  return hash.digest("hex")
}

export async function build() {
  const inputs = await inputsHash()
  if (await readFile(new URL(".inputs", dist), "utf-8").catch(() => "") === inputs) return
  await rm(dist, { recursive: true, force: true })
  compile("tsconfig.json")
  compile("tsconfig.cjs.json")
  await mkdir(new URL("cjs", dist), { recursive: true })
  await writeFile(new URL("cjs/package.json", dist), JSON.stringify({ type: "commonjs" }) + "\n")
  await writeFile(new URL(".inputs", dist), inputs)
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  build().catch((error) => { console.error(`build: ${error.message}`); process.exitCode = 1 })
}
