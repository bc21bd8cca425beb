// Layout experiments for issue 12 (`npm run bench:layout`, `-- --full` for the
// issue's 200,000 operations on 10,000 sessions): candidate table layouts and
// statements, as raw SQL, each churned the same way (bench/churn.ts), then
// measured: WAL per set and per touch (bench/cost-meter.ts: records of the
// table's own relations and of its transactions), the share of HOT updates,
// dead tuples, table and index size, rows left, and whether the sweep query
// uses an index. The library is not involved: schema version 2's statements
// are copied here as of commit 8d512da, so later library changes do not move
// this baseline. Commits run with synchronous_commit=off (the WAL written is
// the same; only the wait for its flush goes) so a run takes minutes.
// Results: results/layout.json (--full) or layout-quick.json, and a table on stdout; findings in LAYOUT.md.
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import postgres, { type Sql } from 'postgres'
import { churnSlots, runChurn, type ChurnTarget } from './churn.js'
import { CostMeter } from './cost-meter.js'
import { tableStats } from './cost-bench.js'
import { changed, type BenchSession } from './sessions.js'
import { round } from './stats.js'
import { measureUntil } from './store-bench.js'
import { DATABASE_URL, flushBackends } from './stores.js'

interface Layout {
  name: string
  note: string
  /** Statements creating the table `t` (the name is substituted). */
  ddl: string[]
  find: string
  /** $1 token, $2 data, $3 expiry */
  commit: string
  /** $1 token, $2 expiry */
  touch: string
  /** $1 token */
  destroy: string
  /** Statements of one sweep batch, each taking $1 = batch size; run until they remove nothing. */
  sweep: string[]
}

const SCHEMA_2 = [
  `CREATE TABLE t (token TEXT PRIMARY KEY, data BYTEA NOT NULL, expiry TIMESTAMPTZ NOT NULL,
     created TIMESTAMPTZ NOT NULL DEFAULT now(), owner TEXT, destroyed BOOLEAN NOT NULL DEFAULT false)`,
  'CREATE INDEX t_owner_idx ON t (owner) WHERE owner IS NOT NULL',
]
const ACTIVE = 'expiry > now() AND NOT destroyed'
const CREATED = 'CASE WHEN s.expiry > now() THEN s.created ELSE now() END'
// Schema 2's statements with absoluteTimeout off (least(x, NULL) is x) and no owner.
const V2 = {
  find: `SELECT data, expiry FROM t WHERE token = $1 AND ${ACTIVE}`,
  commit: 'INSERT INTO t AS s (token, data, expiry, owner) VALUES ($1, $2, $3, NULL) ' +
    `ON CONFLICT (token) DO UPDATE SET data = EXCLUDED.data, owner = EXCLUDED.owner, created = ${CREATED}, ` +
    'expiry = EXCLUDED.expiry WHERE NOT s.destroyed',
  touch: `UPDATE t SET expiry = $2 WHERE token = $1 AND ${ACTIVE}`,
  sweep: ['DELETE FROM t WHERE token IN (SELECT token FROM t WHERE expiry <= now() LIMIT $1 FOR UPDATE SKIP LOCKED)'],
}
const tombstone = (life: string, extra = '') =>
  `INSERT INTO t AS s (token, data, expiry, destroyed) VALUES ($1, '', ${life}, true) ` +
  `ON CONFLICT (token) DO UPDATE SET data = '', owner = NULL, destroyed = true, expiry = ${life}${extra}`
// Today: a tombstone lives as long as the session would have, and at least an hour.
const LONG_TOMBSTONE = "greatest(s.expiry, now() + interval '1 hour')"
const longTombstone = `INSERT INTO t AS s (token, data, expiry, destroyed) VALUES ($1, '', now() + interval '1 hour', true) ` +
  `ON CONFLICT (token) DO UPDATE SET data = '', owner = NULL, destroyed = true, expiry = ${LONG_TOMBSTONE}`

const fillfactor = (n: number) => `ALTER TABLE t SET (fillfactor = ${n})`

/** Schema 2 with the expiry index. */
function schema2(name: string, note: string, extraDdl: string[] = [], destroy = longTombstone): Layout {
  return { name, note, ddl: [...SCHEMA_2, 'CREATE INDEX t_expiry_idx ON t (expiry)', ...extraDdl], ...V2, destroy }
}

/**
 * The cleanup index on sweep_at <= expiry instead of expiry. Writes leave
 * sweep_at alone unless the expiry moves earlier than it, so a touch or a set
 * changes no indexed column and can be HOT; the sweep deletes what is due and
 * expired, and re-files what is due but was extended (sweep_at = expiry): at
 * most once per session lifetime per row. Both batches use the index.
 */
function sweepAt(name: string, note: string, extraDdl: string[], tombstoneLife: string): Layout {
  return {
    name, note,
    ddl: [...SCHEMA_2, 'ALTER TABLE t ADD COLUMN sweep_at TIMESTAMPTZ NOT NULL', 'CREATE INDEX t_sweep_idx ON t (sweep_at)', ...extraDdl],
    find: V2.find,
    commit: 'INSERT INTO t AS s (token, data, expiry, owner, sweep_at) VALUES ($1, $2, $3, NULL, $3) ' +
      `ON CONFLICT (token) DO UPDATE SET data = EXCLUDED.data, owner = EXCLUDED.owner, created = ${CREATED}, ` +
      'expiry = EXCLUDED.expiry, sweep_at = least(s.sweep_at, EXCLUDED.expiry) WHERE NOT s.destroyed',
    touch: `UPDATE t SET expiry = $2, sweep_at = least(sweep_at, $2) WHERE token = $1 AND ${ACTIVE}`,
    destroy: `INSERT INTO t AS s (token, data, expiry, destroyed, sweep_at) VALUES ($1, '', ${tombstoneLife.replace(/s\.expiry/g, 'now()')}, true, ${tombstoneLife.replace(/s\.expiry/g, 'now()')}) ` +
      `ON CONFLICT (token) DO UPDATE SET data = '', owner = NULL, destroyed = true, expiry = ${tombstoneLife}, ` +
      `sweep_at = least(s.sweep_at, ${tombstoneLife})`,
    // = ANY(ARRAY(...)), not IN (...): on 1M rows PostgreSQL 15 planned the
    // IN form of the UPDATE as a hash semi join over a scan of the whole table.
    sweep: [
      'DELETE FROM t WHERE token = ANY(ARRAY(' +
        'SELECT token FROM t WHERE sweep_at <= now() AND expiry <= now() LIMIT $1 FOR UPDATE SKIP LOCKED))',
      'UPDATE t SET sweep_at = expiry WHERE token = ANY(ARRAY(' +
        'SELECT token FROM t WHERE sweep_at <= now() AND expiry > now() LIMIT $1 FOR UPDATE SKIP LOCKED))',
    ],
  }
}

// Stands for "minutes" in a run that lasts about a minute: a tombstone must
// outlive any request that read the session before it was destroyed, and the
// sweep (every SWEEP_EVERY_MS here) must see some expire within the run.
const SHORT_LIFE_S = 5
const SHORT_TOMBSTONE = `now() + interval '${SHORT_LIFE_S} seconds'`
const SWEEP_EVERY_MS = 2_000
const SWEEP_BATCH = 5_000

const LAYOUTS: Layout[] = [
  {
    name: 'floor', note: 'the floor store: schema 2 table, plain upsert/update/DELETE, no tombstone',
    ddl: [...SCHEMA_2, 'CREATE INDEX t_expiry_idx ON t (expiry)'],
    find: 'SELECT data, expiry FROM t WHERE token = $1 AND expiry > now()',
    commit: 'INSERT INTO t (token, data, expiry) VALUES ($1, $2, $3) ON CONFLICT (token) DO UPDATE SET data = EXCLUDED.data, expiry = EXCLUDED.expiry',
    touch: 'UPDATE t SET expiry = $2 WHERE token = $1 AND expiry > now()',
    destroy: 'DELETE FROM t WHERE token = $1',
    sweep: V2.sweep,
  },
  schema2('v2', 'schema 2 as shipped: expiry index, tombstones live >= 1 h and as long as the session'),
  schema2('v2-ff90', 'schema 2, fillfactor 90', [fillfactor(90)]),
  schema2('v2-ff70', 'schema 2, fillfactor 70', [fillfactor(70)]),
  schema2('v2-short-tomb', `schema 2, tombstones live ${SHORT_LIFE_S} s (standing for minutes)`, [], tombstone(SHORT_TOMBSTONE)),
  sweepAt('sweep_at', 'index on sweep_at instead of expiry, long tombstones', [], LONG_TOMBSTONE),
  sweepAt('sweep_at-ff90', 'sweep_at, fillfactor 90, long tombstones', [fillfactor(90)], LONG_TOMBSTONE),
  sweepAt('sweep_at-ff85-short', `sweep_at, fillfactor 85, tombstones live ${SHORT_LIFE_S} s`, [fillfactor(85)], SHORT_TOMBSTONE),
  sweepAt('sweep_at-ff90-short', `sweep_at, fillfactor 90, tombstones live ${SHORT_LIFE_S} s`, [fillfactor(90)], SHORT_TOMBSTONE),
  sweepAt('sweep_at-ff70-short', `sweep_at, fillfactor 70, tombstones live ${SHORT_LIFE_S} s`, [fillfactor(70)], SHORT_TOMBSTONE),
]

interface LayoutResult {
  name: string
  note: string
  churn: { operations: number; seconds: number; walBytesPerOp: number | null }
  hotPercent: number
  updates: number
  deadTuples: number
  rows: number
  liveSessions: number
  tableBytes: number
  indexBytes: number
  sweptRows: number
  walPerSet: number | null
  walPerTouch: number | null
  fullPageShare: number | null
  sweepPlan: string
}

const POOL = 8
const encode = (s: BenchSession) => Buffer.from(JSON.stringify(s))

async function main() {
  const full = process.argv.includes('--full')
  const only = process.argv.find((arg) => arg.startsWith('--only='))?.slice(7).split(',')
  const sessions = full ? 10_000 : 3_000
  const operations = full ? 200_000 : 60_000
  const cellCalls = 1_000
  const log = (line: string) => process.stdout.write(`[${new Date().toISOString().slice(11, 19)}] ${line}\n`)
  const monitor = postgres(DATABASE_URL, { max: 1, onnotice: () => {} })
  const database = `esp_bench_layout_${process.pid}`
  const url = new URL(DATABASE_URL)
  url.pathname = `/${database}`
  await monitor.unsafe(`CREATE DATABASE "${database}"`)
  const results: LayoutResult[] = []
  try {
    const meter = await CostMeter.open(monitor, database)
    for (const layout of LAYOUTS.filter((l) => !only || only.includes(l.name))) {
      results.push(await runLayout(meter, url.href, layout, sessions, operations, cellCalls))
      log(`${layout.name}: ${JSON.stringify(results.at(-1))}`)
    }
  } finally {
    await monitor.unsafe(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`)
    await monitor.end({ timeout: 5 })
  }
  await mkdir(join(__dirname, 'results'), { recursive: true })
  const file = join(__dirname, 'results', full ? 'layout.json' : 'layout-quick.json')
  await writeFile(file, JSON.stringify({ measuredAt: new Date().toISOString(), sessions, operations, cellCalls, results }, null, 1) + '\n')
  process.stdout.write('\n' + layoutTable(results) + '\n')
}

async function runLayout(meter: CostMeter, url: string, layout: Layout, sessionCount: number, operations: number, cellCalls: number) {
  const applicationName = `esp-bench layout ${layout.name} ${process.pid}`
  const sql = postgres(url, { max: POOL, onnotice: () => {}, connection: { application_name: applicationName, synchronous_commit: 'off' } })
  try {
    for (const statement of layout.ddl) await sql.unsafe(statement)
    const run = (query: string, params: unknown[]) => sql.unsafe(query, params as any[], { prepare: true })
    const target: ChurnTarget = {
      get: (sid) => run(layout.find, [sid]),
      set: async (sid, s) => void (await run(layout.commit, [sid, encode(s), new Date(s.cookie.expires)])),
      touch: async (sid, s) => void (await run(layout.touch, [sid, new Date(s.cookie.expires)])),
      destroy: async (sid) => void (await run(layout.destroy, [sid])),
    }
    const slots = churnSlots(sessionCount)
    for (let i = 0; i < sessionCount; i++) await target.set(slots.sids[i], slots.sessions[i])
    const relfilenodes = await CostMeter.relfilenodes(sql, 't')
    const flush = () => flushBackends((text) => sql.unsafe<{ pid: number }[]>(text))

    // The churn, with the sweep running beside it as the cleanup timer would.
    await flush()
    const before = await tableStats(sql, 't')
    const start = await meter.snapshot(applicationName)
    let sweeping = true
    let sweptRows = 0
    const sweeper = (async () => {
      while (sweeping) {
        await new Promise((resolve) => setTimeout(resolve, SWEEP_EVERY_MS))
        sweptRows += await sweep(sql, layout)
      }
    })()
    const churn = await runChurn(target, slots, operations, POOL * 2)
    sweeping = false
    await sweeper
    const churnUsage = await meter.usageSince(start, applicationName, relfilenodes)
    await flush()
    const after = await tableStats(sql, 't')

    // WAL per write on the churned table, one call at a time.
    const walPer = async (op: 'set' | 'touch') => {
      const start = await meter.snapshot(applicationName)
      let n = 0
      const result = await measureUntil(() => n++ >= cellCalls, () => {
        const i = Math.floor(Math.random() * sessionCount)
        return target[op](slots.sids[i], (slots.sessions[i] = changed(slots.sessions[i])))
      }, 1)
      const usage = await meter.usageSince(start, applicationName, relfilenodes)
      return usage.wal ? { perCall: usage.wal.bytes / result.ops, fullPage: usage.wal.fullPageBytes, bytes: usage.wal.bytes } : null
    }
    const set = await walPer('set')
    const touch = await walPer('touch')
    const plan = await sql.unsafe<{ 'QUERY PLAN': string }[]>(`EXPLAIN ${layout.sweep[0].replace('$1', String(SWEEP_BATCH))}`)
    const updates = after.updates - before.updates
    return {
      name: layout.name, note: layout.note,
      churn: { operations: churn.ops, seconds: round(churn.seconds, 1), walBytesPerOp: churnUsage.wal ? round(churnUsage.wal.bytes / churn.ops, 0) : null },
      hotPercent: round((100 * (after.hotUpdates - before.hotUpdates)) / updates, 1),
      updates, deadTuples: after.deadTuples, rows: after.rows, liveSessions: sessionCount,
      tableBytes: after.tableBytes, indexBytes: after.indexBytes, sweptRows,
      walPerSet: set ? round(set.perCall, 0) : null,
      walPerTouch: touch ? round(touch.perCall, 0) : null,
      fullPageShare: set && touch ? round((set.fullPage + touch.fullPage) / (set.bytes + touch.bytes), 3) : null,
      // How the sweep finds due rows (the subquery, t_1): by an index, or by reading the table.
      sweepPlan: plan.map((row) => row['QUERY PLAN'].trim().replace(/^->\s*/, '').replace(/\s*\(cost.*$/, ''))
        .filter((line) => / on t(_\w+)? t_1$|Index Scan/.test(line)).join('; '),
    }
  } finally {
    await sql.unsafe('DROP TABLE IF EXISTS t')
    await sql.end({ timeout: 5 })
  }
}

/** Runs the layout's sweep batches until a round removes and re-files nothing; resolves to the rows deleted. */
async function sweep(sql: Sql, layout: Layout): Promise<number> {
  let deleted = 0
  for (;;) {
    let touched = 0
    for (const [i, statement] of layout.sweep.entries()) {
      const result = await sql.unsafe(statement, [SWEEP_BATCH], { prepare: true })
      touched += result.count
      if (i === 0) deleted += result.count
    }
    if (touched < SWEEP_BATCH) return deleted
  }
}

function layoutTable(results: LayoutResult[]): string {
  const kib = (bytes: number) => `${Math.round(bytes / 1024)}`
  const lines = [
    '| layout | WAL/set B | WAL/touch B | HOT % | dead tuples | rows (live) | table KiB | indexes KiB | WAL/churn op B | sweep scan |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---|',
  ]
  for (const r of results) {
    lines.push(`| ${r.name} | ${r.walPerSet ?? '-'} | ${r.walPerTouch ?? '-'} | ${r.hotPercent} | ${r.deadTuples} | ` +
      `${r.rows} (${r.liveSessions}) | ${kib(r.tableBytes)} | ${kib(r.indexBytes)} | ${r.churn.walBytesPerOp ?? '-'} | ${r.sweepPlan} |`)
  }
  return lines.join('\n')
}

main().catch((error) => {
  process.stderr.write(`layout experiments failed: ${error?.stack ?? error}\n`)
  process.exit(1)
})
