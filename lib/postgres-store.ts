// PostgresStore: scs's pgxstore on postgres.js or node-postgres. A token ->
// bytes store with an expiry per token, compared with the database clock, and
// a background sweep of expired rows. All of the library's SQL lives in this
// file; it reaches the database through a driver (lib/drivers/).
import { CleanupTimer, logError, reportSafely } from './cleanup.js'
import {
  byteaArray, commitCoalescer, conditionalCommitCoalescer, deleteCoalescer, findCoalescer, textArray, touchCoalescer, type RunQuery,
} from './coalescer.js'
import { driverFor, type Client } from './drivers/detect.js'
import type { Driver, Queryable } from './drivers/driver.js'
import { DecryptionError, Encryption } from './encryption.js'
import { deadlineAfter, withTimeout } from './query-timeout.js'
import { withRetries } from './retry.js'
import { SCHEMA_VERSION, schemaFor, versionOf } from './schema.js'
import { parseTableName, type TableName } from './table.js'
import { hashToken } from './tokens.js'
import { assertData, assertExpiry, assertToken, assertVersion, typeOf } from './validate.js'

export interface PostgresStoreOptions {
  /** Table name, `table` or `schema.table`; always quoted. Default `sessions`. */
  table?: string
  /** Milliseconds between sweeps of expired rows; 0 disables. Default 5 minutes. */
  cleanupInterval?: number
  /** Receives background errors and rows that do not decrypt. Default: one line on stderr. */
  onError?: (error: Error) => void
  /** delete() leaves a tombstone, so a late commit or touch cannot bring the token back. Default true. */
  tombstones?: boolean
  /** Milliseconds after its creation that a token expires, whatever its commits and touches say. Default none. */
  absoluteTimeout?: number
  /** Store SHA-256(token) instead of the token. Default false. */
  hashTokens?: boolean
  /** Encrypt data with AES-256-GCM: a secret, or a list whose first entry encrypts. Default none. */
  secret?: string | readonly string[]
  /** Milliseconds a call waits for the database before it fails with a QueryTimeoutError; 0 waits forever. Default 10 s. */
  queryTimeout?: number
  /** Send concurrent finds, commits, touches and deletes as one statement per kind while one is in flight. Default true. */
  coalesce?: boolean
  /**
   * Prepare each statement once per connection. Set false behind PgBouncer in
   * transaction mode (before 1.21), which hands each transaction to any server
   * connection. A postgres.js instance created with prepare: false never prepares. Default true.
   */
  prepare?: boolean
  /**
   * postgres.js: never use a pooled connection that is on a standby (checked
   * after a fault or a reconnection). Default: on when the instance names several hosts or a target_session_attrs.
   */
  primaryOnly?: boolean
}

/** A row as find and listByOwner see it. */
export interface Entry {
  data: Buffer
  expiry: Date
}

/** A row as findEntry sees it: with the version of its data, for commitIfVersion. */
export interface VersionedEntry extends Entry {
  /** Counts the writes of this token's data; opaque (a decimal string). */
  version: string
}

/**
 * What commitIfVersion did: wrote (and the row's new version); found the
 * token destroyed (nothing written); or found another version stored (nothing
 * written) and hands back that row, or null when there is none to merge with
 * (gone, expired or undecryptable: an unconditional commit then starts it anew).
 */
export type ConditionalCommit =
  | { outcome: 'written'; version: string }
  | { outcome: 'destroyed' }
  | { outcome: 'conflict'; current: VersionedEntry | null }

/** One of an owner's active sessions, for a "your devices" page. */
export interface OwnedEntry extends Entry {
  /** The stored key: the token, or its SHA-256 hex with hashTokens. */
  token: string
  created: Date
}

export interface SessionStats {
  /** Rows whose expiry is still ahead (tombstones not counted). */
  active: number
  /** Rows past their expiry, waiting for the sweep. */
  expired: number
}

/** What importConnectPgSimple did. */
export interface ImportResult {
  /** Sessions written into this store's table. */
  copied: number
  /** Active sessions left alone: this table already holds a destroyed or a later-expiring row for them, or the id cannot be a token. */
  skipped: number
}

export const DEFAULT_CLEANUP_INTERVAL = 5 * 60 * 1000
export const DEFAULT_QUERY_TIMEOUT = 10_000

// Rows removed per DELETE statement during a sweep: small enough that no
// statement holds locks for long, large enough that a backlog drains quickly.
const CLEANUP_BATCH_SIZE = 5000

// A write batch spends most of its time waiting for its commit's WAL flush:
// with two in flight, one executes while the other flushes (bench/: about
// 1.2x the writes per second of one at 16 callers). Reads have no flush to
// overlap and batch best one at a time.
const WRITE_BATCHES_IN_FLIGHT = 2

// setTimeout fires at once for delays beyond a signed 32-bit integer.
const MAX_TIMER_DELAY = 2 ** 31 - 1

type KeyRow = { token: string; data: Buffer; expiry: Date }
type CountRow = { count: number | string | bigint }

export class PostgresStore {
  readonly table: string
  private readonly driver: Driver
  private readonly tableName: TableName
  private readonly queries: ReturnType<typeof buildQueries>
  private readonly cleanup: CleanupTimer
  private readonly onError: (error: Error) => void
  private readonly absoluteTimeout: number | null
  private readonly hashTokens: boolean
  private readonly encryption: Encryption | null
  private readonly queryTimeout: number
  // While a statement of a kind is in flight, further calls of that kind wait
  // and then go out together as one statement (lib/coalescer.ts).
  private readonly finds
  private readonly commits
  private readonly conditionalCommits
  private readonly touches
  private readonly deletes

  /** client: a postgres.js instance (`postgres(url)`) or a node-postgres pool (`new pg.Pool()`), which the store never ends. */
  constructor(client: Client, options: PostgresStoreOptions = {}) {
    if (options === null || typeof options !== 'object') {
      throw new TypeError(`options must be an object, got ${typeOf(options)}`)
    }
    const {
      table = 'sessions', cleanupInterval = DEFAULT_CLEANUP_INTERVAL, onError = logError,
      tombstones = true, absoluteTimeout, hashTokens = false, secret,
      queryTimeout = DEFAULT_QUERY_TIMEOUT, coalesce = true, prepare = true, primaryOnly,
    } = options
    checkMilliseconds('cleanupInterval', cleanupInterval, 0, MAX_TIMER_DELAY)
    checkMilliseconds('queryTimeout', queryTimeout, 0, MAX_TIMER_DELAY)
    if (absoluteTimeout !== undefined) checkMilliseconds('absoluteTimeout', absoluteTimeout, 1, Number.MAX_SAFE_INTEGER)
    if (typeof onError !== 'function') throw new TypeError(`onError must be a function, got ${typeOf(onError)}`)
    checkBoolean('tombstones', tombstones)
    checkBoolean('hashTokens', hashTokens)
    checkBoolean('coalesce', coalesce)
    checkBoolean('prepare', prepare)
    if (primaryOnly !== undefined) checkBoolean('primaryOnly', primaryOnly)

    this.driver = driverFor(client, { prepare, queryTimeout, primaryOnly })
    this.tableName = parseTableName(table)
    this.table = this.tableName.name
    this.queries = buildQueries(this.tableName.quoted, tombstones)
    this.onError = (error) => reportSafely(onError, error)
    this.absoluteTimeout = absoluteTimeout ?? null
    this.hashTokens = hashTokens
    this.encryption = secret === undefined ? null : new Encryption(secret)
    this.queryTimeout = queryTimeout
    const run: RunQuery = (query, params) => this.run(query, params)
    const reads = { maxInFlight: coalesce ? 1 : Infinity }
    const writes = { maxInFlight: coalesce ? WRITE_BATCHES_IN_FLIGHT : Infinity }
    this.finds = findCoalescer(run, this.queries.find, this.queries.findMany, reads)
    this.commits = commitCoalescer(run, this.queries.commit, this.queries.commitMany, writes)
    this.conditionalCommits = conditionalCommitCoalescer(run, this.queries, writes)
    this.touches = touchCoalescer(run, this.queries.touch, this.queries.touchMany, writes)
    this.deletes = deleteCoalescer(run, this.queries.delete, this.queries.deleteMany, writes)
    this.cleanup = new CleanupTimer(cleanupInterval, () => this.deleteExpired(), this.onError)
  }

  /**
   * Resolves to the data committed under token, or null when the token is
   * missing, expired, destroyed or does not decrypt. A token that is not a non-empty string is a TypeError.
   */
  async find(token: string): Promise<Buffer | null> {
    return (await this.findEntry(token))?.data ?? null
  }

  /**
   * Resolves to the data and expiry committed under token, or null when find
   * would. A token that is not a non-empty string is a TypeError.
   */
  async findEntry(token: string): Promise<VersionedEntry | null> {
    const key = this.keyOf(token)
    const [row] = await this.withDeadline(this.finds.run([key]))
    if (row === undefined) return null
    const data = this.open(row.data, key)
    return data === null ? null : { data, expiry: row.expiry, version: row.version }
  }

  /**
   * Stores data under token until expiry (capped by absoluteTimeout), replacing
   * data, expiry and owner when the token is active, in one statement; a destroyed token stays destroyed. Bad arguments throw before anything is written.
   */
  async commit(token: string, data: Uint8Array, expiry: Date, owner?: string | null): Promise<void> {
    const key = this.keyOf(token)
    assertData(data)
    assertExpiry(expiry)
    if (owner != null) assertToken(owner, 'owner')
    await this.withDeadline(this.commits.run([key, this.seal(data, key), expiry, owner ?? null, this.absoluteTimeout]))
  }

  /**
   * commit, but only while the stored version is still `version` (as findEntry
   * gave it), checked in the same statement; a token that is missing or expired is written whatever its version. Bad arguments throw before anything is written.
   */
  async commitIfVersion(
    token: string, data: Uint8Array, expiry: Date, owner: string | null | undefined, version: string,
  ): Promise<ConditionalCommit> {
    const key = this.keyOf(token)
    assertData(data)
    assertExpiry(expiry)
    if (owner != null) assertToken(owner, 'owner')
    assertVersion(version)
    const result = await this.withDeadline(
      this.conditionalCommits.run([key, this.seal(data, key), expiry, owner ?? null, this.absoluteTimeout, version]),
    )
    if ('version' in result) return { outcome: 'written', version: result.version }
    const row = result.current
    if (row?.destroyed) return { outcome: 'destroyed' }
    const stored = row?.active ? this.open(row.data, key) : null
    return { outcome: 'conflict', current: stored === null ? null : { data: stored, expiry: row!.expiry, version: row!.version } }
  }

  /**
   * Moves an active token's expiry (capped by absoluteTimeout) without
   * rewriting its data, and resolves to whether a row changed: false when the token is missing, expired or destroyed.
   */
  async touch(token: string, expiry: Date): Promise<boolean> {
    const key = this.keyOf(token)
    assertExpiry(expiry)
    const { count } = await this.withDeadline(this.touches.run([expiry, key, this.absoluteTimeout]))
    return count > 0
  }

  /**
   * Ends token: with tombstones (the default) its data is wiped and no later
   * commit or touch revives it; without, the row is removed. Resolves the same whether or not the token existed.
   */
  async delete(token: string): Promise<void> {
    const key = this.keyOf(token)
    await this.withDeadline(this.deletes.run([key]))
  }

  /**
   * Resolves to every active session as stored key -> data (the key is the
   * token, or its SHA-256 with hashTokens). Expired, destroyed and undecryptable rows are left out; none gives an empty Map.
   */
  async all(): Promise<Map<string, Buffer>> {
    const entries = await this.allEntries()
    return new Map([...entries].map(([key, entry]) => [key, entry.data]))
  }

  /**
   * Resolves to every active session as stored key -> { data, expiry }, with
   * the rows all() leaves out left out; none gives an empty Map.
   */
  async allEntries(): Promise<Map<string, Entry>> {
    const rows = this.readable(await this.run<KeyRow>(this.queries.all, []))
    return new Map([...rows].map((row) => [row.token, { data: row.data, expiry: row.expiry }]))
  }

  /**
   * Yields every active session as [stored key, data], fetching batchSize rows
   * at a time through a cursor, so memory stays flat however large the table; rows are skipped as all() skips them.
   */
  async *iterate(batchSize = 1000): AsyncGenerator<[string, Buffer]> {
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError('batchSize must be a whole number from 1')
    const cursor = this.driver.cursor<KeyRow>(this.queries.all, [], batchSize)
    for await (const rows of cursor) {
      for (const row of this.readable(rows)) yield [row.token, row.data]
    }
  }

  /**
   * Resolves to the number of active sessions. Expired rows the sweep has not
   * removed yet and tombstones are not counted; an empty table gives 0.
   */
  async count(): Promise<number> {
    const [row] = await this.run<CountRow>(this.queries.count, [])
    return Number(row.count)
  }

  /**
   * Ends every active session committed with this owner, as delete does, and
   * resolves to how many. An owner with no sessions gives 0; a non-string owner is a TypeError.
   */
  async destroyByOwner(owner: string): Promise<number> {
    assertToken(owner, 'owner')
    const result = await this.run(this.queries.destroyByOwner, [owner])
    return result.count
  }

  /**
   * Resolves to this owner's active sessions, oldest first, with the stored key
   * (a hash with hashTokens), expiry, creation time and data. An owner with none gives [].
   */
  async listByOwner(owner: string): Promise<OwnedEntry[]> {
    assertToken(owner, 'owner')
    return [...this.readable(await this.run<OwnedEntry>(this.queries.listByOwner, [owner]))]
  }

  /**
   * Deletes every row of the table, active, expired or tombstone, and resolves
   * to how many went. An empty table gives 0; the table itself stays.
   */
  async clear(): Promise<number> {
    const result = await this.run(this.queries.clear, [])
    return result.count
  }

  /**
   * Counts the table's rows: active ones, and expired ones the sweep has not
   * removed yet (by the database clock). A missing table rejects with PostgreSQL's error.
   */
  async stats(): Promise<SessionStats> {
    const [row] = await this.run<{ active: string; expired: string }>(this.queries.stats, [])
    return { active: Number(row.active), expired: Number(row.expired) }
  }

  /**
   * Deletes expired rows in batches (re-filing rows that came due but were
   * extended) and resolves to how many went; 0 when another store is sweeping this table right now. This is what the cleanup timer runs; call it yourself from cron when timers are off.
   */
  async deleteExpired(): Promise<number> {
    let total = 0
    for (;;) {
      const batch = await this.withDeadline(this.driver.transaction((tx) => this.sweepBatch(tx)))
      if (batch === null) return total
      total += batch.removed
      if (batch.removed < CLEANUP_BATCH_SIZE && batch.refiled < CLEANUP_BATCH_SIZE) return total
    }
  }

  // One batch in its own short transaction, under a transaction-scoped
  // advisory lock: stores sharing the table take turns instead of deleting the
  // same rows at once, and a lock can never outlive its transaction (or leak
  // to another client through a pooler, as session locks do behind PgBouncer).
  private async sweepBatch(tx: Queryable): Promise<{ removed: number; refiled: number } | null> {
    const [{ locked }] = await tx.query<{ locked: boolean }>(this.queries.tryCleanupLock, [this.lockKey('cleanup')])
    if (!locked) return null
    const removed = await tx.query(this.queries.deleteExpiredBatch, [CLEANUP_BATCH_SIZE])
    const refiled = await tx.query(this.queries.refileBatch, [CLEANUP_BATCH_SIZE])
    return { removed: removed.count, refiled: refiled.count }
  }

  /**
   * Copies the active sessions of a connect-pg-simple table (sid, sess, expire)
   * into this store's table, hashed and encrypted as this store writes, batchSize at a time. A destroyed row, or one that expires later, is
   * never overwritten, so running it again copies nothing twice; a missing source table rejects with PostgreSQL's error.
   */
  async importConnectPgSimple(sourceTable = 'session', batchSize = 1000): Promise<ImportResult> {
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError('batchSize must be a whole number from 1')
    const readPage = connectPgSimplePage(parseTableName(sourceTable).quoted)
    const result: ImportResult = { copied: 0, skipped: 0 }
    // Pages in sid order, each its own statement: no transaction or cursor is
    // held open, so a pool of one connection is enough.
    for (let after = ''; ;) {
      const rows = await this.run<{ sid: string; sess: string; expire: Date }>(readPage, [after, batchSize])
      const sessions = rows.flatMap(({ sid, sess, expire }) => {
        const key = this.validKeyOf(sid)
        return key === null ? [] : [{ key, data: this.seal(Buffer.from(sess, 'utf8'), key), expire }]
      })
      const copied = sessions.length === 0 ? [] : await this.run<{ token: string }>(this.queries.importMany, [
        textArray(sessions.map(({ key }) => key)),
        byteaArray(sessions.map(({ data }) => data)),
        textArray(sessions.map(({ expire }) => expire.toISOString())),
        this.absoluteTimeout,
      ])
      result.copied += copied.length
      result.skipped += rows.length - copied.length
      if (rows.length < batchSize) return result
      after = rows[rows.length - 1].sid
    }
  }

  /**
   * Resolves to the schema version of the table: 0 when it does not exist, 1
   * for pgxstore's table, 4 for the current one (SCHEMA_VERSION).
   */
  async schemaVersion(): Promise<number> {
    const [row] = await this.run<{ exists: boolean; comment: string | null }>(this.queries.schemaVersion, [
      this.tableName.quoted,
    ])
    return row.exists ? versionOf(row.comment) : 0
  }

  /**
   * Creates the table from schema.sql, or upgrades an older one in place
   * without losing a row. Safe at every start-up, and from several processes at once.
   */
  async migrate(): Promise<void> {
    // Checked first: the DDL locks the table, which a busy table should not pay at every start.
    if ((await this.schemaVersion()) >= SCHEMA_VERSION) return
    await this.driver.transaction(async (tx) => {
      // Two processes racing through CREATE TABLE IF NOT EXISTS can both miss the
      // table and one then fails on a catalog unique index: take turns instead.
      await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [this.lockKey('migrate')])
      // IF NOT EXISTS reports every object it skips as a NOTICE, which
      // postgres.js prints by default: an upgrade is not worth that noise.
      await tx.query('SET LOCAL client_min_messages = warning')
      await tx.query(schemaFor(this.tableName))
    })
  }

  /** Stops the cleanup timer. Calling it again does nothing. */
  stopCleanup(): void {
    this.cleanup.stop()
  }

  private lockKey(purpose: 'cleanup' | 'migrate'): string {
    return `express-session-postgres:${purpose}:${this.table}`
  }

  /** The key a token is stored under, after checking it. */
  private keyOf(token: string): string {
    assertToken(token)
    return this.hashTokens ? hashToken(token) : token
  }

  /** keyOf, or null for a token this store cannot hold. */
  private validKeyOf(token: string): string | null {
    try {
      return this.keyOf(token)
    } catch {
      return null
    }
  }

  private seal(data: Uint8Array, key: string): Buffer {
    return this.encryption === null ? toBuffer(data) : this.encryption.seal(data, key)
  }

  /** Rows with their data decrypted; a row that does not decrypt is left out (and reported). */
  private *readable<Row extends { token: string; data: Buffer }>(rows: Iterable<Row>): Generator<Row> {
    for (const row of rows) {
      const data = this.open(row.data, row.token)
      if (data !== null) yield { ...row, data }
    }
  }

  // A row that does not decrypt reads as missing: a rotated-out secret or a
  // tampered row must not end the request. It stays in the table, so a
  // configuration mistake can be fixed without losing sessions.
  private open(data: Buffer, key: string): Buffer | null {
    if (this.encryption === null) return data
    try {
      return this.encryption.open(data, key)
    } catch (error) {
      if (!(error instanceof DecryptionError)) throw error
      this.onError(error)
      return null
    }
  }

  // A call waiting for its batch is bounded too, not only the statement: the
  // caller hears about an outage within queryTimeout of calling. (A write that
  // timed out may still be applied when the database answers.)
  private withDeadline<T>(call: PromiseLike<T>): Promise<T> {
    return withTimeout(call, this.queryTimeout)
  }

  // Prepared once per connection by the driver (unless prepare is false, as
  // behind PgBouncer), then one round trip per call. Retried (lib/retry.ts)
  // when it lost a deadlock (batches lock their rows in token order, but an
  // UPDATE ... FROM or destroyByOwner may still lock two rows in the other
  // order), or when its server was read-only, shutting down or gone, as in a
  // failover: until it succeeds or queryTimeout is up. The driver moves off
  // connections on a standby (lib/drivers/). Every statement in buildQueries
  // is safe to send twice.
  private async run<T extends object = Record<string, unknown>>(query: string, params: unknown[]) {
    const deadline = deadlineAfter(this.queryTimeout)
    return withRetries(() => {
      const left = deadline === Infinity ? 0 : Math.max(1, deadline - Date.now())
      return withTimeout(this.driver.query<T>(query, params), left)
    }, { deadline })
  }
}

// Every statement of the library. `$n * interval '1 millisecond'` is NULL when
// no absoluteTimeout is set, and least() ignores NULLs: one statement serves both.
// find, commit, touch and delete each come twice: for one row, and for a batch
// of rows (`...Many`, arrays in, for the coalescers), with the same rules.
// Each may be sent twice (run() retries a statement whose server failed or
// went read-only, and a first attempt may have committed unseen): the
// comment on each says why a second send changes nothing.
export function buildQueries(table: string, tombstones: boolean) {
  const active = 'expiry > now() AND NOT destroyed'
  const absoluteLimit = (created: string, param: string) => `${created} + ${param}::float8 * interval '1 millisecond'`
  // An expired row committed again starts a new life, with a new creation time.
  const created = 'CASE WHEN s.expiry > now() THEN s.created ELSE now() END'
  // The sweep finds rows through an index on sweep_at (schema.sql, version 4),
  // kept at or before the expiry: a write that moves the expiry later leaves
  // it as it was, so no indexed column changes and PostgreSQL can update the
  // row in place (a HOT update). Only an earlier expiry moves it; the sweep
  // re-files a row that came due but lives on (refileBatch).
  const setExpiry = (expiry: string, row = 's.') => `expiry = ${expiry}, sweep_at = least(${row}sweep_at, ${expiry})`
  const upsert =
    'ON CONFLICT (token) DO UPDATE SET data = EXCLUDED.data, owner = EXCLUDED.owner, version = s.version + 1, ' +
    `created = ${created}, ${setExpiry(`least(EXCLUDED.expiry, ${absoluteLimit(created, '$5')})`)} ` +
    // The conditional upsert: a tombstone is never overwritten.
    'WHERE NOT s.destroyed'
  // commitIfVersion: the version read travels in the inserted row (a token
  // that is gone is written back with it); an active row is replaced only while it still has that version.
  const ifVersion = `${upsert} AND (s.version = EXCLUDED.version OR s.expiry <= now()) RETURNING s.token, s.version::text AS version`
  const current = `SELECT token, data, expiry, destroyed, ${active} AS active, version::text AS version FROM ${table}`
  // What a destroyed row becomes: no data, no owner, kept for as long as the
  // session would have lived and at least an hour (longer than any request
  // that read it before it was destroyed). Its expiry only moves later, so
  // sweep_at can stay: the tombstone is a HOT update too.
  const tombstoneExpiry = "now() + interval '1 hour'"
  const tombstone = (expiry: string) =>
    `data = '', owner = NULL, destroyed = true, expiry = greatest(${expiry}, ${tombstoneExpiry})`
  const tombstoneUpsert = `ON CONFLICT (token) DO UPDATE SET ${tombstone('s.expiry')}`
  return {
    // Reads (find, findMany, current, currentMany, listByOwner, all, count, stats, schemaVersion): change nothing.
    find: `SELECT data, expiry, version::text AS version FROM ${table} WHERE token = $1 AND ${active}`,
    findMany: `SELECT token, data, expiry, version::text AS version FROM ${table} WHERE token = ANY($1::text[]) AND ${active}`,
    // Twice: the same upsert with the same values leaves the same row (a
    // second send after a delete meets the tombstone and writes nothing).
    commit:
      `INSERT INTO ${table} AS s (token, data, expiry, sweep_at, owner) ` +
      `VALUES ($1, $2, ${twice(`least($3::timestamptz, ${absoluteLimit('now()', '$5')})`)}, $4) ${upsert}`,
    // One statement cannot change the same row twice: the coalescers dedupe first.
    commitMany:
      `INSERT INTO ${table} AS s (token, data, expiry, sweep_at, owner) ` +
      `SELECT v.token, v.data, ${twice(`least(v.expiry, ${absoluteLimit('now()', '$5')})`)}, v.owner ` +
      `FROM unnest($1::text[], $2::bytea[], $3::timestamptz[], $4::text[]) AS v(token, data, expiry, owner) ${upsert}`,
    // Twice: a second send after the first was applied finds the version it
    // bumped and reports a conflict with a row holding our own data; the
    // adapter's merge of that row with ours is ours, so nothing is lost or doubled.
    commitIfVersion:
      `INSERT INTO ${table} AS s (token, data, expiry, sweep_at, owner, version) ` +
      `VALUES ($1, $2, ${twice(`least($3::timestamptz, ${absoluteLimit('now()', '$5')})`)}, $4, $6::bigint) ${ifVersion}`,
    commitIfVersionMany:
      `INSERT INTO ${table} AS s (token, data, expiry, sweep_at, owner, version) ` +
      `SELECT v.token, v.data, ${twice(`least(v.expiry, ${absoluteLimit('now()', '$5')})`)}, v.owner, v.version FROM ` +
      `unnest($1::text[], $2::bytea[], $3::timestamptz[], $4::text[], $6::bigint[]) AS v(token, data, expiry, owner, version) ${ifVersion}`,
    // The row a conditional commit lost to, whatever its state.
    current: `${current} WHERE token = $1`,
    currentMany: `${current} WHERE token = ANY($1::text[])`,
    // Only the expiry: a touch must not rewrite (and so cannot clobber) the data.
    // Twice: sets the same expiry again (the caller may then hear 1 for a row the first send moved).
    touch:
      `UPDATE ${table} SET ${setExpiry(`least($1::timestamptz, ${absoluteLimit('created', '$3')})`, '')} ` +
      `WHERE token = $2 AND ${active}`,
    touchMany:
      `UPDATE ${table} AS s SET ${setExpiry(`least(v.expiry, ${absoluteLimit('s.created', '$3')})`)} ` +
      'FROM unnest($1::text[], $2::timestamptz[]) AS v(token, expiry) ' +
      'WHERE s.token = v.token AND s.expiry > now() AND NOT s.destroyed RETURNING s.token',
    // Twice: a tombstone stays a tombstone (its expiry only moves later); a DELETE finds nothing.
    delete: tombstones
      ? `INSERT INTO ${table} AS s (token, data, expiry, sweep_at, destroyed) VALUES ($1, '', ${twice(tombstoneExpiry)}, true) ${tombstoneUpsert}`
      : `DELETE FROM ${table} WHERE token = $1`,
    deleteMany: tombstones
      ? `INSERT INTO ${table} AS s (token, data, expiry, sweep_at, destroyed) ` +
        `SELECT v.token, '', ${twice(tombstoneExpiry)}, true FROM unnest($1::text[]) AS v(token) ${tombstoneUpsert}`
      : `DELETE FROM ${table} WHERE token = ANY($1::text[])`,
    // Twice: the second send finds no active row and changes nothing (its count then says 0).
    destroyByOwner: tombstones
      ? `UPDATE ${table} SET ${tombstone('expiry')} WHERE owner = $1 AND ${active}`
      : `DELETE FROM ${table} WHERE owner = $1 AND ${active}`,
    listByOwner:
      `SELECT token, data, expiry, created FROM ${table} WHERE owner = $1 AND ${active} ORDER BY created, token`,
    all: `SELECT token, data, expiry FROM ${table} WHERE ${active}`,
    count: `SELECT count(*) AS count FROM ${table} WHERE ${active}`,
    // Twice: the table is empty either way (the count is the second send's).
    clear: `DELETE FROM ${table}`,
    stats:
      `SELECT count(*) FILTER (WHERE ${active}) AS active, ` +
      `count(*) FILTER (WHERE expiry <= now()) AS expired FROM ${table}`,
    tryCleanupLock: 'SELECT pg_try_advisory_xact_lock(hashtext($1)) AS locked',
    // The sweep, one batch of each in a transaction: due rows (sweep_at passed)
    // that expired are deleted; due rows that live on are re-filed under their
    // expiry, a non-HOT update at most once per extension past sweep_at.
    // SKIP LOCKED: rows a request is updating right now wait for the next sweep.
    // `= ANY(ARRAY(...))`, not `IN (...)`: on a large table the planner turned
    // IN into a scan of the whole table; this form reads only the due index entries.
    // Not retried (it runs in a transaction): a failed sweep is reported, and
    // the next one does what is left; deleting or re-filing a row twice is harmless.
    deleteExpiredBatch:
      `DELETE FROM ${table} WHERE token = ANY(ARRAY(` +
      `SELECT token FROM ${table} WHERE sweep_at <= now() AND expiry <= now() LIMIT $1 FOR UPDATE SKIP LOCKED))`,
    refileBatch:
      `UPDATE ${table} SET sweep_at = expiry WHERE token = ANY(ARRAY(` +
      `SELECT token FROM ${table} WHERE sweep_at <= now() AND expiry > now() LIMIT $1 FOR UPDATE SKIP LOCKED))`,
    schemaVersion:
      "SELECT to_regclass($1) IS NOT NULL AS exists, obj_description(to_regclass($1), 'pg_class') AS comment",
    // Sessions from another store: a new row, or one that replaces an expired
    // row or an active one that expires sooner. A tombstone is never
    // overwritten, and a row imported before keeps its expiry (capped from its
    // own creation time), so a second run changes nothing. Twice: the same (a
    // retried page counts the rows its first send copied as skipped).
    importMany:
      `INSERT INTO ${table} AS s (token, data, expiry, sweep_at) ` +
      `SELECT v.token, v.data, ${twice(`least(v.expiry, ${absoluteLimit('now()', '$4')})`)} ` +
      `FROM unnest($1::text[], $2::bytea[], $3::timestamptz[]) AS v(token, data, expiry) ` +
      `ON CONFLICT (token) DO UPDATE SET data = EXCLUDED.data, version = s.version + 1, created = ${created}, ` +
      `${setExpiry(`least(EXCLUDED.expiry, ${absoluteLimit(created, '$4')})`)} ` +
      `WHERE NOT s.destroyed AND s.expiry < least(EXCLUDED.expiry, ${absoluteLimit(created, '$4')}) RETURNING s.token`,
  }
}

// An inserted row's expiry and sweep_at: the same value, for both columns.
function twice(expiry: string): string {
  return `${expiry}, ${expiry}`
}

// One page of a connect-pg-simple table's active sessions, after the sid $1.
// Its expire column is a timestamp without time zone, which connect-pg-simple
// itself compares as a timestamptz in the session's time zone: so does this.
function connectPgSimplePage(source: string): string {
  return (
    `SELECT sid, sess::text AS sess, expire::timestamptz AS expire FROM ${source} ` +
    'WHERE sid > $1 AND expire::timestamptz > now() ORDER BY sid LIMIT $2'
  )
}

function checkMilliseconds(name: string, ms: unknown, min: number, max: number): void {
  if (typeof ms !== 'number') throw new TypeError(`${name} must be a number of milliseconds, got ${typeOf(ms)}`)
  if (!Number.isInteger(ms) || ms < min || ms > max) {
    throw new RangeError(`${name} must be a whole number of milliseconds from ${min} to ${max}`)
  }
}

function checkBoolean(name: string, value: unknown): void {
  if (typeof value !== 'boolean') throw new TypeError(`${name} must be a boolean, got ${typeOf(value)}`)
}

function toBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength)
}
