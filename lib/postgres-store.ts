// PostgresStore: scs's pgxstore on postgres.js. A token -> bytes store with
// an expiry per token, compared with the database clock, and a background
// sweep of expired rows. All of the library's SQL lives in this file.
import type { Sql } from 'postgres'
import { CleanupTimer, reportSafely } from './cleanup.js'
import { schemaFor } from './schema.js'
import { parseTableName, type TableName } from './table.js'
import { assertData, assertExpiry, assertToken, typeOf } from './validate.js'

export interface PostgresStoreOptions {
  /** Table name, `table` or `schema.table`; always quoted. Default `sessions`. */
  table?: string
  /** Milliseconds between sweeps of expired rows; 0 disables. Default 5 minutes. */
  cleanupInterval?: number
  /** Receives background errors (the cleanup sweep). Default: one line on stderr. */
  onError?: (error: Error) => void
}

export const DEFAULT_CLEANUP_INTERVAL = 5 * 60 * 1000

// Rows removed per DELETE statement during a sweep: small enough that no
// statement holds locks for long, large enough that a backlog drains quickly.
const CLEANUP_BATCH_SIZE = 5000

// setTimeout fires at once for delays beyond a signed 32-bit integer.
const MAX_TIMER_DELAY = 2 ** 31 - 1

type Row = { token: string; data: Buffer }
type EntryRow = { data: Buffer; expiry: Date }
type CountRow = { count: number | string | bigint }

export interface SessionStats {
  /** Rows whose expiry is still ahead. */
  active: number
  /** Rows past their expiry, waiting for the sweep. */
  expired: number
}

export class PostgresStore {
  readonly table: string
  private readonly sql: Sql
  private readonly tableName: TableName
  private readonly queries: ReturnType<typeof buildQueries>
  private readonly cleanup: CleanupTimer

  constructor(sql: Sql<any>, options: PostgresStoreOptions = {}) {
    if (typeof sql !== 'function' || typeof (sql as Partial<Sql>).unsafe !== 'function') {
      throw new TypeError('PostgresStore needs a postgres.js instance: new PostgresStore(postgres(url))')
    }
    if (options === null || typeof options !== 'object') {
      throw new TypeError(`options must be an object, got ${typeOf(options)}`)
    }
    const { table = 'sessions', cleanupInterval = DEFAULT_CLEANUP_INTERVAL, onError = logError } = options
    checkCleanupInterval(cleanupInterval)
    if (typeof onError !== 'function') throw new TypeError(`onError must be a function, got ${typeOf(onError)}`)

    this.sql = sql
    this.tableName = parseTableName(table)
    this.table = this.tableName.name
    this.queries = buildQueries(this.tableName.quoted)
    this.cleanup = new CleanupTimer(cleanupInterval, () => this.deleteExpired(), (error) => reportSafely(onError, error))
  }

  /**
   * Resolves to the data committed under token, or null when the token is
   * missing or its expiry has passed (by the database clock). A token that is not a non-empty string is a TypeError.
   */
  async find(token: string): Promise<Buffer | null> {
    assertToken(token)
    const rows = await this.run<Row>(this.queries.find, [token])
    return rows.length > 0 ? rows[0].data : null
  }

  /**
   * Resolves to the data and expiry committed under token, or null when the
   * token is missing or expired, as find does. A token that is not a non-empty string is a TypeError.
   */
  async findEntry(token: string): Promise<{ data: Buffer; expiry: Date } | null> {
    assertToken(token)
    const rows = await this.run<EntryRow>(this.queries.findEntry, [token])
    return rows.length > 0 ? { data: rows[0].data, expiry: rows[0].expiry } : null
  }

  /**
   * Stores data under token until expiry, replacing data and expiry when the
   * token exists, in one statement. Bad arguments throw before anything is written.
   */
  async commit(token: string, data: Uint8Array, expiry: Date): Promise<void> {
    assertToken(token)
    assertData(data)
    assertExpiry(expiry)
    await this.run(this.queries.commit, [token, toBuffer(data), expiry])
  }

  /**
   * Removes token's row. Resolves the same whether or not the token existed;
   * a token that is not a non-empty string is a TypeError.
   */
  async delete(token: string): Promise<void> {
    assertToken(token)
    await this.run(this.queries.delete, [token])
  }

  /**
   * Moves an active token's expiry without rewriting its data, and resolves to
   * whether a row changed: false when the token is missing or already expired.
   */
  async touch(token: string, expiry: Date): Promise<boolean> {
    assertToken(token)
    assertExpiry(expiry)
    const result = await this.run(this.queries.touch, [expiry, token])
    return result.count > 0
  }

  /**
   * Resolves to every active session as token -> data. Expired rows that the
   * sweep has not removed yet are left out; no sessions gives an empty Map.
   */
  async all(): Promise<Map<string, Buffer>> {
    const rows = await this.run<Row>(this.queries.all, [])
    return new Map(rows.map((row) => [row.token, row.data]))
  }

  /**
   * Resolves to the number of active sessions. Expired rows that the sweep
   * has not removed yet are not counted; an empty table gives 0.
   */
  async count(): Promise<number> {
    const rows = await this.run<CountRow>(this.queries.count, [])
    return Number(rows[0].count)
  }

  /**
   * Deletes every row of the table, active or expired, and resolves to how
   * many went. An empty table gives 0; the table itself stays.
   */
  async clear(): Promise<number> {
    const result = await this.run(this.queries.clear, [])
    return result.count
  }

  /**
   * Deletes expired rows in batches and resolves to how many went. This is
   * what the cleanup timer runs; call it yourself from cron when timers are off.
   */
  async deleteExpired(): Promise<number> {
    let total = 0
    for (;;) {
      const result = await this.run(this.queries.deleteExpiredBatch, [CLEANUP_BATCH_SIZE])
      total += result.count
      if (result.count < CLEANUP_BATCH_SIZE) return total
    }
  }

  /**
   * Creates the table and its index from schema.sql when they are missing.
   * Safe at every start-up, and from several processes at once.
   */
  async migrate(): Promise<void> {
    await this.sql.begin(async (tx) => {
      // Two processes racing through CREATE TABLE IF NOT EXISTS can both miss the
      // table and one then fails on a catalog unique index: take turns instead.
      await tx.unsafe('SELECT pg_advisory_xact_lock(hashtext($1))', [`express-session-postgres:${this.table}`])
      await tx.unsafe(schemaFor(this.tableName))
    })
  }

  /**
   * Counts the table's rows: active ones, and expired ones the sweep has not
   * removed yet (by the database clock). A missing table rejects with PostgreSQL's error.
   */
  async stats(): Promise<SessionStats> {
    const [row] = await this.run<{ active: string; expired: string }>(this.queries.stats, [])
    return { active: Number(row.active), expired: Number(row.expired) }
  }

  /** Stops the cleanup timer. Calling it again does nothing. */
  stopCleanup(): void {
    this.cleanup.stop()
  }

  // Prepared once per connection by postgres.js (unless the instance was created
  // with prepare: false, as behind PgBouncer), then one round trip per call.
  private run<T extends object = Record<string, unknown>>(query: string, params: unknown[]) {
    return this.sql.unsafe<T[]>(query, params as any[], { prepare: true })
  }
}

function buildQueries(table: string) {
  return {
    find: `SELECT data FROM ${table} WHERE token = $1 AND expiry > now()`,
    findEntry: `SELECT data, expiry FROM ${table} WHERE token = $1 AND expiry > now()`,
    commit:
      `INSERT INTO ${table} (token, data, expiry) VALUES ($1, $2, $3) ` +
      'ON CONFLICT (token) DO UPDATE SET data = EXCLUDED.data, expiry = EXCLUDED.expiry',
    delete: `DELETE FROM ${table} WHERE token = $1`,
    // Only the expiry: a touch must not rewrite (and so cannot clobber) the data.
    touch: `UPDATE ${table} SET expiry = $1 WHERE token = $2 AND expiry > now()`,
    all: `SELECT token, data FROM ${table} WHERE expiry > now()`,
    count: `SELECT count(*) AS count FROM ${table} WHERE expiry > now()`,
    clear: `DELETE FROM ${table}`,
    stats:
      `SELECT count(*) FILTER (WHERE expiry > now()) AS active, ` +
      `count(*) FILTER (WHERE expiry <= now()) AS expired FROM ${table}`,
    // SKIP LOCKED: two stores sweeping at once split the work instead of queueing.
    deleteExpiredBatch:
      `DELETE FROM ${table} WHERE token IN ` +
      `(SELECT token FROM ${table} WHERE expiry <= now() LIMIT $1 FOR UPDATE SKIP LOCKED)`,
  }
}

function checkCleanupInterval(ms: unknown): void {
  if (typeof ms !== 'number') throw new TypeError(`cleanupInterval must be a number of milliseconds, got ${typeOf(ms)}`)
  if (!Number.isInteger(ms) || ms < 0 || ms > MAX_TIMER_DELAY) {
    throw new RangeError(`cleanupInterval must be a whole number of milliseconds from 0 to ${MAX_TIMER_DELAY}`)
  }
}

function toBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength)
}

function logError(error: Error): void {
  const message = error.message.replace(/\s+/g, ' ')
  process.stderr.write(`express-session-postgres: background cleanup failed: ${message}\n`)
}
