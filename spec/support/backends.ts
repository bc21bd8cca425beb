// The backends every contract suite runs on. pg-mem is in-process and fast;
// PGlite is real PostgreSQL with nothing installed; the server is the judge,
// and runs whenever TEST_DATABASE_URL names one (CI always sets it). Each
// real one runs with both drivers: postgres.js, and node-postgres (a pg.Pool).
import pg from 'pg'
import postgres, { type Options, type Sql } from 'postgres'
import type { Client } from '../../lib/drivers/detect'
import { connectPgMem } from './pg-mem'

export type DriverName = 'postgres.js' | 'pg'

export interface Backend {
  /** The database: pg-mem, PGlite, PostgreSQL server or PgBouncer. */
  readonly name: string
  /** The driver the stores under test are given. */
  readonly driver: DriverName
  /** True for real PostgreSQL (PGlite or a server); false for pg-mem. */
  readonly real: boolean
  /** A postgres.js instance on this backend. The caller ends it. */
  connect(options?: Options<{}>): Sql
  /** postgres.js for the test's own statements, and the client of the backend's driver for stores. */
  open(options?: Options<{}>): Connection
  /** Store options this backend needs; tests spread them into every store they create. */
  readonly storeOptions: { coalesce?: boolean; prepare?: boolean }
}

export interface Connection {
  /** postgres.js on the same database, for statements the test sends itself. */
  readonly sql: Sql
  /** What a store is given: sql itself, or a pg.Pool. */
  readonly client: Client
  /** The adapter's option for client: { sql } or { pool }. */
  readonly source: { sql: Sql } | { pool: pg.Pool }
  /** Ends sql and the pool. */
  end(): Promise<void>
}

const quiet = { onnotice: () => {} }

// pg-mem cannot run the coalescers' batched statements (no multi-argument
// unnest, no `= ANY` on an indexed column: deviation 13 in ./pg-mem.ts), so
// stores on it send one statement per call. Batching is tested on the others.
const pgMem = onPostgresJs({
  name: 'pg-mem',
  real: false,
  connect: (options) => connectPgMem(options),
  storeOptions: { coalesce: false },
})

const pglite = onPostgresJs({
  name: 'PGlite',
  real: true,
  url: 'PGLITE_TEST_URL',
  connect: (options) => postgres(requiredEnv('PGLITE_TEST_URL'), { ...quiet, max: 4, ...options }),
  storeOptions: {},
})

const server = onPostgresJs({
  name: 'PostgreSQL server',
  real: true,
  url: 'TEST_DATABASE_URL',
  connect: (options) => postgres(requiredEnv('TEST_DATABASE_URL'), { ...quiet, ...options }),
  storeOptions: {},
})

// PgBouncer in transaction mode hands each transaction to any server
// connection, so statements prepared on one are missing on the next:
// postgres.js must not prepare them (.ci/pgbouncer.sh starts one), and the
// store is told not to name them for pg.
const pgBouncer = onPostgresJs({
  name: 'PgBouncer',
  real: true,
  url: 'TEST_PGBOUNCER_URL',
  connect: (options) => postgres(requiredEnv('TEST_PGBOUNCER_URL'), { ...quiet, ...options, prepare: false }),
  storeOptions: {},
})

// A backend, with the name of the variable that holds its URL (pg.Pool needs one).
type Database = Omit<Backend, 'driver' | 'open'> & { readonly url?: string }

function onPostgresJs(database: Database): Backend & Database {
  return {
    ...database,
    driver: 'postgres.js',
    open(options) {
      const sql = database.connect(options)
      return { sql, client: sql, source: { sql }, end: () => sql.end({ timeout: 5 }) }
    },
  }
}

// The same database through a pg.Pool. PGlite serves every connection from
// one backend, where two connections preparing the same statement name
// collide: there the pg pool does not prepare.
function onPg(database: Backend & Database): Backend {
  const prepare = database.name !== 'PgBouncer' && database.name !== 'PGlite'
  return {
    ...database,
    driver: 'pg',
    storeOptions: { ...database.storeOptions, ...(prepare ? {} : { prepare: false }) },
    open(options) {
      const sql = database.connect(options)
      const pool = new pg.Pool({ connectionString: requiredEnv(database.url!), max: options?.max ?? 10 })
      // node-postgres reports a dropped idle connection as an 'error' event, which must be heard.
      pool.on('error', () => {})
      return { sql, client: pool, source: { pool }, end: async () => void (await Promise.all([sql.end({ timeout: 5 }), pool.end()])) }
    },
  }
}

export const backends: (Backend & Database)[] = [
  pgMem,
  pglite,
  ...(process.env.TEST_DATABASE_URL ? [server] : []),
  ...(process.env.TEST_PGBOUNCER_URL ? [pgBouncer] : []),
]
export const realBackends = backends.filter((backend) => backend.real)

/**
 * backends with postgres.js, then every real one again with pg. pg-mem stays
 * on postgres.js: its harness speaks the wire protocol as postgres.js uses it.
 */
export const driverBackends: Backend[] = [...backends, ...realBackends.map(onPg)]
export const realDriverBackends = driverBackends.filter((backend) => backend.real)

/** Runs the suite once per backend, each in its own describe block. */
export function describeEachBackend(title: string, suite: (backend: Backend) => void, list = backends): void {
  for (const backend of list) describe(`${title} [${labelOf(backend)}]`, () => suite(backend))
}

/** The backend's name, and its driver when that is not postgres.js (so existing titles stay). */
export function labelOf(backend: Backend): string {
  return backend.driver === 'postgres.js' ? backend.name : `${backend.name}, ${backend.driver}`
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
 * A connection to backend for the enclosing describe block: opened before
 * its first test, ended after its last. Call the result to get it.
 */
export function connectForSuite(backend: Backend, options?: Options<{}>): () => Connection {
  let connection: Connection | undefined
  beforeAll(() => {
    connection = backend.open(options)
  })
  afterAll(async () => {
    await connection?.end()
  })
  return () => connection!
}
