// `npm run bench` (full, at most ~15 min) or `npm run bench -- --quick` (~3 min):
// store level, HTTP level and pgbench in one run; raw samples go to
// results/latest.json and BENCHMARKS.md at the repo root is generated from it.
import { execFileSync } from 'node:child_process'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { cpus, loadavg, release, totalmem } from 'node:os'
import { join } from 'node:path'
import postgres from 'postgres'
import { createClient } from 'redis'
import { runHttpBench } from './http-bench.js'
import { pgbenchAvailable, runPgbench } from './pgbench.js'
import { writeReport } from './report.js'
import { runStoreBench } from './store-bench.js'
import { DATABASE_URL, openStore, POOL_SIZE, REDIS_URL, STORE_LABELS, type BenchStore, type StoreName } from './stores.js'

const PRELOADED_SESSIONS = 10_000

const MODES = {
  quick: {
    store: { rounds: 3, cellMs: 150 },
    http: { rounds: 2, seconds: 1, sessionCount: 2_000 },
    pgbench: { rounds: 1, seconds: 1 },
  },
  full: {
    store: { rounds: 5, cellMs: 600 },
    http: { rounds: 3, seconds: 3, sessionCount: PRELOADED_SESSIONS },
    pgbench: { rounds: 2, seconds: 3 },
  },
}

const STORE_LEVEL: StoreName[] = ['memory', 'redis', 'cps', 'floor', 'core', 'adapter', 'coalesced']
const HTTP_LEVEL: StoreName[] = ['memory', 'redis', 'cps', 'adapter', 'coalesced']
const CONCURRENCIES = [1, 16, 64]
const HTTP_CONNECTIONS = [10, 50]

async function main() {
  const args = new Set(process.argv.slice(2))
  const mode = args.has('--quick') ? 'quick' : 'full'
  const config = MODES[mode]
  const log = (line: string) => process.stdout.write(`[${new Date().toISOString().slice(11, 19)}] ${line}\n`)
  const startedAt = new Date()
  const meta = await describeMachine(mode)
  log(`${mode} run; load average ${meta.loadAverageAtStart.join(' ')}`)

  const stores: BenchStore[] = []
  let storeSamples
  try {
    for (const name of STORE_LEVEL) stores.push(await openStore(name))
    storeSamples = await runStoreBench({
      stores, concurrencies: CONCURRENCIES, preloadCount: PRELOADED_SESSIONS, log, ...config.store,
    })
  } finally {
    for (const store of stores) await store.close()
  }

  const httpSamples = args.has('--skip-http')
    ? []
    : await runHttpBench({ stores: HTTP_LEVEL, connections: HTTP_CONNECTIONS, log, ...config.http })

  const pgbench = args.has('--skip-pgbench') ? null : await pgbenchAvailable()
  const pgbenchSamples = pgbench
    ? await runPgbench({ clients: CONCURRENCIES, rows: PRELOADED_SESSIONS, log, ...config.pgbench })
    : []

  const results = {
    meta: {
      ...meta,
      pgbench,
      startedAt: startedAt.toISOString(),
      minutes: Math.round((Date.now() - startedAt.getTime()) / 600) / 100,
      loadAverageAtEnd: loadavg().map((n) => Math.round(n * 100) / 100),
    },
    config: { mode, ...config, concurrencies: CONCURRENCIES, httpConnections: HTTP_CONNECTIONS, preloadedSessions: PRELOADED_SESSIONS, poolSize: POOL_SIZE },
    stores: STORE_LABELS,
    storeSamples,
    httpSamples,
    pgbenchSamples,
  }
  await mkdir(join(__dirname, 'results'), { recursive: true })
  const file = join(__dirname, 'results', 'latest.json')
  await writeFile(file, JSON.stringify(results, null, 1) + '\n')
  log(`raw results: ${file}`)
  const report = await writeReport(file, join(__dirname, '..', 'BENCHMARKS.md'))
  log(`report: ${report.path}`)
  process.stdout.write('\n' + report.targetLines.join('\n') + '\n')
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
      uncommitted: uncommittedLibraryFiles(),
    }
  } finally {
    await sql.end({ timeout: 5 })
    if (redis.isOpen) await redis.close()
  }
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
