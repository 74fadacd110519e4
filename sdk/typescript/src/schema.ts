/**
 * A run's responseSchema: a JSON schema, sent as it is, or a zod schema (zod 4, or the
 * `zod/v4` of zod 3.25), sent as its JSON schema and used to parse the result. zod is an
 * optional peer dependency: it is loaded only when a zod schema is given.
 */

import { BurrowError } from "./errors.js"
import type { Run } from "./wire.js"
import { describe } from "./wire.js"

/** A JSON schema, as an object. */
export type JsonSchema = { readonly [keyword: string]: unknown }

/** What the SDK needs of a zod schema (zod's own types are not needed to build or use it). */
export interface ZodLike<T = unknown> {
  readonly _zod: object
  parse(data: unknown): T
}

/** The type a zod schema parses to. */
export type Parsed<S> = S extends ZodLike<infer T> ? T : never

export type ResponseSchema = JsonSchema | ZodLike

function isZod(schema: unknown): schema is ZodLike {
  return typeof schema === "object" && schema !== null && "_zod" in schema &&
    typeof (schema as { parse?: unknown }).parse === "function"
}

interface ZodCore {
  toJSONSchema(schema: unknown): Record<string, unknown>
}

// A variable, so that bundlers and the compiler leave the optional dependency alone.
const ZOD_CORE = "zod/v4/core"

/** Throw if `schema` is neither a JSON schema nor a zod 4 schema (nor absent). */
export function checkSchema(schema: unknown): void {
  if (schema === undefined || schema === null || isZod(schema)) return
  if (typeof schema !== "object" || Array.isArray(schema)) {
    throw new TypeError("responseSchema must be a JSON schema object or a zod schema, not " +
                        describe(schema))
  }
  if ("_def" in schema && "safeParse" in schema) {
    throw new TypeError("responseSchema is a zod 3 schema: use zod 4 (or `zod/v4` from zod " +
                        "3.25), or pass its JSON schema")
  }
}

/** The JSON schema to send for `schema`. */
export async function jsonSchemaOf(schema: unknown): Promise<JsonSchema | undefined> {
  checkSchema(schema)
  if (schema === undefined || schema === null) return undefined
  if (isZod(schema)) {
    let core: ZodCore
    try {
      core = (await import(ZOD_CORE)) as ZodCore
    } catch {
      throw new TypeError("responseSchema is a zod schema but zod/v4/core cannot be loaded: " +
                          "install zod 4 (npm install zod) beside @burrow/sdk")
    }
    const { $schema: _, ...json } = core.toJSONSchema(schema)
    return json
  }
  return schema as JsonSchema
}

/** The Run; with a zod schema, a completed run's `result` parsed by it. */
export function parseRun<T>(run: Record<string, unknown>, schema: unknown): Run<T> {
  const result = run["status"] === "completed" ? run["result"] ?? null : null
  if (!isZod(schema) || result === null) return { ...run, result } as unknown as Run<T>
  try {
    return { ...run, result: schema.parse(result) } as unknown as Run<T>
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error)
    throw new BurrowError(`the run's result does not fit the responseSchema: ${why}`,
                          { code: "invalid_result" })
  }
}
