// Turns results/latest.json into BENCHMARKS.md: `npm run report` regenerates
// the report from the last run without measuring again.
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { HttpSample, Route } from './http-bench.js'
import type { PgbenchSample } from './pgbench.js'
import { median } from './stats.js'
import { OPS, type Op, type StoreSample } from './store-bench.js'
import type { StoreName } from './stores.js'

interface Results {
  meta: Record<string, any>
  config: Record<string, any> & { concurrencies: number[]; httpConnections: number[] }
  stores: Record<StoreName, string>
  storeSamples: StoreSample[]
  httpSamples: HttpSample[]
  pgbenchSamples: PgbenchSample[]
}

/** The stores the targets are about: this library as users run it, and with coalescing. */
const SUBJECTS: StoreName[] = ['adapter', 'coalesced']

interface Target {
  level: 'store' | 'http'
  what: string
  subject: StoreName
  baseline: StoreName
  ratio: number
  target: number
}

export async function writeReport(jsonPath: string, mdPath: string) {
  const results: Results = JSON.parse(await readFile(jsonPath, 'utf8'))
  const targets = evaluateTargets(results)
  const targetLines = targets.map((t) => targetLine(results, t))
  await writeFile(mdPath, render(results, targetLines))
  return { path: mdPath, targetLines }
}

// --- numbers ---------------------------------------------------------------

type Sample = { store: StoreName; round: number }

/** Median over rounds of x/baseline, each round's pair measured minutes apart at most. */
function pairedRatio<S extends Sample>(samples: S[], value: (s: S) => number, subject: StoreName, baseline: StoreName): number {
  const base = new Map(samples.filter((s) => s.store === baseline).map((s) => [s.round, value(s)]))
  const ratios = samples
    .filter((s) => s.store === subject && base.has(s.round))
    .map((s) => value(s) / base.get(s.round)!)
    .filter(Number.isFinite)
  return ratios.length > 0 ? median(ratios) : NaN
}

const storeCell = (r: Results, op: Op, c: number) => r.storeSamples.filter((s) => s.op === op && s.concurrency === c)
const httpCell = (r: Results, route: Route, n: number) => r.httpSamples.filter((s) => s.route === route && s.connections === n)
const medianOf = <S>(samples: S[], value: (s: S) => number) => median(samples.map(value).filter(Number.isFinite))
const opsRatio = (r: Results, op: Op, c: number, subject: StoreName, baseline: StoreName) =>
  pairedRatio(storeCell(r, op, c), (s) => s.opsPerSec, subject, baseline)
const httpRatio = (r: Results, route: Route, n: number, subject: StoreName, baseline: StoreName) =>
  pairedRatio(httpCell(r, route, n), (s) => s.reqPerSec, subject, baseline)

export function evaluateTargets(r: Results): Target[] {
  const targets: Target[] = []
  const add = (level: Target['level'], what: string, subject: StoreName, baseline: StoreName, ratio: number, target: number) =>
    targets.push({ level, what, subject, baseline, ratio, target })
  for (const subject of SUBJECTS) {
    for (const op of OPS) add('store', `c=1 ${op}`, subject, 'cps', opsRatio(r, op, 1, subject, 'cps'), 1)
    for (const c of [16, 64]) {
      add('store', `c=${c} get-hit`, subject, 'cps', opsRatio(r, 'get-hit', c, subject, 'cps'), 1.3)
      add('store', `c=${c} set`, subject, 'cps', opsRatio(r, 'set', c, subject, 'cps'), 2)
      add('store', `c=${c} touch`, subject, 'cps', opsRatio(r, 'touch', c, subject, 'cps'), 3)
    }
    if (r.httpSamples.length === 0) continue
    for (const n of r.config.httpConnections) {
      add('http', `HTTP read route, ${n} connections`, subject, 'cps', httpRatio(r, 'read', n, subject, 'cps'), 2)
      add('http', `HTTP read route, ${n} connections`, subject, 'redis', httpRatio(r, 'read', n, subject, 'redis'), 0.8)
    }
  }
  return targets
}

function targetLine(r: Results, t: Target): string {
  const met = t.ratio >= t.target
  const short = 1 - t.ratio / t.target
  const shortBy = met ? '' : `; missed by ${short < 0.005 ? 'under 1%' : pct(short)}`
  return `${met ? 'MET ' : 'MISS'}  ${t.what}: ${name(r, t.subject)} = ${x(t.ratio)} ${name(r, t.baseline)} ` +
    `(target >= ${t.target}x${shortBy})`
}

// --- formatting ------------------------------------------------------------

const name = (r: Results, store: StoreName) => r.stores[store] ?? store
const x = (ratio: number) => (Number.isFinite(ratio) ? `${ratio.toFixed(2)}x` : 'n/a')
const pct = (fraction: number) => `${Math.round(fraction * 100)}%`
const int = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a')
const ms = (n: number) => (Number.isFinite(n) ? (n < 10 ? n.toFixed(2) : n.toFixed(1)) : 'n/a')

function table(header: string[], rows: string[][]): string {
  return [
    `| ${header.join(' | ')} |`,
    `|${header.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`,
    ...rows.map((row) => `| ${row.join(' | ')} |`),
  ].join('\n')
}

function storeTable(r: Results, op: Op): string {
  const stores = [...new Set(r.storeSamples.map((s) => s.store))]
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
  const stores = [...new Set(r.httpSamples.map((s) => s.store))]
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

function pgbenchTable(r: Results): string {
  const header = ['statement', 'clients', 'pgbench tps', 'floor', 'PostgresSessionStore', '+ coalescing']
  const rows: string[][] = []
  for (const op of ['get-hit', 'get-miss', 'set', 'touch'] as const) {
    for (const c of r.config.concurrencies) {
      const ceiling = medianOf(r.pgbenchSamples.filter((s) => s.op === op && s.clients === c), (s) => s.tps)
      const share = (store: StoreName) => {
        const rate = medianOf(storeCell(r, op, c).filter((s) => s.store === store), (s) => s.opsPerSec)
        return `${int(rate)} (${Number.isFinite(ceiling) ? pct(rate / ceiling) : 'n/a'})`
      }
      rows.push([op, String(c), int(ceiling), share('floor'), share('adapter'), share('coalesced')])
    }
  }
  return table(header, rows)
}

function render(r: Results, targetLines: string[]): string {
  const m = r.meta
  const pg = m.postgres ?? {}
  const misses = targetLines.filter((line) => line.startsWith('MISS')).length
  return `# Benchmarks

Generated by \`bench/report.ts\` from \`bench/results/latest.json\`: a **${r.config.mode}** run of
${m.startedAt} (${m.minutes} min, commit ${m.commit}${m.uncommitted?.length ? `, plus uncommitted changes to ${m.uncommitted.join(', ')}` : ''}). Regenerate the text with
\`cd bench && npm run report\`; measure again with \`cd bench && npm install && npm run bench\`
(full, at most ~15 minutes) or \`npm run bench -- --quick\` (~3 minutes).

**The machine was shared.** Other engineers ran test suites on the same 2 cores during this
run (load average ${m.loadAverageAtStart?.join(' ')} at the start, ${m.loadAverageAtEnd?.join(' ')}
at the end), so absolute numbers here are low and noisy. Only the ratios between stores
measured side by side mean anything; the run may be re-done on a quiet machine.

## How to read this

- Every claim is a **paired ratio**: in each round every store runs the same cell (operation,
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
  every write of every PostgreSQL store is a durable commit. Redis runs with
  appendonly=${m.redis?.appendonly} (a write is acknowledged before it reaches the disk), and
  MemoryStore keeps nothing: both are references, not competitors on durability.

The stores:

${Object.entries(r.stores).map(([key, label]) => `- **${label}** (\`${key}\`)${STORE_NOTES[key as StoreName] ?? ''}`).join('\n')}

## Targets

${misses === 0 ? 'Every target was met in this run.' : `${misses} of ${targetLines.length} target lines were missed in this run.`}

\`\`\`
${targetLines.join('\n')}
\`\`\`

${WHY}

## Store level

${OPS.map((op) => `### ${op}\n\n${storeTable(r, op)}`).join('\n\n')}

## HTTP level

### /read (get + touch)

${r.httpSamples.length ? httpTable(r, 'read') : 'Not run (--skip-http).'}

### /write (get + set)

${r.httpSamples.length ? httpTable(r, 'write') : 'Not run (--skip-http).'}

## What PostgreSQL itself can do here

pgbench (${m.pgbench ?? 'not available'}) running the core's statements one per transaction
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

const STORE_NOTES: Partial<Record<StoreName, string>> = {
  floor: ': the same SQL as the core, hand-written with prepared statements, plus the JSON step; no validation, no callbacks.',
  core: ': `PostgresStore` (lib/postgres-store.ts) with the JSON step done by the benchmark.',
  adapter: ': the express-session store users install (lib/session-store.ts) over the core.',
  coalesced:
    ': the same adapter over the core with lib/coalescer.ts wired in (bench/coalescing-store.ts, until it lands in the core).',
}

const WHY = `Why a target can be missed:
- **c=1.** One call in flight means one statement per call for every PostgreSQL store, with or
  without coalescing (a lone call goes out at once, as the plain statement); the stores differ
  only in client overhead. postgres.js hands each query to the connection idle the longest, so
  at c=1 it cycles through all 10 connections while pg.Pool reuses one; on a loaded machine
  that, and noise of tens of percent between rounds, decides c=1 either way.
- **set at c=16.** Bound by WAL flushes (durable commits). connect-pg-simple's 10 connections
  already share flushes through PostgreSQL's group commit (up to ~10 commits per flush); with
  one batch in flight, coalescing puts at most 16 rows in a flush at c=16, so about 1.6x is the
  structural ceiling there. At c=64 the batch holds up to 64 rows against connect-pg-simple's
  10 per flush, and the 2x target is met. Allowing two batches in flight (maxInFlight: 2) did
  not change this measurably in a side run.
- **touch.** The same flush arithmetic: 3x needs batches well above 3 x 10 rows, so c=64 reaches
  it (or nearly) and c=16 cannot.
- **HTTP /read.** express-session calls get and then touch on every request: a durable write per
  request for every PostgreSQL store, against Redis's EXPIRE, which no disk flush waits for.
  Coalescing batches those touches, which is what lifts the read route; the remaining lever is
  not writing at all when the expiry would move by little (a touchAfter threshold, as
  connect-mongo has), which would make the read route a pure, batched read.`

if (require.main === module) {
  writeReport(join(__dirname, 'results', 'latest.json'), join(__dirname, '..', 'BENCHMARKS.md'))
    .then(({ path, targetLines }) => process.stdout.write(`${path}\n${targetLines.join('\n')}\n`))
    .catch((error) => {
      process.stderr.write(`report failed: ${error?.stack ?? error}\n`)
      process.exit(1)
    })
}
