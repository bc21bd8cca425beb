// `npm run bench` (full) or `npm run bench -- --quick`: store level, HTTP
// level, pgbench, cleanup, iteration and cost in one run; raw samples go to
// results/latest.json and BENCHMARKS.md at the repo root is generated from it.
// `--cleanup`, `--iteration`, `--cost`, `--shared-session` and/or `--fastify`
// run only those sections and replace just them in latest.json;
// `--skip-<section>` leaves one out.
import { execFileSync } from 'node:child_process'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { cpus, loadavg, release, totalmem } from 'node:os'
import { join } from 'node:path'
import postgres from 'postgres'
import { createClient } from 'redis'
import { runCleanupBench } from './cleanup-bench.js'
import { runCostBench } from './cost-bench.js'
import { runHttpBench, type Route } from './http-bench.js'
import { runFastifyStatements } from './fastify-statements.js'
import { runIterationBench } from './iterate-bench.js'
import { pgbenchAvailable, runPgbench } from './pgbench.js'
import { writeReport } from './report.js'
import { runSharedSessionBench, SHARED_STORES } from './shared-session.js'
import { runStoreBench, type Op } from './store-bench.js'
import { DATABASE_URL, openStore, POOL_SIZE, REDIS_URL, STORE_LABELS, type BenchStore, type StoreName } from './stores.js'

const PRELOADED_SESSIONS = 10_000

const MODES = {
  quick: {
    store: { rounds: 3, cellMs: 150 },
    http: { rounds: 2, seconds: 1, sessionCount: 2_000 },
    pgbench: { rounds: 1, seconds: 1 },
    cleanup: { expiredRows: 100_000, liveSessions: PRELOADED_SESSIONS, idleMs: 2_000, contendedRows: 30_000, maxSweepMs: 60_000 },
    iteration: { rows: 100_000, allRows: 100_000, timeoutMs: 120_000 },
    cost: {
      sessions: PRELOADED_SESSIONS, repetitions: 3, cellCalls: 1_000, cellMs: 1_500,
      http: { connections: [10, 64], seconds: 1, sessionCount: 2_000 },
      churn: { operations: 20_000, sessions: 1_000, concurrency: 16 },
    },
    sharedSession: { rounds: 5, burst: { rounds: 1, seconds: 0.5, inFlight: 64 }, sessionCount: 5_000 },
    fastify: { requests: 200, cookies: 50 },
  },
  full: {
    store: { rounds: 5, cellMs: 500 },
    http: { rounds: 3, seconds: 3, sessionCount: PRELOADED_SESSIONS },
    pgbench: { rounds: 2, seconds: 2 },
    cleanup: { expiredRows: 1_000_000, liveSessions: PRELOADED_SESSIONS, idleMs: 5_000, contendedRows: 100_000, maxSweepMs: 240_000 },
    iteration: { rows: 1_000_000, allRows: 100_000, timeoutMs: 120_000 },
    cost: {
      sessions: PRELOADED_SESSIONS, repetitions: 3, cellCalls: 3_000, cellMs: 3_000,
      http: { connections: [10, 64], seconds: 2, sessionCount: PRELOADED_SESSIONS },
      churn: { operations: 200_000, sessions: PRELOADED_SESSIONS, concurrency: 16 },
    },
    sharedSession: { rounds: 10, burst: { rounds: 2, seconds: 1, inFlight: 64 }, sessionCount: PRELOADED_SESSIONS },
    fastify: { requests: 1_000, cookies: 200 },
  },
}
const COST_CONCURRENCIES = [1, 16]
const CLEANUP_CONCURRENCY = 16
const CONTENDING_STORES = 3
const ITERATE_BATCH_SIZE = 1000
// Issue 11's scenario: N requests of one session at once, each after a 0-30 ms delay (20 is the issue's own N).
const SHARED_COUNTS = [2, 8, 20, 32]
const SHARED_NESTED_COUNTS = [8, 20]
const SHARED_MAX_DELAY_MS = 30

const STORE_LEVEL: StoreName[] = ['memory', 'redis', 'cps', 'floor', 'core', 'adapter', 'core-pg', 'adapter-pg', 'single', 'sync-off', 'unlogged']
// The relaxed-durability variants only change writes: they run the write operations and route.
const RELAXED_OPS: Op[] = ['set', 'touch']
const HTTP_LEVEL: Record<Route, StoreName[]> = {
  read: ['memory', 'redis', 'cps', 'adapter', 'adapter-pg', 'single'],
  // merge-off beside adapter: what merging costs a write that meets no conflict.
  write: ['memory', 'redis', 'cps', 'adapter', 'adapter-pg', 'single', 'sync-off', 'unlogged', 'merge-off'],
}
const CONCURRENCIES = [1, 16, 64]
const HTTP_CONNECTIONS = [10, 50]

async function main() {
  const args = new Set(process.argv.slice(2))
  const mode = args.has('--quick') ? 'quick' : 'full'
  const only = ['--cleanup', '--iteration', '--cost', '--shared-session', '--fastify'].filter((flag) => args.has(flag))
  const config = MODES[mode]
  const log = (line: string) => process.stdout.write(`[${new Date().toISOString().slice(11, 19)}] ${line}\n`)
  const startedAt = new Date()
  const meta = await describeMachine(mode)
  log(`${mode} run${only.length ? ` of ${only.join(' ')} only` : ''}; load average ${meta.loadAverageAtStart.join(' ')}`)
  const runs = (flag: string) => (only.length === 0 ? !args.has(`--skip-${flag.slice(2)}`) : only.includes(flag))

  const file = join(__dirname, 'results', 'latest.json')
  const results = only.length === 0 ? {} : JSON.parse(await readFile(file, 'utf8'))
  if (only.length === 0) {
    results.storeSamples = await storeLevel(config.store, log)
    results.httpSamples = runs('--http')
      ? await runHttpBench({ stores: HTTP_LEVEL, connections: HTTP_CONNECTIONS, log, ...config.http })
      : []
    const pgbench = runs('--pgbench') ? await pgbenchAvailable() : null
    results.pgbenchSamples = pgbench
      ? await runPgbench({ clients: CONCURRENCIES, rows: PRELOADED_SESSIONS, log, ...config.pgbench })
      : []
    results.meta = { ...meta, pgbench }
    results.config = { mode, ...config, concurrencies: CONCURRENCIES, httpConnections: HTTP_CONNECTIONS, preloadedSessions: PRELOADED_SESSIONS, poolSize: POOL_SIZE }
  }
  if (runs('--shared-session')) {
    const shared = await runSharedSessionBench({
      stores: SHARED_STORES, counts: SHARED_COUNTS, nestedCounts: SHARED_NESTED_COUNTS, maxDelayMs: SHARED_MAX_DELAY_MS, log,
      ...config.sharedSession,
    })
    results.sharedSession = {
      ...shared, mode, commit: gitCommit(), measuredAt: new Date().toISOString(),
      config: { ...config.sharedSession, stores: SHARED_STORES, counts: SHARED_COUNTS, nestedCounts: SHARED_NESTED_COUNTS, maxDelayMs: SHARED_MAX_DELAY_MS },
    }
  }
  if (runs('--fastify')) {
    const statements = await runFastifyStatements({ ...config.fastify, log })
    results.fastifyStatements = { ...statements, mode, commit: gitCommit(), measuredAt: new Date().toISOString(), config: config.fastify }
  }
  // Last in a full run: the bulk inserts and the sweep load the server for a while.
  if (runs('--cleanup')) {
    const cleanup = await runCleanupBench({ ...config.cleanup, concurrency: CLEANUP_CONCURRENCY, contendingStores: CONTENDING_STORES, log })
    results.cleanup = { ...cleanup, mode, measuredAt: new Date().toISOString() }
  }
  if (runs('--iteration')) {
    const iteration = await runIterationBench({ ...config.iteration, batchSize: ITERATE_BATCH_SIZE, log })
    results.iteration = { ...iteration, mode, measuredAt: new Date().toISOString() }
  }
  if (runs('--cost')) {
    const cost = await runCostBench({ ...config.cost, concurrencies: COST_CONCURRENCIES, log })
    results.cost = { ...cost, mode, config: config.cost, commit: gitCommit(), measuredAt: new Date().toISOString() }
  }
  const minutes = Math.round((Date.now() - startedAt.getTime()) / 600) / 100
  if (only.length === 0) {
    Object.assign(results.meta, {
      startedAt: startedAt.toISOString(), minutes, loadAverageAtEnd: loadavg().map((n) => Math.round(n * 100) / 100),
      touchAfterAtEnd: await adapterHasTouchAfter(), uncommittedAtEnd: uncommittedLibraryFiles(),
    })
  }
  results.stores = STORE_LABELS
  await mkdir(join(__dirname, 'results'), { recursive: true })
  await writeFile(file, JSON.stringify(results, null, 1) + '\n')
  log(`raw results: ${file} (${minutes} min)`)
  const report = await writeReport(file, join(__dirname, '..', 'BENCHMARKS.md'))
  log(`report: ${report.path}`)
  process.stdout.write('\n' + report.targetLines.join('\n') + '\n')
}

async function storeLevel(config: { rounds: number; cellMs: number }, log: (line: string) => void) {
  const stores: BenchStore[] = []
  try {
    for (const name of STORE_LEVEL) stores.push(await openStore(name))
    return await runStoreBench({
      stores, concurrencies: CONCURRENCIES, preloadCount: PRELOADED_SESSIONS, log, ...config,
      only: { 'sync-off': RELAXED_OPS, unlogged: RELAXED_OPS },
    })
  } finally {
    for (const store of stores) await store.close()
  }
}

async function describeMachine(mode: string) {
  const sql = postgres(DATABASE_URL, { max: 1, onnotice: () => {} })
  const redis = createClient({ url: REDIS_URL })
  try {
    const [pg] = await sql`
      SELECT version() AS version, current_setting('synchronous_commit') AS synchronous_commit,
        current_setting('fsync') AS fsync, current_setting('shared_buffers') AS shared_buffers,
        current_setting('wal_sync_method') AS wal_sync_method, current_setting('max_connections') AS max_connections`
    await redis.connect()
    const redisInfo = await redis.info('server')
    const appendonly = await redis.configGet('appendonly')
    return {
      mode,
      node: process.version,
      os: `${process.platform} ${release()}`,
      cpu: `${cpus().length} x ${cpus()[0]?.model ?? 'unknown'}`,
      memoryGiB: Math.round(totalmem() / 2 ** 30),
      loadAverageAtStart: loadavg().map((n) => Math.round(n * 100) / 100),
      postgres: pg,
      redis: { version: /redis_version:(\S+)/.exec(redisInfo)?.[1], appendonly: appendonly.appendonly },
      packages: await packageVersions(['connect-pg-simple', 'pg', 'connect-redis', 'redis', 'express', 'express-session', 'postgres', 'autocannon']),
      commit: gitCommit(),
      touchAfter: await adapterHasTouchAfter(),
      uncommitted: uncommittedLibraryFiles(),
    }
  } finally {
    await sql.end({ timeout: 5 })
    if (redis.isOpen) await redis.close()
  }
}

// The adapter option the lead is adding; the report says whether this run had it
// (at the start and at the end: HTTP servers load the library when they start).
async function adapterHasTouchAfter(): Promise<boolean> {
  return (await readFile(join(__dirname, '..', 'lib', 'session-store.ts'), 'utf8')).includes('touchAfter')
}

async function packageVersions(names: string[]): Promise<Record<string, string>> {
  const versions: Record<string, string> = {}
  for (const name of names) {
    const json = JSON.parse(await readFile(join(__dirname, 'node_modules', name, 'package.json'), 'utf8'))
    versions[name] = json.version
  }
  return versions
}

/** Library files that differ from the commit: the run measured them as they were on disk. */
function uncommittedLibraryFiles(): string[] {
  try {
    const status = execFileSync('git', ['status', '--porcelain', '--', 'lib', 'schema.sql'], { cwd: join(__dirname, '..'), encoding: 'utf8' })
    return status.split('\n').filter(Boolean).map((line) => line.slice(3))
  } catch {
    return []
  }
}

function gitCommit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: __dirname, encoding: 'utf8' }).trim()
  } catch {
    return 'unknown'
  }
}

main().catch((error) => {
  process.stderr.write(`benchmark failed: ${error?.stack ?? error}\n`)
  process.exit(1)
})
