/**
 * The server the tests run against, as `npm test` is told of it: BURROW_URL and
 * BURROW_API_KEY, the operator's key (tests/test_sdk_typescript.py starts one and sets
 * both). Each test file makes a tenant of its own and works with its key, as a product does.
 */

import { randomBytes } from "node:crypto"
import { after } from "node:test"

import { Tenant } from "@burrow/sdk"

function required(name: string): string {
  const value = process.env[name]
  if (!value) {
    throw new Error(`${name} is not set: npm test runs against a Burrow server; set BURROW_URL ` +
                    "and BURROW_API_KEY (the operator key) to one started with `burrow serve " +
                    "--local-model`, or run tests/test_sdk_typescript.py, which starts one")
  }
  return value
}

export const URL = required("BURROW_URL")
export const OPERATOR_KEY = required("BURROW_API_KEY")
/** A bundled local model: a run takes seconds, not minutes. */
export const MODEL = process.env["BURROW_TEST_MODEL"] || "local/smollm2-135m"

export function unique(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString("hex")}`
}

/** A new tenant whose key becomes BURROW_API_KEY for this file; deleted (with its boxes)
 * when the file's tests are done. */
export async function asNewTenant(prefix: string): Promise<{ tenant: Tenant; key: string }> {
  const tenant = await Tenant.create({ id: unique(prefix), apiKey: OPERATOR_KEY })
  const key = tenant.apiKey
  if (!key) throw new Error("Tenant.create() returned no key")
  process.env["BURROW_API_KEY"] = key
  after(async () => {
    await tenant.delete()
  })
  return { tenant, key }
}

/** Poll `check` until it returns true or `seconds` pass. */
export async function eventually(what: string, check: () => Promise<boolean>,
                                 seconds = 30): Promise<void> {
  const deadline = Date.now() + seconds * 1000
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${seconds} s`)
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}
