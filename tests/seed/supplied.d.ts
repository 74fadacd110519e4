// The types of what tests/seed/supplied.mjs supplies to the seed's TypeScript snippets.
declare const fs: typeof import("node:fs/promises")
declare function evaluateHallucination(result: unknown, docs: string): number
declare function evaluateAccuracy(result: unknown, docs: string): number
