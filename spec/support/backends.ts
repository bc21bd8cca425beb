// The backends every contract suite runs on. pg-mem is in-process and fast;
// PGlite is real PostgreSQL with nothing installed; the server is the judge,
// and runs whenever TEST_DATABASE_URL names one (CI always sets it).
import postgres, { type Options, type Sql } from 'postgres'
import { connectPgMem } from './pg-mem'

export interface Backend {
  readonly name: string
  /** True for real PostgreSQL (PGlite or a server); false for pg-mem. */
  readonly real: boolean
  /** A postgres.js instance on this backend. The caller ends it. */
  connect(options?: Options<{}>): Sql
  /** Store options this backend needs; tests spread them into every store they create. */
  readonly storeOptions: { coalesce?: boolean }
}

const quiet = { onnotice: () => {} }

// pg-mem cannot run the coalescers' batched statements (no multi-argument
// unnest, no `= ANY` on an indexed column: deviation 13 in ./pg-mem.ts), so
// stores on it send one statement per call. Batching is tested on the others.
const pgMem: Backend = {
  name: 'pg-mem',
  real: false,
  connect: (options) => connectPgMem(options),
  storeOptions: { coalesce: false },
}

const pglite: Backend = {
  name: 'PGlite',
  real: true,
  connect: (options) => postgres(requiredEnv('PGLITE_TEST_URL'), { ...quiet, max: 4, ...options }),
  storeOptions: {},
}

const server: Backend = {
  name: 'PostgreSQL server',
  real: true,
  connect: (options) => postgres(requiredEnv('TEST_DATABASE_URL'), { ...quiet, ...options }),
  storeOptions: {},
}

// PgBouncer in transaction mode hands each transaction to any server
// connection, so statements prepared on one are missing on the next:
// postgres.js must not prepare them (.ci/pgbouncer.sh starts one).
const pgBouncer: Backend = {
  name: 'PgBouncer',
  real: true,
  connect: (options) => postgres(requiredEnv('TEST_PGBOUNCER_URL'), { ...quiet, ...options, prepare: false }),
  storeOptions: {},
}

export const backends: Backend[] = [
  pgMem,
  pglite,
  ...(process.env.TEST_DATABASE_URL ? [server] : []),
  ...(process.env.TEST_PGBOUNCER_URL ? [pgBouncer] : []),
]
export const realBackends = backends.filter((backend) => backend.real)

/** Runs the suite once per backend, each in its own describe block. */
export function describeEachBackend(title: string, suite: (backend: Backend) => void, list = backends): void {
  for (const backend of list) describe(`${title} [${backend.name}]`, () => suite(backend))
}

let tableCounter = 0
/** A table name no other test file or run is using. */
export function uniqueTable(prefix = 'sessions'): string {
  return `${prefix}_${process.pid}_${Date.now().toString(36)}_${tableCounter++}`
}

function requiredEnv(name: string): string {
  const value = process.env[name]
  if (!value) throw new Error(`${name} is not set: run the tests through jest (spec/support/global-setup.mjs sets it)`)
  return value
}

/**
 * A postgres.js instance on backend for the enclosing describe block:
 * connected before its first test, ended after its last. Call the result to get it.
 */
export function connectForSuite(backend: Backend, options?: Options<{}>): () => Sql {
  let sql: Sql | undefined
  beforeAll(() => {
    sql = backend.connect(options)
  })
  afterAll(async () => {
    await sql?.end({ timeout: 5 })
  })
  return () => sql!
}
