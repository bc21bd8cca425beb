// Every store under test behind one promise interface, with an untimed bulk
// preload and a close that removes what the benchmark created. Each
// PostgreSQL store gets its own table and its own pool of POOL_SIZE
// connections (the default of both pg.Pool and postgres.js).
// This library appears eight times: as shipped (core, adapter), the same on a
// node-postgres pg.Pool (core-pg, adapter-pg: the same driver as
// connect-pg-simple), with coalescing off (single), with one durability
// knob relaxed (sync-off, unlogged), and with merging off (merge-off:
// whole-session overwrite, for the cost of merging).
import connectPgSimple from 'connect-pg-simple'
import { RedisStore } from 'connect-redis'
import session from 'express-session'
import pg from 'pg'
import postgres, { type Sql } from 'postgres'
import { createClient } from 'redis'
import { textArray } from '../lib/coalescer.js'
import { PostgresStore } from '../lib/postgres-store.js'
import { PostgresSessionStore } from '../lib/session-store.js'
import type { BenchSession } from './sessions.js'

export const DATABASE_URL = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
export const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379'
export const POOL_SIZE = 10

export type StoreName =
  | 'memory' | 'redis' | 'cps' | 'floor' | 'core' | 'adapter' | 'core-pg' | 'adapter-pg' | 'single' | 'sync-off' | 'unlogged'
  | 'merge-off'

export const STORE_LABELS: Record<StoreName, string> = {
  memory: 'express-session MemoryStore',
  redis: 'connect-redis 9 (redis)',
  cps: 'connect-pg-simple 10 (pg.Pool)',
  floor: 'floor: hand-written SQL on postgres.js',
  core: 'this store: core PostgresStore',
  adapter: 'this store: PostgresSessionStore',
  'core-pg': 'this store on pg.Pool: core PostgresStore',
  'adapter-pg': 'this store on pg.Pool: PostgresSessionStore',
  single: 'this store, coalesce: false',
  'sync-off': 'this store, synchronous_commit=off',
  unlogged: 'this store, UNLOGGED table',
  'merge-off': 'this store, merge: false',
}

export interface BenchStore {
  readonly name: StoreName
  get(sid: string): Promise<unknown>
  set(sid: string, session: BenchSession): Promise<void>
  touch(sid: string, session: BenchSession): Promise<void>
  destroy(sid: string): Promise<void>
  /** Writes sessions in bulk, outside any measurement. */
  preload(sessions: ReadonlyArray<readonly [string, BenchSession]>): Promise<void>
  /** The express-session Store for the HTTP benchmark (not for core and floor). */
  readonly expressStore?: session.Store
  /** PostgreSQL stores: the table, and the application_name of every connection of the pool. */
  readonly table?: string
  readonly applicationName?: string
  /** PostgreSQL stores: statements sent so far, counted at the client. */
  statements?(): number
  /** PostgreSQL stores: of those, the ones that are not a SELECT (writes, and BEGIN/COMMIT of a transaction). */
  writeStatements?(): number
  /**
   * PostgreSQL stores: makes every backend of the pool publish its pending
   * statistics now, and resolves to the transactions this itself ran.
   */
  flushStats?(): Promise<number>
  close(): Promise<void>
}

const tableSuffix = `${process.pid}_${Date.now().toString(36)}`
const quiet = { onnotice: () => {} }

/** Each pool's connections carry this name, so the cost bench can find their backends. */
export const applicationName = (name: StoreName, pid = process.pid) => `esp-bench ${name} ${pid}`

export async function openStore(name: StoreName, url = DATABASE_URL): Promise<BenchStore> {
  switch (name) {
    case 'memory':
      return expressStore(name, new session.MemoryStore(), async () => {})
    case 'redis':
      return openRedis()
    case 'cps':
      return openConnectPgSimple(url)
    case 'floor':
      return openFloor(url)
    case 'core':
    case 'adapter':
    case 'core-pg':
    case 'adapter-pg':
    case 'single':
    case 'sync-off':
    case 'unlogged':
    case 'merge-off':
      return openThisStore(name, url)
  }
}

// --- express-session stores: callbacks turned into promises ---------------

function promisify<T>(call: (callback: (error: unknown, value?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => call((error, value) => (error ? reject(error) : resolve(value as T))))
}

function expressStore(
  name: StoreName,
  store: session.Store,
  close: () => Promise<void>,
  bulkPreload?: BenchStore['preload'],
): BenchStore {
  const asSessionData = (s: BenchSession) => s as unknown as session.SessionData
  return {
    name,
    expressStore: store,
    get: (sid) => promisify((cb) => store.get(sid, cb)),
    set: (sid, s) => promisify<void>((cb) => store.set(sid, asSessionData(s), cb)),
    touch: (sid, s) => promisify<void>((cb) => store.touch!(sid, asSessionData(s), cb as (error?: unknown) => void)),
    destroy: (sid) => promisify<void>((cb) => store.destroy(sid, cb)),
    preload:
      bulkPreload ??
      (async (sessions) => {
        for (const [sid, s] of sessions) await promisify<void>((cb) => store.set(sid, asSessionData(s), cb))
      }),
    close,
  }
}

async function openRedis(): Promise<BenchStore> {
  const client = createClient({ url: REDIS_URL })
  client.on('error', () => {}) // a failed command still rejects; this only silences reconnect noise
  await client.connect()
  const prefix = `bench:${tableSuffix}:`
  const store = new RedisStore({ client, prefix })
  const preload: BenchStore['preload'] = async (sessions) => {
    for (let i = 0; i < sessions.length; i += 1000) {
      const multi = client.multi()
      for (const [sid, s] of sessions.slice(i, i + 1000)) {
        multi.set(prefix + sid, JSON.stringify(s), { expiration: { type: 'EX', value: 86400 } })
      }
      await multi.exec()
    }
  }
  return expressStore('redis', store, async () => {
    for await (const keys of client.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 })) {
      if (keys.length > 0) await client.del(keys)
    }
    await client.close()
  }, preload)
}

async function openConnectPgSimple(url: string): Promise<BenchStore> {
  const PgStore = connectPgSimple(session)
  const pool = new pg.Pool({ connectionString: url, max: POOL_SIZE, application_name: applicationName('cps') })
  // connect-pg-simple sends every statement through pool.query.
  const counter = countingPool(pool)
  const table = `bench_cps_${tableSuffix}`
  // connect-pg-simple's own table.sql, under a table of our own.
  await pool.query(`CREATE TABLE "${table}" (sid varchar NOT NULL COLLATE "default", sess json NOT NULL, expire timestamp(6) NOT NULL)`)
  await pool.query(`ALTER TABLE "${table}" ADD CONSTRAINT "${table}_pkey" PRIMARY KEY (sid)`)
  await pool.query(`CREATE INDEX "${table}_expire" ON "${table}" (expire)`)
  const store = new PgStore({ pool, tableName: table, pruneSessionInterval: false })
  const preload: BenchStore['preload'] = async (sessions) => {
    for (let i = 0; i < sessions.length; i += 2000) {
      const chunk = sessions.slice(i, i + 2000)
      await pool.query(
        `INSERT INTO "${table}" (sid, sess, expire) SELECT s, j::json, e::timestamptz::timestamp ` +
          'FROM unnest($1::text[], $2::text[], $3::text[]) AS u(s, j, e) ' +
          'ON CONFLICT (sid) DO UPDATE SET sess = EXCLUDED.sess, expire = EXCLUDED.expire',
        [chunk.map(([sid]) => sid), chunk.map(([, s]) => JSON.stringify(s)), chunk.map(([, s]) => s.cookie.expires.toISOString())],
      )
    }
  }
  const measured = {
    table, applicationName: applicationName('cps'), ...counter,
    flushStats: () => flushBackends(async (text) => (await pool.query<{ pid: number }>(text)).rows),
  }
  return {
    ...expressStore('cps', store, async () => {
      await pool.query(`DROP TABLE IF EXISTS "${table}"`)
      await pool.end()
    }, preload),
    ...measured,
  }
}

/** Statements a store sent, counted at the client as they go out. */
function statementCounter() {
  let statements = 0
  let writes = 0
  return {
    count(text: string) {
      statements++
      if (!/^\s*SELECT\b/i.test(text)) writes++
    },
    statements: () => statements,
    writeStatements: () => writes,
  }
}

/**
 * Counts what goes through pool.query: every statement of connect-pg-simple,
 * and of this store on pg.Pool outside transactions (migrate and cleanup
 * check out a client; no request path does).
 */
function countingPool(pool: pg.Pool): Pick<BenchStore, 'statements' | 'writeStatements'> {
  const { count, ...counted } = statementCounter()
  const query = pool.query.bind(pool) as (...args: unknown[]) => unknown
  pool.query = ((...args: unknown[]) => {
    const [first] = args as [string | { text: string }]
    count(typeof first === 'string' ? first : first.text)
    return query(...args)
  }) as typeof pool.query
  return counted
}

// PostgreSQL 15+ backends publish their statistics when they go idle, at most
// once a second (else 10 s later): pg_stat_force_next_flush() makes the backend
// that runs it publish as soon as that statement ends. Every backend of the
// pool must run it: as many sleeping flush statements at once as the pool has
// backends land on distinct idle connections; any backend missed gets another round.
// The flush statement reads a catalog table: a backend with no table statistics
// pending skips the flush and would publish the statement's own transaction
// only at some later flush (measured on PostgreSQL 15).
const FLUSH =
  'SELECT pg_backend_pid() AS pid, pg_stat_force_next_flush() FROM pg_sleep(0.05), (SELECT 1 FROM pg_namespace LIMIT 1) AS catalog'
const OWN_BACKENDS =
  "SELECT pid FROM pg_stat_activity WHERE application_name = current_setting('application_name') AND datname = current_database()"

export async function flushBackends(query: (text: string) => Promise<{ pid: number }[]>): Promise<number> {
  const pending = new Set((await query(OWN_BACKENDS)).map((row) => row.pid))
  let transactions = 1
  for (let attempt = 0; pending.size > 0; attempt++) {
    if (attempt === 5) throw new Error(`statistics of backends ${[...pending].join(', ')} could not be flushed`)
    const results = await Promise.all(Array.from({ length: pending.size }, () => query(FLUSH)))
    transactions += results.length
    for (const [row] of results) pending.delete(row.pid)
  }
  return transactions
}

// --- PostgreSQL tables in this library's schema ----------------------------

interface Durability {
  /** Commits of this pool do not wait for the WAL flush (postgres.js `connection` option). */
  synchronousCommitOff?: boolean
  /** The table skips the WAL altogether. */
  unlogged?: boolean
}

interface OwnTable {
  sql: Sql
  table: string
  measured: Pick<BenchStore, 'table' | 'applicationName' | 'statements' | 'writeStatements' | 'flushStats'>
  close: () => Promise<void>
}

// The floor's table is the plain design: pgxstore's (token, data, expiry),
// indexed on expiry for its sweep. This store's is its own schema.sql.
const PLAIN_TABLE = (table: string) => [
  `CREATE TABLE "${table}" (token TEXT PRIMARY KEY, data BYTEA NOT NULL, expiry TIMESTAMPTZ NOT NULL)`,
  `CREATE INDEX "${table}_expiry_idx" ON "${table}" (expiry)`,
]

async function openOwnTable(name: StoreName, url: string, durability: Durability = {}): Promise<OwnTable> {
  const connection = {
    // The -pg stores measure their pg.Pool; this pool only sets up and preloads.
    application_name: name.endsWith('-pg') ? `${applicationName(name)} setup` : applicationName(name),
    ...(durability.synchronousCommitOff ? { synchronous_commit: 'off' } : {}),
  }
  const { count, ...counted } = statementCounter()
  const debug = (_connection: number, query: string) => count(query)
  const sql = postgres(url, { ...quiet, max: POOL_SIZE, connection, debug })
  const table = `bench_${name.replace('-', '_')}_${tableSuffix}`
  if (name === 'floor') for (const ddl of PLAIN_TABLE(table)) await sql.unsafe(ddl)
  else await new PostgresStore(sql, { table, cleanupInterval: 0 }).migrate()
  if (durability.unlogged) await sql.unsafe(`ALTER TABLE "${table}" SET UNLOGGED`)
  await checkDurability(sql, table, durability)
  const close = async () => {
    await sql.unsafe(`DROP TABLE IF EXISTS "${table}"`)
    await sql.end({ timeout: 5 })
  }
  const measured = {
    table, applicationName: applicationName(name), ...counted,
    flushStats: () => flushBackends((text) => sql.unsafe<{ pid: number }[]>(text)),
  }
  return { sql, table, measured, close }
}

// A knob that silently did not apply would make the relaxed rows measure the durable store.
async function checkDurability(sql: Sql, table: string, durability: Durability): Promise<void> {
  const [row] = await sql.unsafe<{ sync: string; persistence: string }[]>(
    `SELECT current_setting('synchronous_commit') AS sync, relpersistence AS persistence FROM pg_class WHERE oid = $1::regclass`,
    [`"${table}"`],
  )
  const expected = { sync: durability.synchronousCommitOff ? 'off' : 'on', persistence: durability.unlogged ? 'u' : 'p' }
  if (row.sync !== expected.sync || row.persistence !== expected.persistence) {
    throw new Error(`table ${table}: synchronous_commit=${row.sync}, relpersistence=${row.persistence}; expected ${JSON.stringify(expected)}`)
  }
}

// Rows as the store writes them: this store's table also gets sweep_at (at the
// expiry, as a commit sets it), the floor's plain table has no such column.
export function bulkInsert(sql: Sql, table: string, layout: 'store' | 'plain' = 'store'): BenchStore['preload'] {
  const [columns, values, sweepAt] = layout === 'store'
    ? ['token, data, expiry, sweep_at', 'u.token, u.data, u.expiry, u.expiry', ', sweep_at = EXCLUDED.sweep_at']
    : ['token, data, expiry', 'u.token, u.data, u.expiry', '']
  return async (sessions) => {
    for (let i = 0; i < sessions.length; i += 2000) {
      const chunk = sessions.slice(i, i + 2000)
      await sql.unsafe(
        `INSERT INTO "${table}" (${columns}) SELECT ${values} ` +
          'FROM unnest($1::text[], $2::bytea[], $3::timestamptz[]) AS u(token, data, expiry) ' +
          `ON CONFLICT (token) DO UPDATE SET data = EXCLUDED.data, expiry = EXCLUDED.expiry${sweepAt}`,
        [
          textArray(chunk.map(([sid]) => sid)),
          textArray(chunk.map(([, s]) => '\\x' + Buffer.from(JSON.stringify(s)).toString('hex'))),
          textArray(chunk.map(([, s]) => s.cookie.expires.toISOString())),
        ],
      )
    }
  }
}

const encode = (s: BenchSession) => Buffer.from(JSON.stringify(s))
const expiryOf = (s: BenchSession) => new Date(s.cookie.expires)

/** The same statements as the core, hand-written, with nothing around them but JSON. */
async function openFloor(url: string): Promise<BenchStore> {
  const { sql, table, measured, close } = await openOwnTable('floor', url)
  const run = (query: string, params: any[]) => sql.unsafe(query, params, { prepare: true })
  const q = {
    find: `SELECT data, expiry FROM "${table}" WHERE token = $1 AND expiry > now()`,
    commit:
      `INSERT INTO "${table}" (token, data, expiry) VALUES ($1, $2, $3) ` +
      'ON CONFLICT (token) DO UPDATE SET data = EXCLUDED.data, expiry = EXCLUDED.expiry',
    touch: `UPDATE "${table}" SET expiry = $1 WHERE token = $2 AND expiry > now()`,
    delete: `DELETE FROM "${table}" WHERE token = $1`,
  }
  return {
    name: 'floor',
    get: async (sid) => {
      const rows = await run(q.find, [sid])
      return rows.length > 0 ? JSON.parse(rows[0].data.toString()) : null
    },
    set: async (sid, s) => void (await run(q.commit, [sid, encode(s), expiryOf(s)])),
    touch: async (sid, s) => void (await run(q.touch, [expiryOf(s), sid])),
    destroy: async (sid) => void (await run(q.delete, [sid])),
    preload: bulkInsert(sql, table, 'plain'),
    close,
    ...measured,
  }
}

type ThisStore = 'core' | 'adapter' | 'core-pg' | 'adapter-pg' | 'single' | 'sync-off' | 'unlogged' | 'merge-off'

async function openThisStore(name: ThisStore, url: string): Promise<BenchStore> {
  const { sql, table, measured: ownTable, close } = await openOwnTable(name, url, {
    synchronousCommitOff: name === 'sync-off',
    unlogged: name === 'unlogged',
  })
  // The -pg stores run on a pg.Pool of the same size, as connect-pg-simple does;
  // their statements are counted there (the postgres.js pool only sets up and preloads).
  const pool = name.endsWith('-pg') ? new pg.Pool({ connectionString: url, max: POOL_SIZE, application_name: applicationName(name) }) : null
  // Their statistics are flushed through that pool too: its backends are the
  // ones carrying the name (the setup pool has a name of its own).
  const flushPool = pool && { flushStats: () => flushBackends(async (text) => (await pool.query<{ pid: number }>(text)).rows) }
  const measured = pool ? { ...ownTable, ...countingPool(pool), ...flushPool } : ownTable
  // Every option at its default but the table and the timer, except coalesce for 'single'.
  const core = new PostgresStore(pool ?? sql, { table, cleanupInterval: 0, coalesce: name !== 'single' })
  const preload = bulkInsert(sql, table)
  const closeAll = async () => {
    core.stopCleanup()
    await pool?.end()
    await close()
  }
  if (name !== 'core' && name !== 'core-pg') {
    return { ...expressStore(name, new PostgresSessionStore({ store: core, merge: name !== 'merge-off' }), closeAll, preload), ...measured }
  }
  // The core alone: bytes in and out, with the JSON step every store needs.
  return {
    name,
    get: async (sid) => {
      const entry = await core.findEntry(sid)
      return entry === null ? null : JSON.parse(entry.data.toString())
    },
    set: (sid, s) => core.commit(sid, encode(s), expiryOf(s)),
    touch: async (sid, s) => void (await core.touch(sid, expiryOf(s))),
    destroy: (sid) => core.delete(sid),
    preload,
    close: closeAll,
    ...measured,
  }
}
