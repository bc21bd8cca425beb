// Four app instances, each a process with its own pool and PostgresStore on
// one table, with a cleanup sweep every 200 ms while sessions expire all the
// time. No live session may be lost, no call may fail, and no two sweeps may
// run at once. PostgreSQL itself records each sweep's DELETE statements (a
// statement trigger logs their start and end), so overlaps are measured, not
// inferred from the processes' clocks.
import { execFile } from 'node:child_process'
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import postgres, { type Sql } from 'postgres'
import { PostgresStore } from '../lib/postgres-store'
import { uniqueTable } from './support/backends'

const run = promisify(execFile)
const ROOT = join(__dirname, '..')
const INSTANCES = 4
const DURATION_MS = 8000
const CLEANUP_INTERVAL_MS = 200

interface InstanceResult {
  id: string
  fatal?: string
  writes: number
  reads: number
  sweeps: number
  lost: string[]
  errors: string[]
  backgroundErrors: string[]
}

interface Sweep {
  pid: number
  started: Date
  ended: Date
}

const url = process.env.TEST_DATABASE_URL
// Real server only: PGlite serves all connections from one backend, so it
// cannot show what several processes do to each other (stack-findings).
const describeOnServer = url ? describe : describe.skip

describeOnServer('many instances on one table', () => {
  let sql: Sql
  let buildDir: string
  const table = uniqueTable('instances')
  const logTable = `${table}_sweeps`
  const logFunction = `${table}_log_sweep`

  beforeAll(async () => {
    sql = postgres(url!, { max: 2, onnotice: () => {} })
    buildDir = await buildLibrary()
    await new PostgresStore(sql, { table, cleanupInterval: 0 }).migrate()
    await logSweeps()
  }, 60_000)

  afterAll(async () => {
    await sql.unsafe(`DROP TABLE IF EXISTS "${table}"`)
    await sql.unsafe(`DROP TABLE IF EXISTS "${logTable}"`)
    await sql.unsafe(`DROP FUNCTION IF EXISTS "${logFunction}"()`)
    await sql.end({ timeout: 5 })
    rmSync(buildDir, { recursive: true, force: true })
  })

  test('lose no session, fail no call, and never sweep at the same time', async () => {
    const results = await Promise.all(Array.from({ length: INSTANCES }, (_, id) => startInstance(String(id))))
    const sweeps = await sql.unsafe<Sweep[]>(`SELECT pid, started, ended FROM "${logTable}" ORDER BY started`)
    const overlaps = overlapping(sweeps)
    console.log(
      `${INSTANCES} instances, ${DURATION_MS} ms, cleanup every ${CLEANUP_INTERVAL_MS} ms: ` +
        `${sum(results, 'writes')} writes, ${sum(results, 'reads')} reads, ${sum(results, 'sweeps')} sweeps ` +
        `(${sweeps.length} sweep DELETE statements from ${new Set(sweeps.map((s) => s.pid)).size} backends), ` +
        `${overlaps.length} overlapping pairs`,
    )

    for (const result of results) {
      expect(result.fatal).toBeUndefined()
      expect(result.errors).toEqual([])
      expect(result.backgroundErrors).toEqual([])
      expect(result.lost).toEqual([])
      expect(result.writes).toBeGreaterThan(100)
      expect(result.sweeps).toBeGreaterThan(DURATION_MS / CLEANUP_INTERVAL_MS / 2)
    }
    // The sweeps did delete expired sessions, from more than one instance.
    expect(new Set(sweeps.map((sweep) => sweep.pid)).size).toBeGreaterThan(1)
    expect(overlaps).toEqual([])
  }, 60_000)

  /** The library compiled on its own, so the shared dist/ is left alone. */
  async function buildLibrary(): Promise<string> {
    const dir = mkdtempSync(join(tmpdir(), 'esp-instances-'))
    await run(join(ROOT, 'node_modules/.bin/tsc'), ['-p', ROOT, '--outDir', join(dir, 'dist')])
    copyFileSync(join(ROOT, 'schema.sql'), join(dir, 'schema.sql'))
    return dir
  }

  // A statement trigger sees every DELETE on the table; it logs the sweep's
  // batched ones (`expiry <= now()`) with the statement's start and end.
  async function logSweeps(): Promise<void> {
    await sql.unsafe(`CREATE TABLE "${logTable}" (pid int, started timestamptz, ended timestamptz)`)
    await sql.unsafe(`
      CREATE FUNCTION "${logFunction}"() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF current_query() LIKE '%expiry <= now()%' THEN
          INSERT INTO "${logTable}" VALUES (pg_backend_pid(), statement_timestamp(), clock_timestamp());
        END IF;
        RETURN NULL;
      END $$`)
    await sql.unsafe(`
      CREATE TRIGGER log_sweep AFTER DELETE ON "${table}"
      FOR EACH STATEMENT EXECUTE FUNCTION "${logFunction}"()`)
  }

  async function startInstance(id: string): Promise<InstanceResult> {
    const { stdout } = await run(process.execPath, [join(__dirname, 'support/store-instance.cjs')], {
      cwd: ROOT,
      env: {
        ...process.env,
        LIB_DIR: join(buildDir, 'dist'),
        DATABASE_URL: url,
        TABLE: table,
        INSTANCE_ID: id,
        DURATION_MS: String(DURATION_MS),
        CLEANUP_INTERVAL_MS: String(CLEANUP_INTERVAL_MS),
      },
    })
    return JSON.parse(stdout.trim().split('\n').pop()!)
  }
})

/** Pairs of sweeps from different backends whose DELETE statements ran at the same time. */
function overlapping(sweeps: Sweep[]): [Sweep, Sweep][] {
  const pairs: [Sweep, Sweep][] = []
  for (let i = 0; i < sweeps.length; i++) {
    for (let j = i + 1; j < sweeps.length && sweeps[j].started < sweeps[i].ended; j++) {
      if (sweeps[j].pid !== sweeps[i].pid) pairs.push([sweeps[i], sweeps[j]])
    }
  }
  return pairs
}

function sum(results: InstanceResult[], key: 'writes' | 'reads' | 'sweeps'): number {
  return results.reduce((total, result) => total + result[key], 0)
}
