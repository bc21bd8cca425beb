// Cleanup: what a sweep of a large backlog of expired rows costs the requests
// running beside it, and whether several stores sweeping one table take turns.
// PostgreSQL itself times every DELETE batch: a statement trigger logs each
// DELETE's start (statement_timestamp) and end (clock_timestamp, when the
// trigger fires after the last row), with the backend that ran it.
import postgres, { type Sql } from 'postgres'
import { PostgresStore } from '../lib/postgres-store.js'
import { PostgresSessionStore } from '../lib/session-store.js'
import { newSession, newSid } from './sessions.js'
import { median } from './stats.js'
import { measureUntil, type Measurement } from './store-bench.js'
import { bulkInsert, DATABASE_URL, POOL_SIZE } from './stores.js'

export interface CleanupOptions {
  expiredRows: number
  liveSessions: number
  concurrency: number
  idleMs: number
  /** Expired rows for the three-store part. */
  contendedRows: number
  contendingStores: number
  /** Bounds each sweep phase: the run moves on (and says so) if a sweep is still going. */
  maxSweepMs: number
  log: (line: string) => void
}

export interface CleanupResult {
  expiredRows: number
  liveSessions: number
  concurrency: number
  idle: Measurement
  duringSweep: Measurement
  sweep: SweepSummary
  contended: {
    stores: number
    expiredRows: number
    rowsDeleted: number
    batchesPerStore: number[]
    overlappingPairs: number
    liveSessionsLeft: number
    seconds: number
    finished: boolean
  }
}

interface SweepSummary {
  rowsDeleted: number
  seconds: number
  finished: boolean
  batches: number
  longestBatchMs: number
  medianBatchMs: number
}

interface Batch {
  pid: number
  startedMs: number
  endedMs: number
}

const quiet = { onnotice: () => {} }
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export async function runCleanupBench(options: CleanupOptions): Promise<CleanupResult> {
  const { expiredRows, liveSessions, concurrency, idleMs, log } = options
  const sql = postgres(DATABASE_URL, { ...quiet, max: POOL_SIZE })
  const table = `bench_cleanup_${process.pid}_${Date.now().toString(36)}`
  const core = new PostgresStore(sql, { table, cleanupInterval: 0 })
  const adapter = new PostgresSessionStore({ store: core })
  try {
    await core.migrate()
    await logBatches(sql, table)
    log(`cleanup: inserting ${expiredRows.toLocaleString('en-US')} expired rows and ${liveSessions.toLocaleString('en-US')} live sessions`)
    await insertExpired(sql, table, expiredRows)
    const sids = Array.from({ length: liveSessions }, newSid)
    await bulkInsert(sql, table)(sids.map((sid, i) => [sid, newSession(i)] as const))
    await sql.unsafe(`VACUUM ANALYZE "${table}"`) // as autovacuum would have left a table that old
    const get = () => adapter.get(sids[Math.floor(Math.random() * sids.length)])

    // Warm the pool and the statements, then the pair: idle right before, and during the sweep.
    await measureFor(get, concurrency, 500)
    const idle = await measureFor(get, concurrency, idleMs)
    log(`cleanup: idle get p99 ${idle.p99Ms.toFixed(2)} ms; sweeping`)
    const sweeping = timeSweep(() => core.deleteExpired(), options.maxSweepMs)
    let swept = false
    void sweeping.finally(() => (swept = true))
    const duringSweep = await measureUntil(() => swept, get, concurrency)
    const { rowsDeleted, seconds, finished } = await sweeping
    const batches = await loggedBatches(sql, table)
    const durations = batches.map((b) => b.endedMs - b.startedMs)
    const sweep = {
      rowsDeleted, seconds, finished, batches: batches.length,
      longestBatchMs: Math.max(...durations), medianBatchMs: median(durations),
    }
    log(`cleanup: ${rowsDeleted} rows in ${seconds.toFixed(1)} s, ${batches.length} batches, longest ${sweep.longestBatchMs.toFixed(1)} ms; get p99 ${duringSweep.p99Ms.toFixed(2)} ms`)

    const contended = await contendedSweep(sql, table, options)
    return { expiredRows, liveSessions, concurrency, idle, duringSweep, sweep, contended: { ...contended, liveSessionsLeft: await core.count() } }
  } finally {
    await sql.unsafe(`DROP TABLE IF EXISTS "${table}"`).catch(() => {})
    await sql.unsafe(`DROP TABLE IF EXISTS "${table}_batches"`).catch(() => {})
    await sql.unsafe(`DROP FUNCTION IF EXISTS "${table}_log"()`).catch(() => {})
    await sql.end({ timeout: 5 })
  }
}

/** Several stores, each with its own pool (as separate app instances), sweeping one table at once. */
async function contendedSweep(sql: Sql, table: string, options: CleanupOptions) {
  const { contendedRows, contendingStores, maxSweepMs, log } = options
  await sql.unsafe(`TRUNCATE "${table}_batches"`)
  await insertExpired(sql, table, contendedRows)
  // One connection per store, so a backend pid names the store that ran a batch.
  const pools = Array.from({ length: contendingStores }, () => postgres(DATABASE_URL, { ...quiet, max: 1 }))
  try {
    const pids = await Promise.all(pools.map(async (pool) => (await pool`SELECT pg_backend_pid() AS pid`)[0].pid as number))
    const stores = pools.map((pool) => new PostgresStore(pool, { table, cleanupInterval: 0 }))
    const anyExpired = async () => (await sql.unsafe(`SELECT EXISTS (SELECT 1 FROM "${table}" WHERE expiry <= now()) AS any`))[0].any
    const deadline = performance.now() + maxSweepMs
    const begin = performance.now()
    // Each store sweeps again as soon as its last sweep ends (0: another store held the lock).
    const sweepUntilEmpty = async (store: PostgresStore) => {
      let removed = 0
      while (performance.now() < deadline) {
        const n = await store.deleteExpired()
        removed += n
        if (n === 0 && !(await anyExpired())) break
      }
      return removed
    }
    const removed = await Promise.all(stores.map(sweepUntilEmpty))
    const seconds = (performance.now() - begin) / 1000
    const batches = await loggedBatches(sql, table)
    const result = {
      stores: contendingStores,
      expiredRows: contendedRows,
      rowsDeleted: removed.reduce((a, b) => a + b, 0),
      batchesPerStore: pids.map((pid) => batches.filter((b) => b.pid === pid).length),
      overlappingPairs: overlappingPairs(batches),
      seconds,
      finished: !(await anyExpired()),
    }
    log(`cleanup: ${contendingStores} stores, batches ${result.batchesPerStore.join('/')}, ${result.overlappingPairs} overlapping pairs`)
    return result
  } finally {
    await Promise.all(pools.map((pool) => pool.end({ timeout: 5 })))
  }
}

async function measureFor(op: () => Promise<unknown>, concurrency: number, ms: number): Promise<Measurement> {
  const deadline = performance.now() + ms
  return measureUntil(() => performance.now() >= deadline, op, concurrency)
}

/** Runs the sweep; past maxMs it stops waiting (the sweep itself cannot be cancelled, so it is left to end). */
async function timeSweep(sweep: () => Promise<number>, maxMs: number) {
  const begin = performance.now()
  const outcome = await Promise.race([
    sweep().then((rowsDeleted) => ({ rowsDeleted, finished: true })),
    sleep(maxMs).then(() => ({ rowsDeleted: NaN, finished: false })),
  ])
  return { ...outcome, seconds: (performance.now() - begin) / 1000 }
}

// Rows as the store leaves them: about 340 bytes of session, expired an hour
// to a few days ago (spread, so the sweep index is not one value), filed under their expiry.
async function insertExpired(sql: Sql, table: string, rows: number): Promise<void> {
  const data = Buffer.from(JSON.stringify(newSession(1)))
  await sql.unsafe(
    `INSERT INTO "${table}" (token, data, expiry, sweep_at, created) ` +
      `SELECT 'expired-' || md5(random()::text || n), $1::bytea, e.at, e.at, now() - interval '3 days' ` +
      `FROM generate_series(1, $2::int) AS n, LATERAL (SELECT now() - interval '1 hour' - n * interval '200 ms' AS at) AS e`,
    [data, rows],
  )
}

async function logBatches(sql: Sql, table: string): Promise<void> {
  await sql.unsafe(`CREATE TABLE "${table}_batches" (pid int, started timestamptz, ended timestamptz)`)
  await sql.unsafe(`
    CREATE FUNCTION "${table}_log"() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO "${table}_batches" VALUES (pg_backend_pid(), statement_timestamp(), clock_timestamp());
      RETURN NULL;
    END $$`)
  await sql.unsafe(`CREATE TRIGGER log_batch AFTER DELETE ON "${table}" FOR EACH STATEMENT EXECUTE FUNCTION "${table}_log"()`)
}

async function loggedBatches(sql: Sql, table: string): Promise<Batch[]> {
  // Milliseconds as float8: a Date would round the microseconds away.
  return sql.unsafe<Batch[]>(
    `SELECT pid, (extract(epoch FROM started) * 1000)::float8 AS "startedMs", (extract(epoch FROM ended) * 1000)::float8 AS "endedMs" ` +
      `FROM "${table}_batches" ORDER BY started`,
  )
}

/** Pairs of batches from different backends whose DELETE statements ran at the same time. */
function overlappingPairs(batches: Batch[]): number {
  let pairs = 0
  for (let i = 0; i < batches.length; i++) {
    for (let j = i + 1; j < batches.length && batches[j].startedMs < batches[i].endedMs; j++) {
      if (batches[j].pid !== batches[i].pid) pairs++
    }
  }
  return pairs
}
