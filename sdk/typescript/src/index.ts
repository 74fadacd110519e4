/**
 * Burrow's TypeScript SDK: `Box`, a persistent sandbox on a Burrow server, with exec, files,
 * git and agent runs; `Tenant`, its agent and its memories; `Knowledge`. Settings: BURROW_URL (default
 * http://127.0.0.1:8420) and BURROW_API_KEY, or apiKey / baseUrl per call. The same surface
 * as the Python SDK (`burrow`), in TypeScript's idiom: options objects in camelCase, what
 * the server returns as its API spells it (src/openapi.ts, generated from its document).
 */

export { Agent, AgentRuns, RunStream } from "./agent.js"
export type { McpServerOptions, RunOptions } from "./agent.js"
export { Box } from "./box.js"
export type { AgentOptions, CreateOptions } from "./box.js"
export type { ClientOptions } from "./config.js"
export {
  AuthenticationError, BoxStateError, BurrowError, ConflictError, ConnectionError, GitError,
  InvalidRequestError, NotFoundError, PermissionDeniedError, RateLimitError,
  ServiceUnavailableError, TimeoutError,
} from "./errors.js"
export { Exec } from "./exec.js"
export type { Command, CommandOptions, ExecOptions } from "./exec.js"
export { Files } from "./files.js"
export { Git } from "./git.js"
export type { GitChange, GitStatus } from "./git.js"
export { Knowledge } from "./knowledge.js"
export type { InsightKind, KnowledgeSearchOptions } from "./knowledge.js"
export { Memories } from "./memory.js"
export { Processes } from "./processes.js"
export type { LogOffsets, ProcessOptions, ProcessSignal } from "./processes.js"
export type { MemoriesListOptions, MemoryAddOptions, MemoryKind } from "./memory.js"
export type { JsonSchema, Parsed, ResponseSchema, ZodLike } from "./schema.js"
export { Tenant, TenantAgent } from "./tenant.js"
export type { AgentAnswer, AgentRequestOptions, RecallOptions } from "./tenant.js"
export type {
  AgentAskAnswer, AgentConfig, AgentProfile, BoxInfo, ExecChunk, ExecResult, FileEntry,
  Insight, MemoryExport, MemoryItem, MemoryPage, MemoryWiped, ObservationsAccepted,
  ObservedPair, Process, ProcessChunk, ProcessLogPiece, ProcessLogs, PublicUrl, RecallResult, Run,
  RunChunk, RunUsage, Snapshot, TenantInfo, FileEvent,
} from "./wire.js"
export type { components, operations, paths } from "./openapi.js"
