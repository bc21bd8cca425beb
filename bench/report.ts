// Turns results/latest.json into BENCHMARKS.md: `npm run report` regenerates
// the report from the last run without measuring again.
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { HttpSample, Route } from './http-bench.js'
import type { PgbenchSample } from './pgbench.js'
import { median, pairedRatio, roundRatios } from './stats.js'
import { OPS, type Op, type StoreSample } from './store-bench.js'
import type { CleanupResult } from './cleanup-bench.js'
import type { Attempt, IterationResult } from './iterate-bench.js'
import { COST_OPS, type ChurnResult, type CostCell, type CostResult } from './cost-bench.js'
import type { StoreName } from './stores.js'
import { int, ms, name, pct, table, targetLine, x, type Group, type Target } from './report-format.js'
import { LOST_UPDATE_WHY, lostUpdateTargets, mergeCostSection, sharedSessionSection, statementsSection, type LostUpdateResults } from './report-lost-updates.js'

interface Results extends LostUpdateResults {
  meta: Record<string, any>
  config: Record<string, any> & { concurrencies: number[]; httpConnections: number[] }
  stores: Record<StoreName, string>
  storeSamples: StoreSample[]
  httpSamples: HttpSample[]
  pgbenchSamples: PgbenchSample[]
  cleanup?: CleanupResult & { mode: string; measuredAt: string }
  iteration?: IterationResult & { mode: string; measuredAt: string }
  cost?: CostResult & { mode: string; measuredAt: string; commit: string; config: Record<string, any> }
}

/** The store the targets are about: this library as users install it (coalescing on, durable). */
const SUBJECT: StoreName = 'adapter'
/** The same on node-postgres, held to the same targets against connect-pg-simple on the same driver. */
const SUBJECT_ON_PG: StoreName = 'adapter-pg'
const RELAXED: StoreName[] = ['sync-off', 'unlogged']

export async function writeReport(jsonPath: string, mdPath: string) {
  const results: Results = JSON.parse(await readFile(jsonPath, 'utf8'))
  const targets = evaluateTargets(results)
  const targetLines = targets.map(targetLine)
  await writeFile(mdPath, render(results, targets, targetLines))
  return { path: mdPath, targetLines }
}

// --- numbers ---------------------------------------------------------------

const storeCell = (r: Results, op: Op, c: number) => r.storeSamples.filter((s) => s.op === op && s.concurrency === c)
const httpCell = (r: Results, route: Route, n: number) => r.httpSamples.filter((s) => s.route === route && s.connections === n)
const medianOf = <S>(samples: S[], value: (s: S) => number) => median(samples.map(value).filter(Number.isFinite))
const opsRatios = (r: Results, op: Op, c: number, subject: StoreName, baseline: StoreName) =>
  roundRatios(storeCell(r, op, c), (s) => s.opsPerSec, subject, baseline)
const httpRatios = (r: Results, route: Route, n: number, subject: StoreName, baseline: StoreName) =>
  roundRatios(httpCell(r, route, n), (s) => s.reqPerSec, subject, baseline)
const opsRatio = (r: Results, op: Op, c: number, subject: StoreName, baseline: StoreName) =>
  pairedRatio(storeCell(r, op, c), (s) => s.opsPerSec, subject, baseline)
const httpRatio = (r: Results, route: Route, n: number, subject: StoreName, baseline: StoreName) =>
  pairedRatio(httpCell(r, route, n), (s) => s.reqPerSec, subject, baseline)

export function evaluateTargets(r: Results): Target[] {
  const targets: Target[] = []
  // Each ratio target shows the median of its per-round ratios, and their range: the noise.
  const atLeast = (group: Group, what: string, subject: StoreName, baseline: StoreName, ratios: number[], target: number) => {
    const ratio = ratios.length > 0 ? median(ratios) : NaN
    const range = ratios.length > 1 ? ` (rounds ${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)})` : ''
    targets.push({
      group, claim: `${what}: ${name(r, subject)} = ${x(ratio)}${range} ${name(r, baseline)}`, goal: `target >= ${target}x`,
      met: ratio >= target, short: ratio >= target ? 0 : Number.isFinite(ratio) ? 1 - ratio / target : 1,
    })
  }
  // Runs without the pg stores (before they were added) have no targets for them.
  const subjects = [SUBJECT, ...(r.storeSamples.some((s) => s.store === SUBJECT_ON_PG) ? [SUBJECT_ON_PG] : [])]
  for (const subject of subjects) {
    for (const op of OPS) atLeast('c1', `c=1 ${op}`, subject, 'cps', opsRatios(r, op, 1, subject, 'cps'), 1)
    for (const c of [16, 64]) {
      atLeast('get', `c=${c} get-hit`, subject, 'cps', opsRatios(r, 'get-hit', c, subject, 'cps'), 1.3)
      atLeast('writes', `c=${c} set (durable)`, subject, 'cps', opsRatios(r, 'set', c, subject, 'cps'), 2)
      atLeast('writes', `c=${c} touch (durable)`, subject, 'cps', opsRatios(r, 'touch', c, subject, 'cps'), 3)
    }
  }
  if (r.httpSamples.length > 0) {
    for (const n of r.config.httpConnections) {
      for (const subject of subjects) {
        atLeast('read-route', `HTTP /read, ${n} connections`, subject, 'cps', httpRatios(r, 'read', n, subject, 'cps'), 2)
      }
      atLeast('read-route', `HTTP /read, ${n} connections`, SUBJECT, 'redis', httpRatios(r, 'read', n, SUBJECT, 'redis'), 0.8)
    }
    for (const relaxed of RELAXED) {
      for (const n of r.config.httpConnections) {
        atLeast('relaxed', `HTTP /write, ${n} connections`, relaxed, 'redis', httpRatios(r, 'write', n, relaxed, 'redis'), 0.8)
      }
    }
  }
  if (r.cleanup) {
    const { idle, duringSweep, expiredRows, contended } = r.cleanup
    const ratio = duringSweep.p99Ms / idle.p99Ms
    targets.push({
      group: 'cleanup',
      claim: `get p99 at c=${r.cleanup.concurrency} while deleteExpired() sweeps ${int(expiredRows)} expired rows = ${x(ratio)} ` +
        `idle p99 (${ms(duringSweep.p99Ms)} vs ${ms(idle.p99Ms)} ms; longest DELETE batch ${ms(r.cleanup.sweep.longestBatchMs)} ms)`,
      goal: 'target <= 2x', met: ratio <= 2, short: ratio <= 2 ? 0 : ratio / 2 - 1,
    })
    targets.push({
      group: 'cleanup',
      claim: `${contended.stores} stores sweeping one table at once: ${contended.overlappingPairs} overlapping DELETE batches ` +
        `(batches per store ${contended.batchesPerStore.join(' / ')})`,
      goal: 'target 0', met: contended.overlappingPairs === 0 && contended.rowsDeleted === contended.expiredRows,
      short: contended.overlappingPairs > 0 ? 1 : 0,
    })
  }
  if (r.iteration) {
    const { iterate, tableRows } = r.iteration
    const growth = iterate.peak.rssMB - iterate.before.rssMB
    targets.push({
      group: 'iteration',
      claim: `iterate() over ${int(tableRows)} sessions: RSS grew ${int(growth)} MB (heap ${int(iterate.peak.heapUsedMB - iterate.before.heapUsedMB)} MB)`,
      goal: 'target < 100 MB', met: growth < 100, short: growth < 100 ? 0 : growth / 100 - 1,
    })
  }
  targets.push(...costTargets(r))
  targets.push(...lostUpdateTargets(r))
  return targets
}

// Issue 12's bars: WAL per write at most the floor's (one call at a time, so
// no batch shares a commit record), at least 90% of updates HOT in the churn,
// and table plus indexes after it no larger than the floor's.
function costTargets(r: Results): Target[] {
  const cost = r.cost
  if (!cost || !cost.churn.some((c) => c.store === SUBJECT) || !cost.churn.some((c) => c.store === 'floor')) return []
  const targets: Target[] = []
  const walPerCall = (store: StoreName, op: string) =>
    median(cost.cells.filter((c) => c.level === 'store' && c.store === store && c.op === op && c.concurrency === 1 && c.wal)
      .map((c) => c.wal!.bytes / c.calls))
  const atMost = (claim: string, value: number, limit: number, goal: string) => targets.push({
    group: 'cost', claim, goal, met: value <= limit, short: value <= limit ? 0 : value / limit - 1,
  })
  if (!cost.walUnavailable) {
    for (const op of ['set', 'touch']) {
      const ours = walPerCall(SUBJECT, op), floor = walPerCall('floor', op), cps = walPerCall('cps', op)
      atMost(`WAL per ${op} (c=1): ${name(r, SUBJECT)} ${int(ours)} B, floor ${int(floor)} B, cps ${int(cps)} B`, ours, floor, 'target <= floor')
    }
  }
  const churn = (store: StoreName) => cost.churn.find((c) => c.store === store)
  const ours = churn(SUBJECT)!, floor = churn('floor')!, cps = churn('cps')
  const hot = (c: ChurnResult | undefined) => (c ? 100 * c.hotUpdates / Math.max(1, c.updates) : NaN)
  const size = (c: ChurnResult | undefined) => (c ? (c.tableBytes + c.indexBytes) / 2 ** 20 : NaN)
  targets.push({
    group: 'cost', claim: `HOT updates in the churn: ${name(r, SUBJECT)} ${hot(ours).toFixed(1)}%, floor ${hot(floor).toFixed(1)}%, cps ${hot(cps).toFixed(1)}%`,
    goal: 'target >= 90%', met: hot(ours) >= 90, short: hot(ours) >= 90 ? 0 : 1 - hot(ours) / 90,
  })
  atMost(`table + indexes after the churn: ${name(r, SUBJECT)} ${size(ours).toFixed(1)} MiB, floor ${size(floor).toFixed(1)} MiB, cps ${size(cps).toFixed(1)} MiB`,
    size(ours), size(floor), 'target <= floor')
  return targets
}

// --- formatting ------------------------------------------------------------

function storeTable(r: Results, op: Op): string {
  const stores = [...new Set(r.storeSamples.filter((s) => s.op === op).map((s) => s.store))]
  const header = ['store', ...r.config.concurrencies.flatMap((c) => [`c=${c} ops/s`, 'p50 / p99 ms', 'vs cps'])]
  const rows = stores.map((store) => [
    name(r, store),
    ...r.config.concurrencies.flatMap((c) => {
      const mine = storeCell(r, op, c).filter((s) => s.store === store)
      return [
        int(medianOf(mine, (s) => s.opsPerSec)),
        `${ms(medianOf(mine, (s) => s.p50Ms))} / ${ms(medianOf(mine, (s) => s.p99Ms))}`,
        x(opsRatio(r, op, c, store, 'cps')),
      ]
    }),
  ])
  return table(header, rows)
}

function httpTable(r: Results, route: Route): string {
  const stores = [...new Set(r.httpSamples.filter((s) => s.route === route).map((s) => s.store))]
  const header = ['store', ...r.config.httpConnections.flatMap((n) => [`${n} conns req/s`, 'p50 / p99 ms', 'vs cps', 'vs redis'])]
  const rows = stores.map((store) => [
    name(r, store),
    ...r.config.httpConnections.flatMap((n) => {
      const mine = httpCell(r, route, n).filter((s) => s.store === store)
      return [
        int(medianOf(mine, (s) => s.reqPerSec)),
        `${ms(medianOf(mine, (s) => s.p50Ms))} / ${ms(medianOf(mine, (s) => s.p99Ms))}`,
        x(httpRatio(r, route, n, store, 'cps')),
        x(httpRatio(r, route, n, store, 'redis')),
      ]
    }),
  ])
  return table(header, rows)
}

/** Coalescing's effect: the library as shipped against the same library with coalesce: false. */
function coalescingTable(r: Results): string {
  const header = ['operation', ...r.config.concurrencies.map((c) => `c=${c}`)]
  const rows = OPS.map((op) => [op, ...r.config.concurrencies.map((c) => x(opsRatio(r, op, c, SUBJECT, 'single')))])
  const routes = (['read', 'write'] as const).map((route) =>
    `/${route} ${r.config.httpConnections.map((n) => `${x(httpRatio(r, route, n, SUBJECT, 'single'))} at ${n} connections`).join(', ')}`)
  return `${table(header, rows)}${r.httpSamples.length ? `\n\nOver HTTP: ${routes.join('; ')}.` : ''}`
}

/** Durable against relaxed: set and touch at store level, the write route over HTTP. */
function durabilityTable(r: Results): string {
  const stores: StoreName[] = ['cps', SUBJECT, ...RELAXED, 'redis']
  const header = ['store', ...r.config.concurrencies.flatMap((c) => [`set c=${c}`, `touch c=${c}`]), ...r.config.httpConnections.map((n) => `/write ${n} conns vs redis`)]
  const rows = stores.map((store) => [
    name(r, store),
    ...r.config.concurrencies.flatMap((c) => (['set', 'touch'] as const).map((op) => {
      const rate = medianOf(storeCell(r, op, c).filter((s) => s.store === store), (s) => s.opsPerSec)
      return `${int(rate)} (${x(opsRatio(r, op, c, store, 'cps'))})`
    })),
    ...r.config.httpConnections.map((n) => x(httpRatio(r, 'write', n, store, 'redis'))),
  ])
  return table(header, rows)
}

function pgbenchTable(r: Results): string {
  const header = ['statement', 'clients', 'pgbench tps', 'floor', 'PostgresSessionStore', 'coalesce: false']
  const rows: string[][] = []
  for (const op of ['get-hit', 'get-miss', 'set', 'touch'] as const) {
    for (const c of r.config.concurrencies) {
      const ceiling = medianOf(r.pgbenchSamples.filter((s) => s.op === op && s.clients === c), (s) => s.tps)
      const share = (store: StoreName) => {
        const rate = medianOf(storeCell(r, op, c).filter((s) => s.store === store), (s) => s.opsPerSec)
        return `${int(rate)} (${Number.isFinite(ceiling) ? pct(rate / ceiling) : 'n/a'})`
      }
      rows.push([op, String(c), int(ceiling), share('floor'), share(SUBJECT), share('single')])
    }
  }
  return table(header, rows)
}

function cleanupSection(r: Results): string {
  const c = r.cleanup
  if (!c) return 'Not run.'
  const sweepRate = c.sweep.rowsDeleted / c.sweep.seconds
  return `A **${c.mode}** measurement of ${c.measuredAt}. One table holds ${int(c.expiredRows)} expired rows (bulk
inserted with generate_series, ~340 bytes of session each, then VACUUM ANALYZE, untimed) and
${int(c.liveSessions)} live sessions. One store (the adapter over the core, coalescing on, pool of ${r.config.poolSize ?? 10})
serves get (hit) at c=${c.concurrency}: first for ${int(c.idle.seconds * 1000)} ms idle, then, right after and in the same
process, while the same store's \`deleteExpired()\` removes the backlog (as the cleanup timer
would, on the same pool). A statement trigger on the table logs each DELETE batch's start
(\`statement_timestamp()\`) and end (\`clock_timestamp()\` when the AFTER STATEMENT trigger fires),
so batch durations are PostgreSQL's own, without the try-lock, the commit or the network.

${table(['', 'gets', 'gets/s', 'p50 ms', 'p99 ms'], [
    ['idle, right before', int(c.idle.ops), int(c.idle.opsPerSec), ms(c.idle.p50Ms), ms(c.idle.p99Ms)],
    ['while deleteExpired() runs', int(c.duringSweep.ops), int(c.duringSweep.opsPerSec), ms(c.duringSweep.p50Ms), ms(c.duringSweep.p99Ms)],
  ])}

- The sweep removed ${int(c.sweep.rowsDeleted)} rows in ${c.sweep.seconds.toFixed(1)} s (${int(sweepRate)} rows/s)${c.sweep.finished ? '' : ', **and had not finished when the run stopped waiting**'},
  in ${int(c.sweep.batches)} DELETE batches of up to 5,000 rows: median ${ms(c.sweep.medianBatchMs)} ms, **longest ${ms(c.sweep.longestBatchMs)} ms**.
- Then ${int(c.contended.expiredRows)} more rows expired and ${c.contended.stores} stores, each with its own connection (as
  separate app instances), called \`deleteExpired()\` in a loop until none were left: they
  ran ${c.contended.batchesPerStore.join(' / ')} batches, deleted ${int(c.contended.rowsDeleted)} rows in ${c.contended.seconds.toFixed(1)} s${c.contended.finished ? '' : ' (not finished)'}, and
  **${c.contended.overlappingPairs} pairs of DELETE batches from different stores overlapped** in time
  (\`pg_try_advisory_xact_lock\`: a store that finds the lock taken skips). ${int(c.contended.liveSessionsLeft)} of ${int(c.liveSessions)} live sessions were left, as they must be.`
}

function iterationSection(r: Results): string {
  const it = r.iteration
  if (!it) return 'Not run.'
  const row = (label: string, attempt: Attempt | undefined) => {
    if (attempt === undefined) return []
    if ('failed' in attempt) return [[label, 'failed', attempt.failed, '', '', '']]
    const change = (before: number, peak: number) => `${int(before)} → ${int(peak)} (+${int(peak - before)})`
    return [[
      label, int(attempt.rows), attempt.seconds.toFixed(1),
      change(attempt.before.rssMB, attempt.peak.rssMB),
      change(attempt.before.heapUsedMB, attempt.peak.heapUsedMB),
      change(attempt.before.externalMB, attempt.peak.externalMB),
    ]]
  }
  const small = int(it.allRows)
  const rows = [
    ...row(`core.iterate(${it.batchSize}), ${int(it.tableRows)}-row table`, it.iterate),
    ...row(`core.iterate(${it.batchSize}), stopped after ${small} rows`, it.iterateFirst),
    ...row(`core.all(), ${int(it.tableRows)}-row table`, it.allWhole),
    ...row(`core.all(), ${small}-row table`, it.all),
  ]
  const allNote = it.allRows < it.tableRows
    ? `all() was tried on the whole table with the store's defaults, as a user would call it, and is
measured on a table of ${small} rows of the same shape; iterate() stopped after ${small} rows shows
whether iterate()'s memory grows with the number of rows.`
    : 'all() read the same table.'
  return `A **${it.mode}** measurement of ${it.measuredAt}: ${int(it.tableRows)} live sessions (~340 bytes each), read
by each reader in a fresh Node process (\`bench/iterate-reader.ts\`, --expose-gc and a GC before
the "before" sample; the process's baseline includes tsx). Memory in MB, before reading → peak
while reading (sampled every 10 ms and after each batch; all()'s peak includes the Map it returns).
${allNote}

${table(['reader', 'rows', 'seconds', 'RSS MB', 'JS heap used MB', 'external (Buffers) MB'], rows)}${
    it.allWhole && 'failed' in it.allWhole
      ? `\n\nall() on ${int(it.tableRows)} rows fails with the default queryTimeout (10 s): one statement must return every
row within it, while iterate() fetches batch after batch with no time limit on the whole read.`
      : ''}
${it.iterateFirst && 'rows' in it.iterateFirst ? `\niterate()'s growth does not scale with the rows read: +${int(it.iterateFirst.peak.rssMB - it.iterateFirst.before.rssMB)} MB of RSS after ${small} rows,
+${int(it.iterate.peak.rssMB - it.iterate.before.rssMB)} MB after ${int(it.tableRows)}. Most of it is external memory: each row's data is a Buffer cut from
Node's shared 8 KiB slabs, and slabs are freed only when V8 next collects, which it does when
external memory has grown by some tens of MB, not after every batch.` : ''}`
}

function render(r: Results, targets: Target[], targetLines: string[]): string {
  const m = r.meta
  const pg = m.postgres ?? {}
  const missed = targets.filter((t) => !t.met && !t.unmeasured)
  const misses = missed.length
  const missedGroups = new Set(missed.map((t) => t.group))
  const why = (Object.keys(WHY) as Group[]).filter((g) => missedGroups.has(g)).map((g) => `- ${WHY[g](r)}`).join('\n')
  return `# Benchmarks

Generated by \`bench/report.ts\` from \`bench/results/latest.json\`: a **${r.config.mode}** run of
${m.startedAt} (${m.minutes} min, commit ${m.commit}${m.uncommitted?.length ? `, plus uncommitted changes to ${m.uncommitted.join(', ')}` : ''}). Regenerate the text with
\`cd bench && npm run report\`; measure again with \`cd bench && npm install && npm run bench\`
(full, at most ~15 minutes plus ~14 for the cost section; \`-- --skip-cost\` leaves it out), \`npm run bench -- --quick\`
(~4 minutes plus ~6), only the cleanup and iteration sections with \`npm run bench:cleanup\` (\`-- --quick\` for
100k rows instead of 1M), only the cost section with \`npm run bench:cost\`, or only the sections of issue 11
(~3 minutes in a full run) with \`npm run bench -- --shared-session --fastify\`.

**The machine was shared and noisy.** Other engineers ran test suites on the same 2 cores during
this run (load average ${m.loadAverageAtStart?.join(' ')} at the start, ${m.loadAverageAtEnd?.join(' ')} at the end)${r.config.mode === 'full' ? `, and
this is the one full run, made near the end of the work` : ''}. Absolute numbers here are low and noisy;
only ratios between stores measured side by side mean much, and a ratio near its target can
fall either side of it in another run. The run may be re-done on a quiet machine.

## How to read this

- Every throughput claim is a **paired ratio**: in each round every store runs the same cell (operation,
  concurrency) one after another, the order rotating between rounds; the ratio of two stores is
  taken within each round, and the table shows the median over ${r.config.store.rounds} rounds
  (HTTP: ${r.config.http.rounds}). "vs cps" is that ratio against connect-pg-simple: 2.00x means twice its
  throughput. Absolute ops/s and latencies are medians over rounds, for orientation only.
- Store level calls the store's methods directly with \`c\` concurrent callers, each starting
  its next call when the last returns, for ${r.config.store.cellMs} ms per cell, over
  ${r.config.preloadedSessions.toLocaleString('en-US')} preloaded sessions of ~340 bytes of JSON with an express-session cookie.
  get-hit reads a random preloaded session, get-miss a random unknown id, set rewrites a
  preloaded session (one more view, a later expiry), touch moves its expiry, destroy removes
  rows preloaded for it. PostgreSQL stores each get their own table and a pool of
  ${r.config.poolSize} connections.
- HTTP level runs one Express 5 app per store in its own process, driven by autocannon from
  the benchmark process over 127.0.0.1 for ${r.config.http.seconds} s per cell; each request carries the
  signed cookie of one of ${(r.config.http.sessionCount ?? r.config.preloadedSessions).toLocaleString('en-US')} preloaded sessions, picked at random. \`/read\` only reads the session, so
  express-session calls get and then touch; \`/write\` changes it, so get and then set.
- Durability: PostgreSQL runs with synchronous_commit=${pg.synchronous_commit} and fsync=${pg.fsync}:
  every write of every PostgreSQL store is a durable commit, except the two relaxed variants
  below, which exist to show what each durability knob buys (see "Durability knobs"). Redis
  runs with appendonly=${m.redis?.appendonly} (a write is acknowledged before it reaches the disk), and
  MemoryStore keeps nothing: both are references, not competitors on durability.
- ${m.touchAfter ? TOUCH_AFTER_ON : 'The adapter has no `touchAfter` option yet (the lead is adding one to lib/session-store.ts): every touch, at store level and on /read, writes'}${m.touchAfterAtEnd !== undefined && m.touchAfterAtEnd !== m.touchAfter ? ' at the start of the run; **lib/session-store.ts changed during the run** (touchAfter ' + (m.touchAfterAtEnd ? 'appeared' : 'went away') + '), so the HTTP servers, started later, may have run the other version' : ''}.

The stores:

${Object.entries(r.stores).map(([key, label]) => `- **${label}** (\`${key}\`)${STORE_NOTES[key as StoreName] ?? ''}`).join('\n')}

## Targets

The targets are about the adapter as users install it (\`PostgresSessionStore\`, coalescing on,
durable), except the relaxed-durability line. ${misses === 0 ? 'Every target measured was met in this run.' : `${misses} of ${targets.filter((t) => !t.unmeasured).length} target lines measured were missed in this run.`}${targets.some((t) => t.unmeasured) ? ' Lines marked n/a had no section in this run.' : ''}

\`\`\`
${targetLines.join('\n')}
\`\`\`

${why ? `Why the misses, and what would close them:\n${why}` : ''}

## What coalescing buys

The adapter as shipped (coalescing on) against the same adapter over
\`new PostgresStore(sql, { coalesce: false })\` (one statement per call), paired per round.
Above 1.00x coalescing helps. At c=1 a lone call goes out at once as the same single-row
statement, so the statements cannot explain a difference there; the pool does: with one
statement per kind in flight, the coalescing store opens only a few of its 10 connections (a
side probe: after 1 s of finds and commits at c=16, 2 connections were open with coalescing,
10 without), and postgres.js cycles c=1 calls through those few warm ones, while
coalesce: false opened all 10 in the c=16 warm-up and cycles through all of them.

${r.storeSamples.length ? coalescingTable(r) : 'Not run.'}

## Durability knobs

${DURABILITY}

Measured (ops/s at store level with the ratio to connect-pg-simple; the write route as a ratio
to connect-redis):

${r.storeSamples.length ? durabilityTable(r) : 'Not run.'}

## Store level

${OPS.map((op) => `### ${op}\n\n${storeTable(r, op)}`).join('\n\n')}

## HTTP level

### /read (get + touch)

${r.httpSamples.length ? httpTable(r, 'read') : 'Not run (--skip-http).'}

### /write (get + set)

${r.httpSamples.length ? httpTable(r, 'write') : 'Not run (--skip-http).'}

### Merging when nothing conflicts

${mergeCostSection(r)}

## Many requests of one session at once

${sharedSessionSection(r)}

## Statements per request for an unchanged session

${statementsSection(r)}

## Cleanup of a backlog

${cleanupSection(r)}

## Iterating every session

${iterationSection(r)}

## Cost per operation

${costSection(r)}

## What PostgreSQL itself can do here

pgbench (${m.pgbench ?? 'not available'}) running the core's single-row statements one per transaction
with \`-M prepared\`, against a table in the store's schema with the same rows, right after
the store runs. In brackets: the store's median ops/s as a share of it. Above 100% is only
possible by sending fewer statements than operations, which is what coalescing does.
pgbench is a C client with no session logic, so at 1 and 16 clients the one-statement stores
sit below it; at 64 pgbench opens 64 connections while each store uses ${r.config.poolSize}, and on 2 cores
64 backends contend enough that the pooled stores can pass it. Shares are of medians, not paired.

${r.pgbenchSamples.length ? pgbenchTable(r) : 'Not run.'}

## Machine

- ${m.cpu}, ${m.memoryGiB} GiB, ${m.os}, Node ${m.node}
- ${pg.version}; shared_buffers ${pg.shared_buffers}, wal_sync_method ${pg.wal_sync_method}, max_connections ${pg.max_connections}
- Redis ${m.redis?.version}
- ${Object.entries(m.packages ?? {}).map(([p, v]) => `${p} ${v}`).join(', ')}
`
}

// --- cost per operation ----------------------------------------------------

const COST_METHOD = `What a call costs the database and the client, counted rather than timed, so it holds still
on a shared machine where throughput does not. Generated by \`cd bench && npm run bench:cost\`
(\`-- --quick\` for smaller cells and a tenth of the churn), also part of a full run.

- **Where:** the section creates a database of its own (\`esp_bench_cost_<pid>\`, dropped at the end),
  and each store gets its own table and pool there, its connections named by \`application_name\`
  (\`esp-bench <store> <pid>\`). Cells run one store at a time, stores rotating between repetitions.
  A cell is a fixed number of calls (or a time limit, whichever comes first) at 1 or 16 concurrent
  callers over 10,000 preloaded sessions; HTTP cells drive the Express app of \`bench/http-server.ts\`
  (get + touch on /read, get + set on /write) with autocannon.
- **Server CPU:** on-CPU time of the store's own backends (pg_stat_activity by application_name;
  \`/proc/<pid>/schedstat\`, in ns: the benchmark runs as root on the server's machine), end minus start
  of the cell. Parse, plan, execute, commit and the wait-free part of the WAL flush are in it; the WAL
  writer, checkpointer and the OS's disk work are not. Backends opened during a cell count whole (the
  \`newBackends\` field of the raw results): connect-pg-simple's pg.Pool closes connections idle for 10 s
  (its default), so its c=16 cells reopen about 9 backends each, whose start-up (a transaction too:
  hence its 1.003 transactions per call) is part of its cost; the postgres.js pools keep theirs.
- **WAL:** \`pg_waldump\` over the cell's LSN range, summing every record that touches one of the
  store's own relations (table, its indexes, TOAST: matched by relfilenode and database oid) plus every
  other record, commit records included, of the transactions that wrote those. Other work on the same
  server is left out. Full-page images are counted: they come with the first change of a page after a
  checkpoint, so they depend on when checkpoints fall (every 5 min here); the upper end of a WAL range
  is usually one (the raw results hold \`fullPageBytes\`; the churn table shows them).
- **Transactions:** xact_commit + xact_rollback of pg_stat_database for the section's database. PostgreSQL
  15 backends publish statistics when they go idle, at most once a second, else 10 s later; before and
  after each cell every backend of the store's pool runs \`pg_stat_force_next_flush()\` (as many
  concurrent sleeping statements as it has backends, each answered by a distinct backend pid, repeated
  for any backend missed) and the count is read once it holds still for 100 ms; the flush's own
  statements are subtracted. The flush statement reads a catalog table: a backend with no table
  statistics pending skips the flush, and publishes that transaction only later.
- **Statements:** counted at the client (postgres.js \`debug\` hook; connect-pg-simple's \`pool.query\`).
  Round trips equal statements here: each statement is one Parse/Bind/Execute/Sync flight (postgres.js
  may pipeline queued statements onto a busy connection, which only lowers round trips).
- **Client CPU:** store level, \`process.cpuUsage()\` of the benchmark process over the cell (the driver
  loop included, the same for every store); HTTP, the on-CPU time of the Express server's process.
- **Churn:** a fresh table of each store, the sessions preloaded, then the mix of bench/churn.ts (60%
  get, 25% touch, 10% set, 5% destroy followed by a new session in the slot) at 16 callers; then
  pg_stat_user_tables (after the flush): the share of HOT updates (n_tup_hot_upd / n_tup_upd), dead
  tuples, pg_table_size, pg_indexes_size, and the rows left against the live sessions. The server runs
  with autovacuum=off, so nothing but HOT pruning reclaims space during the churn. No sweep runs.
- Each cell shows the median of the repetitions and, in brackets, their range: what is stable.`

function costSection(r: Results): string {
  const cost = r.cost
  if (!cost) return `${COST_METHOD}\n\nNot run yet.`
  const stores = [...new Set(cost.cells.map((c) => c.store))]
  const cellsOf = (level: CostCell['level'], op: string, c: number, store: StoreName) =>
    cost.cells.filter((cell) => cell.level === level && cell.op === op && cell.concurrency === c && cell.store === store)
  const spread = (values: number[], digits = 0) => {
    const fmt = (v: number) => (digits === 0 ? int(v) : v.toFixed(digits))
    if (values.length === 0) return 'n/a'
    const lo = Math.min(...values), hi = Math.max(...values)
    return values.length > 1 && fmt(lo) !== fmt(hi) ? `${fmt(median(values))} (${fmt(lo)}-${fmt(hi)})` : fmt(median(values))
  }
  const row = (cells: CostCell[]) => {
    const per = (f: (c: CostCell) => number | null) => cells.map((c) => f(c)).filter((v): v is number => v !== null && Number.isFinite(v))
    return [
      spread(per((c) => c.serverCpuNs / c.calls / 1000)),
      cost.walUnavailable ? 'n/a' : spread(per((c) => (c.wal ? c.wal.bytes / c.calls : null))),
      spread(per((c) => c.transactions / c.calls), 3),
      spread(per((c) => c.statements / c.calls), 3),
      spread(per((c) => c.clientCpuNs / c.calls / 1000)),
    ].join(' | ')
  }
  const head = '| server CPU us | WAL bytes | transactions | statements | client CPU us |\n'
  const storeRows = COST_OPS.flatMap((op) => [1, 16].flatMap((c) => stores.map((store) => {
    const cells = cellsOf('store', op, c, store)
    return cells.length ? `| ${op} | ${c} | ${store} | ${row(cells)} |` : null
  }))).filter(Boolean)
  const httpStores = [...new Set(cost.cells.filter((c) => c.level === 'http').map((c) => c.store))]
  const connections = [...new Set(cost.cells.filter((c) => c.level === 'http').map((c) => c.concurrency))]
  const httpRows = (['read', 'write'] as const).flatMap((route) => connections.flatMap((n) => httpStores.map((store) => {
    const cells = cellsOf('http', route, n, store)
    return cells.length ? `| /${route} | ${n} | ${store} | ${row(cells)} |` : null
  }))).filter(Boolean)
  const kib = (bytes: number) => int(bytes / 1024)
  const churnRows = cost.churn.map((c) => `| ${c.store} | ${(100 * c.hotUpdates / c.updates).toFixed(1)}% of ${int(c.updates)} | ${int(c.deadTuples)} | ` +
    `${int(c.rows)} (${int(c.sessions)}) | ${kib(c.tableBytes)} | ${kib(c.indexBytes)} | ${kib(c.tableBytes + c.indexBytes)} | ` +
    `${c.wal ? int(c.wal.bytes / c.operations) + (c.wal.fullPageBytes > 0 ? ` (${int(c.wal.fullPageBytes / c.operations)} FPI)` : '') : 'n/a'} | ${(c.serverCpuNs / c.operations / 1000).toFixed(0)} | ${(c.transactions / c.operations).toFixed(3)} |`)
  const churn = cost.churn[0]
  const perCall = (store: StoreName, op: string, c: number, f: (cell: CostCell) => number | null) =>
    median(cellsOf('store', op, c, store).map(f).filter((v): v is number => v !== null))
  const cpu = (store: StoreName, op: string) => int(perCall(store, op, 16, (c) => c.serverCpuNs / c.calls / 1000))
  const walOf = (store: StoreName, op: string) => int(perCall(store, op, 1, (c) => (c.wal ? c.wal.bytes / c.calls : null)))
  const churnOf = (store: StoreName) => cost.churn.find((c) => c.store === store)
  const hot = (store: StoreName) => { const c = churnOf(store); return c ? `${(100 * c.hotUpdates / c.updates).toFixed(0)}%` : 'n/a' }
  const mib = (store: StoreName) => { const c = churnOf(store); return c ? `${((c.tableBytes + c.indexBytes) / 2 ** 20).toFixed(1)} MiB` : 'n/a' }
  const summary = stores.includes('adapter') && stores.includes('cps') && stores.includes('floor')
    ? `In short (medians of this run; this store = the adapter; cps = connect-pg-simple): at 16 callers the store spends
${cpu('adapter', 'get')} us of server CPU per get (cps ${cpu('cps', 'get')}, floor ${cpu('floor', 'get')}), ${cpu('adapter', 'set')} per set (${cpu('cps', 'set')} / ${cpu('floor', 'set')}) and
${cpu('adapter', 'touch')} per touch (${cpu('cps', 'touch')} / ${cpu('floor', 'touch')}), with ${perCall('adapter', 'set', 16, (c) => c.transactions / c.calls).toFixed(3)} transactions per call: coalescing. One call at a time, WAL
per write: set ${walOf('adapter', 'set')} B (cps ${walOf('cps', 'set')}, floor ${walOf('floor', 'set')}), touch ${walOf('adapter', 'touch')} B (${walOf('cps', 'touch')} / ${walOf('floor', 'touch')}), destroy
${walOf('adapter', 'destroy')} B (a tombstone upsert; ${walOf('cps', 'destroy')} / ${walOf('floor', 'destroy')} for a DELETE). After the churn ${hot('adapter')} of its updates were HOT
(cps ${hot('cps')}, floor ${hot('floor')}) and table plus indexes took ${mib('adapter')} (cps ${mib('cps')}, floor ${mib('floor')}).`
    : ''
  return `${COST_METHOD}

${summary}

This section: a **${cost.mode}** run of ${cost.measuredAt} (commit ${cost.commit}), ${cost.config.repetitions} repetitions of each cell,
at most ${int(cost.config.cellCalls)} calls or ${int(cost.config.cellMs)} ms per store cell, ${cost.config.http.seconds} s per HTTP cell.${cost.walUnavailable ? ` WAL was not measured: ${cost.walUnavailable}.` : ''}

### Per call, store level

Per call: median over repetitions (range). c = concurrent callers.

| op | c | store ${head}|---|---:|---|---:|---:|---:|---:|---:|
${storeRows.join('\n')}

### Per HTTP request

Per request; n = autocannon connections. Server CPU is the store's backends only; client CPU is the
Express process (express-session, the store, Express itself).

| route | n | store ${head}|---|---:|---|---:|---:|---:|---:|---:|
${httpRows.join('\n')}

### After a churn

${churn ? `${int(churn.operations)} operations of the mix on ${int(churn.sessions)} live sessions at ${churn.concurrency} callers, a fresh table per store.` : ''}
Rows counts every row, tombstones and expired ones included, against the live sessions in brackets.
Per operation: WAL bytes, server CPU (us) and transactions, over the whole churn.

| store | HOT updates | dead tuples | rows (live) | table KiB | indexes KiB | total KiB | WAL B/op | server CPU us/op | transactions/op |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|
${churnRows.join('\n')}

Layout experiments toward WAL per write and HOT updates at the floor: bench/LAYOUT.md.`
}

const STORE_NOTES: Partial<Record<StoreName, string>> = {
  floor: ": the plain design: pgxstore's table (token, data, expiry; indexed on expiry for its sweep) and single-row statements, hand-written with prepared statements, plus the JSON step; no tombstones, no validation, no callbacks, no coalescing.",
  core: ': `PostgresStore` (lib/postgres-store.ts) as shipped (coalescing on), with the JSON step done by the benchmark.',
  adapter: ': the express-session store users install (lib/session-store.ts) over the core as shipped.',
  single: ': the same adapter over `new PostgresStore(sql, { coalesce: false })`: one statement per call.',
  'sync-off': ': the adapter as shipped on a pool created with `connection: { synchronous_commit: \'off\' }`; set and touch, and the /write route, only.',
  unlogged: ': the adapter as shipped on a table made `UNLOGGED` after migrate(); set and touch, and the /write route, only.',
}

const TOUCH_AFTER_ON = `The adapter has \`touchAfter\` and runs with its default (an hour when this was written,
  never more than a tenth of the session's lifetime): a touch that would move the stored expiry
  by less is not written. The adapter knows the stored expiry only for a session its get
  returned in the same request, so it applies on the /read route, where it skips **every**
  touch here (the sessions were stored at most minutes earlier, for a day), and not at store
  level, where touch is called with a fresh session object and always writes: store-level
  touch measures the write path, /read the skip`

const DURABILITY = `Every session write of a durable PostgreSQL store waits for its WAL record to reach the disk
(an fdatasync here). Two settings trade that wait away, each for a stated risk, for the session
store only.

- **\`synchronous_commit = off\` on the store's own pool** — the adapter option
  \`synchronousCommit: false\` (with \`connectionString\`, for the pool the adapter opens), or
  \`new PostgresSessionStore({ sql: postgres(url, { connection: { synchronous_commit: 'off' } }) })\`
  with a pool used for nothing else (what the benchmark does), so the application's other writes
  stay durable. A commit returns before its
  WAL is flushed; the WAL writer flushes within 3 x wal_writer_delay (200 ms by default, so
  about 0.6 s). *Risk:* if the PostgreSQL server or its machine crashes (not the app), the session
  writes acknowledged in that last ~0.6 s are lost. The database stays consistent (no
  corruption, no torn rows): a login just before the crash is gone (the user logs in again), a
  touch is gone (the session ends a little earlier), and a **logout (destroy) can be undone**:
  if its tombstone was not flushed but the session row was, that session is valid again after
  the crash. A clean shutdown or restart loses nothing. Replication: the commit no longer waits
  for a synchronous standby either.
- **An UNLOGGED table** — \`ALTER TABLE sessions SET UNLOGGED\` after \`migrate()\` (a rewrite under an
  ACCESS EXCLUSIVE lock; \`SET LOGGED\` undoes it the same way). The table writes no WAL at all.
  *Risk:* after a crash of the server or machine PostgreSQL **empties the table**: every user is
  logged out. It is not copied to streaming replicas (a failover also logs everyone out) and is
  left out of base backups and point-in-time recovery. A clean restart keeps it. Unlike
  synchronous_commit=off, a crash never brings back a destroyed session: everything goes.

Both match what the Redis reference already does here (appendonly=no: a crash loses the writes
since the last snapshot), which is why the relaxed-durability target is set against connect-redis.`

// One paragraph per group of targets, shown when a target of the group was missed.
const touchAfterState = (r: Results) =>
  r.meta.touchAfter ? 'touchAfter, on at its default in this run but only for sessions read in the same request' : 'touchAfter, which the adapter does not have yet'
const WHY: Record<Group, (r: Results) => string> = {
  c1: (r) => '**c=1.** One call in flight means one statement per call for every PostgreSQL store, ' +
    'coalescing or not; the stores differ only in the client work per call and in which connection ' +
    'serves it. The per-round ratios in the lines above span a factor of two or more on this shared ' +
    'machine, so a median within a few percent of 1.00x is a draw rather than a measured deficit ' +
    `(the core alone, without the adapter's argument checks and callback plumbing, made ${x(opsRatio(r, 'destroy', 1, 'core', 'cps'))} on ` +
    'c=1 destroy in the same cells). What would settle it: a quiet machine and more rounds.',
  get: () => '**get at c=16/64.** Coalesced finds send one `= ANY($1)` statement per batch; a miss here ' +
    'means the batch-building and result-matching work in Node outweighed the saved round trips on ' +
    'this loaded machine in this run.',
  writes: (r) => {
    const rate = (store: StoreName, op: Op, c: number) => int(medianOf(storeCell(r, op, c).filter((s) => s.store === store), (s) => s.opsPerSec))
    return '**Durable touch (and set) at c=16.** Every durable commit waits for a WAL flush. ' +
      'connect-pg-simple\'s 10 connections share flushes through group commit (up to 10 commits per flush); ' +
      'the adapter\'s at most two batches in flight hold 16 rows between them. When both are flush-bound that is about ' +
      '16/10 = 1.6x; 3x needs connect-pg-simple to fill barely 5 of its 10 slots per flush, which happens in ' +
      'some rounds (see the range) but not typically. Its touch is also much cheaper than its set ' +
      `(${rate('cps', 'touch', 16)} against ${rate('cps', 'set', 16)} ops/s at c=16), so the touch bar is the higher one. ` +
      `What would close it: more callers per batch (c=64: ${x(opsRatio(r, 'touch', 64, SUBJECT, 'cps'))}), not waiting for the flush ` +
      `(synchronous_commit=off ${x(opsRatio(r, 'touch', 16, 'sync-off', 'cps'))}, UNLOGGED ${x(opsRatio(r, 'touch', 16, 'unlogged', 'cps'))} at c=16), or not writing: ` +
      `${touchAfterState(r)}; a bare store.touch() call, as at store level, always writes.`
  },
  'read-route': (r) => r.meta.touchAfter
    ? '**HTTP /read.** With touchAfter at its default no touch is written on this route, so each request ' +
      'is one get: against Redis the gap left is the cost of a PostgreSQL read (a backend round trip, an ' +
      'index lookup, bytea decoding) against an in-memory GET, on 2 cores shared with the Express app and ' +
      'autocannon; at 10 connections there is little to batch. What would close it: more cores for the ' +
      'database, or a cache in front of it, which would be a different product.'
    : '**HTTP /read.** express-session calls get and then touch on every request: a durable ' +
      'write per request for every PostgreSQL store, against Redis\'s EXPIRE, which no disk flush waits ' +
      'for. At 10 connections there are at most 10 touches to batch, so each flush serves few requests. ' +
      `What would close it: not writing when the expiry would move by little (${touchAfterState(r)}; ` +
      'connect-mongo has the same option), so the route becomes a pure, batched read ' +
      '(get-hit alone is several times connect-pg-simple above).',
  relaxed: (r) => {
    const vsRedis = (store: StoreName) => r.config.httpConnections.map((n) => x(httpRatio(r, 'write', n, store, 'redis'))).join(' / ')
    return '**Relaxed-durability /write.** Over HTTP the write route here is not bound by the WAL flush: ' +
      `against connect-redis (${r.config.httpConnections.join(' / ')} connections) the durable adapter made ${vsRedis(SUBJECT)}, ` +
      `synchronous_commit=off ${vsRedis('sync-off')} and UNLOGGED ${vsRedis('unlogged')}, within each other's noise (single rounds ` +
      'differ by up to 2-3x). What is left is per-request work and CPU, on 2 cores shared by autocannon, the ' +
      'Express process, PostgreSQL\'s backends and other engineers\' test runs: each /write costs two ' +
      'statements (a get, then an upsert, a HOT update since schema 4) against ' +
      'two in-memory Redis commands. The store level shows the same: relaxed set made ' +
      `${x(opsRatio(r, 'set', 16, 'sync-off', 'redis'))} / ${x(opsRatio(r, 'set', 16, 'unlogged', 'redis'))} of connect-redis at c=16 (synchronous_commit=off / UNLOGGED) and ` +
      `${x(opsRatio(r, 'set', 64, 'sync-off', 'redis'))} / ${x(opsRatio(r, 'set', 64, 'unlogged', 'redis'))} at c=64, where batches are larger. What would close it: larger batches, i.e. ` +
      'more concurrent requests per store, and CPU headroom for PostgreSQL (more cores, the load generator ' +
      'on another machine: not measured here); not the store, which cannot save a round trip of ' +
      'express-session\'s get-then-set.'
  },
  cleanup: () => '**Cleanup.** Each DELETE batch of 5,000 rows takes locks, writes WAL for every row and ' +
    'competes for the 2 cores with the gets; the sweep holds one pool connection throughout. ' +
    'Smaller batches, or a pause between batches, would spread the load (a library change: ' +
    'CLEANUP_BATCH_SIZE in lib/postgres-store.ts is a constant today).',
  cost: () => '**Cost.** WAL per write is measured one call at a time (a batch shares its commit record ' +
    'among its rows, so coalesced writes log less per call); HOT needs room on the row\'s page, and the ' +
    'table size counts tombstones, which live as long as the session would have (at least an hour). ' +
    'bench/LAYOUT.md weighs the layouts and tombstone lifetimes that trade these against each other.',
  ...LOST_UPDATE_WHY,
  iteration: () => '**Iteration.** iterate() holds one batch of rows at a time, but postgres.js reads the socket in ' +
    'large chunks and freed Buffers wait for a GC; a smaller batchSize would lower the peak.',
}

if (require.main === module) {
  writeReport(join(__dirname, 'results', 'latest.json'), join(__dirname, '..', 'BENCHMARKS.md'))
    .then(({ path, targetLines }) => process.stdout.write(`${path}\n${targetLines.join('\n')}\n`))
    .catch((error) => {
      process.stderr.write(`report failed: ${error?.stack ?? error}\n`)
      process.exit(1)
    })
}
