// The database's own ceiling: pgbench running the store's statements
// (-M prepared, one statement per transaction, as the store sends them) on a
// table in the store's schema with the same number and size of rows.
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import postgres from 'postgres'
import { PostgresStore } from '../lib/postgres-store.js'
import { newSession } from './sessions.js'
import { DATABASE_URL } from './stores.js'

const run = promisify(execFile)

export const PGBENCH_OPS = ['get-hit', 'get-miss', 'set', 'touch'] as const
export type PgbenchOp = (typeof PGBENCH_OPS)[number]

export interface PgbenchSample {
  op: PgbenchOp
  clients: number
  round: number
  tps: number
  latencyAvgMs: number
}

export interface PgbenchOptions {
  clients: number[]
  rounds: number
  seconds: number
  rows: number
  log: (line: string) => void
}

export async function pgbenchAvailable(): Promise<string | null> {
  try {
    const { stdout } = await run('pgbench', ['--version'])
    return stdout.trim()
  } catch {
    return null
  }
}

export async function runPgbench(options: PgbenchOptions): Promise<PgbenchSample[]> {
  const { clients, rounds, seconds, rows, log } = options
  const url = new URL(DATABASE_URL)
  const sql = postgres(DATABASE_URL, { max: 1, onnotice: () => {} })
  const table = `bench_pgbench_${process.pid}_${Date.now().toString(36)}`
  const dir = await mkdtemp(join(tmpdir(), 'pgbench-'))
  try {
    await new PostgresStore(sql, { table, cleanupInterval: 0 }).migrate()
    const data = Buffer.from(JSON.stringify(newSession(1))).toString('hex')
    await sql.unsafe(
      `INSERT INTO "${table}" SELECT 'pgb-' || n, '\\x${data}'::bytea, now() + interval '1 day' FROM generate_series(1, ${rows}) AS n`,
    )
    const scripts = scriptsFor(`"${table}"`, rows, data)
    const samples: PgbenchSample[] = []
    for (let round = 0; round < rounds; round++) {
      for (const op of PGBENCH_OPS) {
        const file = join(dir, `${op}.sql`)
        await writeFile(file, scripts[op])
        let lastTps = NaN
        for (const c of clients) {
          // A time limit (-T) includes connecting, which for 64 clients on a loaded
          // machine can take the whole run; a transaction count per client does not.
          const length = Number.isFinite(lastTps)
            ? ['-t', String(Math.max(20, Math.ceil((lastTps * seconds) / c)))]
            : ['-T', String(seconds)]
          const args = [
            '-h', url.hostname, '-p', url.port || '5432', '-U', decodeURIComponent(url.username) || 'postgres',
            '-n', '-M', 'prepared', '-c', String(c), '-j', String(Math.min(c, 2)), ...length, '-f', file,
            url.pathname.slice(1),
          ]
          const { stdout } = await run('pgbench', args, { timeout: (seconds * 10 + 60) * 1000 })
          const result = parse(stdout)
          samples.push({ op, clients: c, round, ...result })
          lastTps = result.tps
        }
      }
      log(`pgbench round ${round + 1}/${rounds} done`)
    }
    return samples
  } finally {
    await sql.unsafe(`DROP TABLE IF EXISTS "${table}"`).catch(() => {})
    await sql.end({ timeout: 5 })
    await rm(dir, { recursive: true, force: true })
  }
}

// The core's statements, with pgbench variables for the token and expiry.
function scriptsFor(table: string, rows: number, hexData: string): Record<PgbenchOp, string> {
  const hit = `\\set n random(1, ${rows})\n`
  const miss = `\\set n random(${rows + 1}, ${rows * 2})\n`
  return {
    'get-hit': `${hit}SELECT data, expiry FROM ${table} WHERE token = 'pgb-' || :n AND expiry > now();\n`,
    'get-miss': `${miss}SELECT data, expiry FROM ${table} WHERE token = 'pgb-' || :n AND expiry > now();\n`,
    set:
      `${hit}INSERT INTO ${table} (token, data, expiry) VALUES ('pgb-' || :n, '\\x${hexData}'::bytea, now() + interval '1 day') ` +
      'ON CONFLICT (token) DO UPDATE SET data = EXCLUDED.data, expiry = EXCLUDED.expiry;\n',
    touch: `${hit}UPDATE ${table} SET expiry = now() + interval '1 day' WHERE token = 'pgb-' || :n AND expiry > now();\n`,
  }
}

// A run that processed nothing (connecting 64 clients can outlast a short
// run on a loaded machine) has no tps line: it counts as no measurement.
function parse(stdout: string): { tps: number; latencyAvgMs: number } {
  const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(stdout)
  const latency = /latency average = ([\d.]+) ms/.exec(stdout)
  return { tps: tps ? Number(tps[1]) : NaN, latencyAvgMs: latency ? Number(latency[1]) : NaN }
}
