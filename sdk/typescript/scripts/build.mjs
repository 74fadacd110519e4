// The package's builds: ESM (dist/esm) and CommonJS (dist/cjs), each with its .d.ts, from
// one source. dist/cjs gets a package.json of its own that marks its .js files CommonJS
// (the package itself is "type": "module").

import { spawnSync } from "node:child_process"
import { mkdir, rm, writeFile } from "node:fs/promises"
import { createRequire } from "node:module"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc")

export function compile(project) {
  const done = spawnSync(process.execPath, [tsc, "-p", project], { cwd: root, stdio: "inherit" })
  if (done.status !== 0) throw new Error(`tsc -p ${project} failed`)
}

export async function build() {
  await rm(new URL("../dist", import.meta.url), { recursive: true, force: true })
  compile("tsconfig.json")
  compile("tsconfig.cjs.json")
  await mkdir(new URL("../dist/cjs", import.meta.url), { recursive: true })
  await writeFile(new URL("../dist/cjs/package.json", import.meta.url),
                  JSON.stringify({ type: "commonjs" }) + "\n")
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  build().catch((error) => { console.error(`build: ${error.message}`); process.exitCode = 1 })
}
