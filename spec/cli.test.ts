// The command line, run as a user runs it: the compiled dist/cli.js in a
// child process, against real PostgreSQL (PGlite, and the server when
// TEST_DATABASE_URL is set).
import { execFile } from 'node:child_process'
import { createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import connectPgSimple from 'connect-pg-simple'
import session from 'express-session'
import pg from 'pg'
import postgres, { type Sql } from 'postgres'
import { PostgresStore, type PostgresStoreOptions } from '../lib/postgres-store'
import { PostgresSessionStore } from '../lib/session-store'
import { hashToken } from '../lib/tokens'
import { buildCopy, type BuildCopy } from './support/build-copy'
import { describeEachBackend, realDriverBackends, uniqueTable } from './support/backends'

interface Run {
  status: number
  stdout: string
  stderr: string
}

let build: BuildCopy

beforeAll(() => {
  build = buildCopy()
}, 60_000)
afterAll(() => build.remove())

/** Runs the CLI with args and these variables of its own; DATABASE_URL and the secret are absent unless given. */
function cli(args: string[], env: { DATABASE_URL?: string; EXPRESS_SESSION_POSTGRES_SECRET?: string } = {}): Promise<Run> {
  const { DATABASE_URL: _, EXPRESS_SESSION_POSTGRES_SECRET: __, ...inherited } = process.env
  return new Promise((resolve) => {
    execFile(process.execPath, [join(build.dir, 'dist', 'cli.js'), ...args], { env: { ...inherited, ...env }, timeout: 20_000 },
      (error, stdout, stderr) => resolve({ status: exitCode(error), stdout, stderr }))
  })
}

/** The exit status; -1 when the CLI was killed (it hung past the timeout). */
function exitCode(error: { code?: unknown } | null): number {
  if (!error) return 0
  return typeof error.code === 'number' ? error.code : -1
}

/** A failure: the exit status, and exactly one line on stderr naming the problem. */
function expectFailure(run: Run, status: number, reason: RegExp): void {
  expect(run.status).toBe(status)
  expect(run.stdout).toBe('')
  expect(run.stderr).toMatch(/^express-session-postgres: [^\n]+\n$/)
  expect(run.stderr).toMatch(reason)
}

describe('express-session-postgres (no database needed)', () => {
  it('prints the usage with --help and -h, and exits 0', async () => {
    for (const flag of ['--help', '-h']) {
      const run = await cli([flag])
      expect(run.status).toBe(0)
      expect(run.stdout).toMatch(/^Usage: express-session-postgres <command>/)
      for (const command of ['schema', 'migrate', 'prune', 'stats']) expect(run.stdout).toContain(`  ${command} `)
    }
  })

  it('prints schema.sql for the default table and for --table, quoted', async () => {
    const plain = await cli(['schema'])
    expect(plain.status).toBe(0)
    expect(plain.stdout).toContain('CREATE TABLE IF NOT EXISTS "sessions" (')
    expect(plain.stdout).toContain('CREATE INDEX IF NOT EXISTS "sessions_sweep_idx" ON "sessions" (sweep_at);')
    expect(plain.stdout).toContain('DROP INDEX IF EXISTS "sessions_expiry_idx";')

    const qualified = await cli(['schema', '--table', 'app.web_sessions'])
    expect(qualified.stdout).toContain('CREATE TABLE IF NOT EXISTS "app"."web_sessions" (')
    expect(qualified.stdout).toContain('"web_sessions_sweep_idx" ON "app"."web_sessions" (sweep_at)')
    expect(qualified.stdout).toContain('DROP INDEX IF EXISTS "app"."web_sessions_expiry_idx";')
    expect(qualified.stdout).not.toMatch(/\bsessions\b(?!_)/)
  })

  it('exits 2 with one line for an unknown command, no command, or an unknown option', async () => {
    expectFailure(await cli(['vacuum']), 2, /unknown command "vacuum"/)
    expectFailure(await cli([]), 2, /no command given/)
    expectFailure(await cli(['stats', '--verbose']), 2, /Unknown option '--verbose'/)
    expectFailure(await cli(['stats', 'prune']), 2, /expected one command, got 2/)
  })

  it('exits 2 for an unknown driver, and for import without a known source', async () => {
    expectFailure(await cli(['stats', '--driver', 'mysql']), 2, /--driver must be postgres or pg, got "mysql"/)
    expectFailure(await cli(['import', '--url', 'postgres://127.0.0.1:1/x']), 2, /import needs --from connect-pg-simple/)
    expectFailure(await cli(['import', '--from', 'connect-redis', '--url', 'postgres://127.0.0.1:1/x']), 2, /cannot import from "connect-redis"/)
    expectFailure(await cli(['import', '--from', 'connect-pg-simple', '--from-table', 'a.b.c']), 2, /table must be/)
  })

  it('exits 2 for a bad table name before connecting', async () => {
    expectFailure(await cli(['stats', '--table', 'a.b.c', '--url', 'postgres://127.0.0.1:1/x']), 2, /table must be/)
  })

  it('exits 2 when neither DATABASE_URL nor --url names a database', async () => {
    for (const command of ['migrate', 'prune', 'stats']) {
      expectFailure(await cli([command]), 2, /no database: set DATABASE_URL or pass --url/)
    }
  })

  it('exits 2 for a connection string that is not a URL, without echoing it', async () => {
    const run = await cli(['stats', '--url', 'postgres://user:hunter2@[::1/db'])
    expectFailure(run, 2, /not a valid URL/)
    expect(run.stderr).not.toContain('hunter2')
  })

  it.each(['postgres', 'pg'])('exits 1 with one line when nothing listens, from --url or DATABASE_URL (--driver %s)', async (driver) => {
    const url = 'postgres://user:hunter2@127.0.0.1:1/db'
    for (const run of [await cli(['prune', '--url', url, '--driver', driver]), await cli(['prune', '--driver', driver], { DATABASE_URL: url })]) {
      expectFailure(run, 1, /ECONNREFUSED/)
      expect(run.stderr).not.toContain('hunter2')
    }
  })

  it('masks the password wherever the driver repeats it', async () => {
    // The host name contains the password, so the DNS error would print it.
    const run = await cli(['stats', '--url', 'postgres://user:hunter2@no-such-host-hunter2.invalid/db'])
    expectFailure(run, 1, /ENOTFOUND no-such-host-\*\*\*\.invalid/)
    expect(run.stderr).not.toContain('hunter2')
  })

  describe('against a port that accepts connections and never answers', () => {
    let silent: Server
    const sockets: Socket[] = []
    beforeAll(async () => {
      silent = createServer((socket) => sockets.push(socket))
      await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
    })
    afterAll(async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => silent.close(resolve))
    })

    it.each(['postgres', 'pg'])('gives up after the 5 s connect timeout instead of hanging (--driver %s)', async (driver) => {
      const { port } = silent.address() as { port: number }
      const started = Date.now()
      const run = await cli(['stats', '--url', `postgres://user:hunter2@127.0.0.1:${port}/db`, '--driver', driver])
      // Whichever says so first: the CLI's own deadline, or pg's connectionTimeoutMillis.
      expectFailure(run, 1, /did not answer within 5 s|connection timeout/)
      expect(Date.now() - started).toBeLessThan(15_000)
    })
  })
})

// The connection string of each backend, as a user would pass it to --url.
const URL_VARIABLES: Record<string, string> = {
  PGlite: 'PGLITE_TEST_URL',
  'PostgreSQL server': 'TEST_DATABASE_URL',
  PgBouncer: 'TEST_PGBOUNCER_URL',
}

describeEachBackend('express-session-postgres', (backend) => {
  /** The CLI on this backend's driver. */
  const onDriver = (args: string[], env?: { DATABASE_URL?: string }) =>
    cli([...args, '--driver', backend.driver === 'pg' ? 'pg' : 'postgres'], env)
  let sql: Sql
  let url: string
  const created: string[] = []

  /** A table name this test owns; dropped after the file. */
  function ownTable(): string {
    const table = uniqueTable('cli')
    created.push(table)
    return table
  }

  beforeAll(() => {
    sql = backend.connect()
    url = process.env[URL_VARIABLES[backend.name]]!
  })
  afterAll(async () => {
    for (const table of created) await sql.unsafe(`DROP TABLE IF EXISTS "${table}"`)
    await sql.end({ timeout: 5 })
  })

  it('migrate creates the table, and a second run changes nothing', async () => {
    const table = ownTable()
    const first = await onDriver(['migrate', '--url', url, '--table', table])
    expect(first).toEqual({ status: 0, stdout: `table ${table} is ready\n`, stderr: '' })

    const store = new PostgresStore(sql, { table, cleanupInterval: 0 })
    await store.commit('kept', Buffer.from('data'), new Date(Date.now() + 3600_000))
    const second = await onDriver(['migrate', '--url', url, '--table', table])
    expect(second).toEqual(first)
    expect(await store.find('kept')).toEqual(Buffer.from('data'))
  })

  it('reads the connection string from DATABASE_URL', async () => {
    const table = ownTable()
    expect((await onDriver(['migrate', '--table', table], { DATABASE_URL: url })).status).toBe(0)
    expect(await sql`SELECT to_regclass(${table}) IS NOT NULL AS exists`).toEqual([{ exists: true }])
  })

  it('prints a schema that creates a table the store works with', async () => {
    const table = ownTable()
    const schema = await onDriver(['schema', '--table', table])
    await sql.unsafe(schema.stdout)
    const store = new PostgresStore(sql, { table, cleanupInterval: 0 })
    await store.commit('tok', Buffer.from('x'), new Date(Date.now() + 3600_000))
    expect(await store.find('tok')).toEqual(Buffer.from('x'))
  })

  describe('on a table with 2 active and 3 expired sessions', () => {
    let table: string
    let store: PostgresStore

    beforeEach(async () => {
      table = ownTable()
      store = new PostgresStore(sql, { table, cleanupInterval: 0 })
      await store.migrate()
      const hourAgo = new Date(Date.now() - 3600_000)
      const inAnHour = new Date(Date.now() + 3600_000)
      for (const token of ['a1', 'a2']) await store.commit(token, Buffer.from(token), inAnHour)
      for (const token of ['e1', 'e2', 'e3']) await store.commit(token, Buffer.from(token), hourAgo)
    })

    it('stats prints the active and expired counts', async () => {
      expect(await onDriver(['stats', '--url', url, '--table', table])).toEqual({ status: 0, stdout: 'active: 2\nexpired: 3\n', stderr: '' })
    })

    it('prune deletes the expired rows only and prints how many went', async () => {
      expect(await onDriver(['prune', '--url', url, '--table', table])).toEqual({ status: 0, stdout: 'deleted: 3\n', stderr: '' })
      expect([...(await store.all()).keys()].sort()).toEqual(['a1', 'a2'])
      expect(await sql.unsafe(`SELECT count(*)::int AS rows FROM "${table}"`)).toEqual([{ rows: 2 }])
      expect((await onDriver(['prune', '--url', url, '--table', table])).stdout).toBe('deleted: 0\n')
    })
  })

  it('exits 1 with the database error when the table does not exist', async () => {
    const table = uniqueTable('cli_missing')
    expectFailure(await onDriver(['stats', '--url', url, '--table', table]), 1, new RegExp(`relation "${table}" does not exist`))
  })
}, realDriverBackends)

// Moving from connect-pg-simple: its own store (version 10, on a pg.Pool)
// writes the sessions, the CLI copies them, and PostgresSessionStore reads
// them back as the application will after the switch.
const serverUrl = process.env.TEST_DATABASE_URL
const describeOnServer = serverUrl ? describe : describe.skip

describeOnServer.each(['postgres', 'pg'])('import --from connect-pg-simple [PostgreSQL server, --driver %s]', (driver) => {
  const HOUR = 3600_000
  const SECRET = 'the store secret, sixteen+ chars'
  let pool: pg.Pool
  let sql: Sql
  let fromTable: string
  const tables: string[] = []
  const imported = (table: string, extra: string[] = [], env: { EXPRESS_SESSION_POSTGRES_SECRET?: string } = {}) =>
    cli(['import', '--from', 'connect-pg-simple', '--from-table', fromTable, '--table', table, '--url', serverUrl!, '--driver', driver, ...extra], env)

  /** A session as express-session hands it to a store. */
  const sessionOf = (user: string, expires: Date) =>
    ({ cookie: { originalMaxAge: expires.getTime() - Date.now(), expires: expires.toISOString(), httpOnly: true, path: '/' }, user })

  beforeAll(async () => {
    pool = new pg.Pool({ connectionString: serverUrl, max: 2 })
    sql = postgres(serverUrl!, { onnotice: () => {} })
    fromTable = uniqueTable('cps')
    const ConnectPgSimple = connectPgSimple(session)
    const old = new ConnectPgSimple({ pool, tableName: fromTable, createTableIfMissing: true, pruneSessionInterval: false })
    const set = (sid: string, data: object) =>
      new Promise<void>((resolve, reject) => old.set(sid, data as session.SessionData, (error) => (error ? reject(error) : resolve())))
    for (const user of ['ada', 'bob', 'carol', 'dave']) await set(user, sessionOf(user, new Date(Date.now() + HOUR)))
    await set('gone', sessionOf('gone', new Date(Date.now() - HOUR)))
  })
  afterAll(async () => {
    for (const table of [...tables, fromTable]) await sql.unsafe(`DROP TABLE IF EXISTS "${table}"`)
    await Promise.all([pool.end(), sql.end({ timeout: 5 })])
  })

  /** This store's table, with carol logged out and dave's session already here, expiring later. */
  async function ownTable(options: PostgresStoreOptions = {}) {
    const store = new PostgresStore(sql, { table: uniqueTable('imported'), cleanupInterval: 0, ...options })
    tables.push(store.table)
    await store.migrate()
    await store.commit('carol', Buffer.from('{}'), new Date(Date.now() + HOUR))
    await store.delete('carol')
    await store.commit('dave', Buffer.from(JSON.stringify(sessionOf('dave, already moved', new Date(Date.now() + 2 * HOUR)))), new Date(Date.now() + 2 * HOUR))
    return store
  }

  it('copies the active sessions, skips a logged-out one and a later one, and a second run copies nothing', async () => {
    const store = await ownTable()
    expect(await imported(store.table)).toEqual({ status: 0, stdout: 'copied: 2\nskipped: 2\n', stderr: '' })
    const rowsAfterFirst = await sql.unsafe(`SELECT token, data, expiry, destroyed FROM "${store.table}" ORDER BY token`)
    expect(await imported(store.table)).toEqual({ status: 0, stdout: 'copied: 0\nskipped: 4\n', stderr: '' })
    expect(await sql.unsafe(`SELECT token, data, expiry, destroyed FROM "${store.table}" ORDER BY token`)).toEqual(rowsAfterFirst)

    const sessions = new PostgresSessionStore({ store })
    const [cpsRow] = await sql.unsafe<{ expire: Date }[]>(`SELECT expire::timestamptz AS expire FROM "${fromTable}" WHERE sid = 'ada'`)
    expect(await sessions.get('ada')).toMatchObject({ user: 'ada', cookie: { expires: cpsRow.expire } })
    expect(await sessions.get('bob')).toMatchObject({ user: 'bob' })
    expect(await sessions.get('carol')).toBeNull()
    expect(await sessions.get('dave')).toMatchObject({ user: 'dave, already moved' })
    expect(await sessions.get('gone')).toBeNull()
  })

  it('with --hash-tokens and the secret in EXPRESS_SESSION_POSTGRES_SECRET, stores hashed ids and encrypted data', async () => {
    const options = { hashTokens: true, secret: SECRET }
    const store = await ownTable(options)
    const run = await imported(store.table, ['--hash-tokens'], { EXPRESS_SESSION_POSTGRES_SECRET: SECRET })
    expect(run).toEqual({ status: 0, stdout: 'copied: 2\nskipped: 2\n', stderr: '' })
    const rows = await sql.unsafe<{ token: string; data: Buffer }[]>(`SELECT token, data FROM "${store.table}"`)
    expect(rows.map((row) => row.token)).toContain(hashToken('ada'))
    for (const row of rows) expect(row.token + row.data.toString('latin1')).not.toMatch(/ada|bob/)
    expect(await new PostgresSessionStore({ store }).get('ada')).toMatchObject({ user: 'ada' })
  })
})
