// Log hygiene: in every mode (plain, hashTokens, secret, both) drive the
// library through everything that makes it log or fail, collect every line it
// writes to stderr and every error it hands out, and check that none contains
// a session id, its hash or a piece of session data.
import { randomBytes } from 'node:crypto'
import { createServer, type AddressInfo } from 'node:net'
import { inspect } from 'node:util'
import type { SessionData } from 'express-session'
import pg from 'pg'
import postgres, { type Sql } from 'postgres'
import { PostgresStore, type PostgresStoreOptions } from '../lib/postgres-store'
import { PostgresSessionStore, type PostgresSessionStoreOptions } from '../lib/session-store'
import { hashToken } from '../lib/tokens'
import { describeEachBackend, driverBackends, uniqueTable, type Connection } from './support/backends'

const HOUR = 3600_000
const later = (ms: number) => new Date(Date.now() + ms)
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

// Random, so that no fixed text of the library could contain them by chance.
const SID = `sid-LEAK-${randomBytes(6).toString('hex')}`
const MARKER = `data-LEAK-${randomBytes(6).toString('hex')}`
const FORBIDDEN = [SID, hashToken(SID), MARKER]
const OWNER = 'owner-7'
const SECRET = 'the secret of the no-leaks test'
const OTHER_SECRET = 'a secret this store does not know'

type Mode = Pick<PostgresStoreOptions, 'hashTokens' | 'secret'>
/** A mode on one table, as both the adapter and a PostgresStore take it. */
type Settings = Mode & { table: string; cleanupInterval: number; onError?: (error: Error) => void; coalesce?: boolean }

const MODES: [string, Mode][] = [
  ['plain', {}],
  ['hashTokens', { hashTokens: true }],
  ['secret', { secret: SECRET }],
  ['hashTokens and secret', { hashTokens: true, secret: SECRET }],
]

const sessionOf = (data: Record<string, unknown> = {}) =>
  ({ cookie: { expires: later(HOUR), originalMaxAge: HOUR }, user: OWNER, note: MARKER, ...data }) as unknown as SessionData

/** Everything the library said: stderr lines and the errors it handed out. */
class Evidence {
  readonly lines: string[] = []
  readonly errors: Error[] = []

  /** Records what a call failed with; a call that did not fail breaks the scenario. */
  async failure(call: () => unknown): Promise<void> {
    try {
      await call()
    } catch (error) {
      this.errors.push(error as Error)
      return
    }
    throw new Error('the scenario expected this call to fail')
  }

  /** Each error as an application would log it: its message, console.error's view and JSON. */
  texts(): string[] {
    const errors = this.errors.flatMap((error) => [error.message, inspect(error), JSON.stringify(error)])
    return [...this.lines, ...errors]
  }
}

describeEachBackend('no session id or data in any log line or error', (backend) => {
  let db: Connection
  let sql: Sql
  const tables: string[] = []

  beforeAll(() => {
    db = backend.open()
    sql = db.sql
  })
  afterAll(async () => {
    for (const table of tables) await sql`DROP TABLE IF EXISTS ${sql(table)}`
    await db.end()
  })

  describe.each(MODES)('%s', (_, mode) => {
    /** The scenario with onError left to its default, stderr captured. */
    async function withDefaultOnError(): Promise<Evidence> {
      const evidence = new Evidence()
      const write = jest.spyOn(process.stderr, 'write').mockImplementation((chunk) => {
        evidence.lines.push(String(chunk))
        return true
      })
      try {
        await scenario(evidence, {})
      } finally {
        write.mockRestore()
      }
      return evidence
    }

    /** The scenario with an onError that keeps the errors. */
    async function withOwnOnError(): Promise<Evidence> {
      const evidence = new Evidence()
      await scenario(evidence, { onError: (error) => evidence.errors.push(error) })
      return evidence
    }

    async function scenario(evidence: Evidence, reporting: { onError?: (error: Error) => void }) {
      const table = uniqueTable('no_leaks')
      tables.push(table)
      const options: Settings = { ...mode, ...reporting, table, cleanupInterval: 0, ...backend.storeOptions }
      // Writes rows the adapter will find but cannot read, under the same key and secret.
      const raw = new PostgresStore(db.client, options)
      await raw.migrate()
      const store = new PostgresSessionStore({ ...db.source, ...options, owner: (session) => (session as { user?: string }).user })
      try {
        await everydayUse(store)
        await badInput(evidence, store, options)
        await undecodableRows(store, raw)
        if (mode.secret !== undefined) await undecryptableRows(store, options)
        await missingTable(evidence, reporting)
        await databaseDown(evidence, reporting)
        await databaseSilent(evidence, mode)
      } finally {
        raw.stopCleanup()
        await store.close()
      }
    }

    it('with the default onError, no stderr line or error contains the id or the data', async () => {
      const evidence = await withDefaultOnError()
      expectNoLeak(evidence)
      // The scenario did reach every line the library writes.
      const stderr = evidence.lines.join('')
      expect(stderr).toMatch(/express-session-postgres: removed a stored session that could not be decoded/)
      expect(stderr).toMatch(/express-session-postgres: left out a stored session that could not be decoded/)
      expect(stderr).toMatch(/express-session-postgres: .*(does not exist|not found)/)
      if (mode.secret !== undefined) {
        expect(stderr).toMatch(/could not be decrypted: authentication failed/)
        expect(stderr).toMatch(/could not be decrypted: encrypted with a secret that is not configured/)
        expect(stderr).toMatch(/could not be decrypted: not in the encrypted format/)
      }
    })

    it('with an onError of the application, no reported or returned error contains the id or the data', async () => {
      const evidence = await withOwnOnError()
      expectNoLeak(evidence)
      const names = new Set(evidence.errors.map((error) => error.name))
      // node-postgres names its DatabaseError after the protocol message: 'error'.
      const databaseError = backend.driver === 'pg' ? 'error' : 'PostgresError'
      expect(names).toEqual(new Set(['Error', 'TypeError', 'RangeError', databaseError, 'QueryTimeoutError',
        ...(mode.secret !== undefined ? ['DecryptionError'] : [])]))
    })
  })

  /** Every message collected, checked for the id, its hash and the data. */
  function expectNoLeak(evidence: Evidence) {
    expect(evidence.errors.length).toBeGreaterThan(20)
    for (const text of evidence.texts()) {
      for (const secret of FORBIDDEN) expect(text).not.toContain(secret)
    }
  }

  /** What an app does all day; nothing here should fail. */
  async function everydayUse(store: PostgresSessionStore) {
    await store.set(SID, sessionOf())
    expect(await store.get(SID)).toMatchObject({ note: MARKER })
    await store.touch(SID, sessionOf())
    expect(await store.length()).toBe(1)
    expect(Object.keys(await store.all())).toHaveLength(1)
    expect(await store.listByOwner(OWNER)).toHaveLength(1)
    expect(await store.destroyByOwner(OWNER)).toBe(1)
    await store.destroy(SID)
  }

  /** Every check on input, with the id and the data in the input. */
  async function badInput(evidence: Evidence, store: PostgresSessionStore, options: Settings) {
    const circular = sessionOf() as unknown as Record<string, unknown>
    circular.self = circular
    const throwing = () => { throw new Error(`${SID} ${MARKER}`) }
    const adapter = (extra: Partial<PostgresSessionStoreOptions>) =>
      new PostgresSessionStore({ ...options, ...db.source, ...extra } as PostgresSessionStoreOptions)
    const calls: (() => unknown)[] = [
      () => store.get(`${SID}\0`),
      () => store.get(`${SID}\ud800`),
      () => store.set(SID.repeat(100), sessionOf()),
      () => store.set(SID, circular as unknown as SessionData),
      () => store.set(SID, sessionOf({ big: BigInt(1) })),
      () => store.set(SID, MARKER as unknown as SessionData),
      () => store.touch(SID, MARKER as unknown as SessionData),
      () => store.destroy(''),
      () => store.destroyByOwner(42 as unknown as string),
      () => store.listByOwner(''),
      () => store.set(SID, sessionOf(), MARKER as never),
      () => adapter({ owner: throwing }).set(SID, sessionOf()),
      () => adapter({ owner: () => 42 as unknown as string }).set(SID, sessionOf()),
      () => adapter({ ttl: throwing }).set(SID, { ...sessionOf(), cookie: { originalMaxAge: null } } as SessionData),
      () => adapter({ ttl: () => -1 }).set(SID, { ...sessionOf(), cookie: { originalMaxAge: null } } as SessionData),
      () => adapter({ serializer: { stringify: throwing, parse: JSON.parse } }).set(SID, sessionOf()),
      () => adapter({ serializer: { stringify: () => 42 as unknown as string, parse: JSON.parse } }).set(SID, sessionOf()),
    ]
    for (const call of calls) await evidence.failure(call)
  }

  /** Rows that decrypt (when there is a secret) but are no session: not UTF-8, not JSON, not an object. */
  async function undecodableRows(store: PostgresSessionStore, raw: PostgresStore) {
    await raw.clear()
    const unreadable = [
      Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(MARKER)]),
      Buffer.from(`{"cookie": {"note": "${MARKER}"`),
      Buffer.from(`"${MARKER}"`),
    ]
    for (const bytes of unreadable) {
      await raw.commit(SID, bytes, later(HOUR), OWNER)
      expect(await store.listByOwner(OWNER)).toEqual([])
      expect(await store.all()).toEqual({})
      expect(await store.get(SID)).toBeNull()
      await raw.clear()
    }
  }

  /** Rows tampered with, sealed with an unknown secret, or not sealed at all. */
  async function undecryptableRows(store: PostgresSessionStore, options: Settings) {
    const key = options.hashTokens ? hashToken(SID) : SID
    const quiet = { ...options, onError: () => {} }
    const writers = [
      new PostgresStore(db.client, { ...quiet, secret: OTHER_SECRET }),
      new PostgresStore(db.client, { ...quiet, secret: undefined }),
    ]
    await store.set(SID, sessionOf())
    const [{ data }] = await sql.unsafe<{ data: Buffer }[]>(`SELECT data FROM "${options.table}"`)
    data[data.length - 1] ^= 1
    await sql.unsafe(`UPDATE "${options.table}" SET data = $1 WHERE token = $2`, [data, key])
    await readEverything(store)
    for (const writer of writers) {
      await writer.clear()
      await writer.commit(SID, Buffer.from(JSON.stringify(sessionOf())), later(HOUR), OWNER)
      await readEverything(store)
    }
    await store.clear()
  }

  async function readEverything(store: PostgresSessionStore) {
    expect(await store.get(SID)).toBeNull()
    expect(await store.all()).toEqual({})
    expect(await store.listByOwner(OWNER)).toEqual([])
  }

  /** A table that does not exist: every query fails, and so does the cleanup timer. */
  async function missingTable(evidence: Evidence, reporting: { onError?: (error: Error) => void }) {
    const table = uniqueTable('missing')
    const store = new PostgresSessionStore({ ...db.source, ...reporting, table, cleanupInterval: 0, ...backend.storeOptions })
    await failEverywhere(evidence, store)
    await store.close()
    // The sweep runs alone: on PGlite, whose connections share one backend, a
    // query failing on one connection can break a query running on another.
    const said = () => evidence.lines.length + evidence.errors.length
    const before = said()
    const sweeping = new PostgresSessionStore({ ...db.source, ...reporting, table, cleanupInterval: 200, ...backend.storeOptions })
    try {
      for (const deadline = Date.now() + 5000; said() === before && Date.now() < deadline;) await sleep(10)
      expect(said()).toBe(before + 1)
    } finally {
      await sweeping.close()
    }
  }

  /** A pool that has been ended: every call fails without reaching PostgreSQL. */
  async function databaseDown(evidence: Evidence, reporting: { onError?: (error: Error) => void }) {
    const down = backend.open()
    await down.end()
    const store = new PostgresSessionStore({ ...down.source, ...reporting, cleanupInterval: 0 })
    await failEverywhere(evidence, store)
    await store.close()
  }

  /** A database that accepts connections and never answers: every call times out. */
  async function databaseSilent(evidence: Evidence, mode: Mode) {
    const silent = createServer(() => {})
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
    const { port } = silent.address() as AddressInfo
    const url = `postgres://nobody@127.0.0.1:${port}/none`
    const client = backend.driver === 'pg'
      ? new pg.Pool({ connectionString: url, max: 1, connectionTimeoutMillis: 200 })
      : postgres(url, { max: 1 })
    const core = new PostgresStore(client, { ...mode, cleanupInterval: 0, queryTimeout: 50, coalesce: false })
    try {
      await failEverywhere(evidence, new PostgresSessionStore({ store: core }))
    } finally {
      await (client instanceof pg.Pool ? client.end() : client.end({ timeout: 0 }))
      silent.close()
    }
  }

  async function failEverywhere(evidence: Evidence, store: PostgresSessionStore) {
    const calls: (() => unknown)[] = [
      () => store.get(SID),
      () => store.set(SID, sessionOf()),
      () => store.touch(SID, sessionOf()),
      () => store.destroy(SID),
      () => store.all(),
      () => store.length(),
      () => store.clear(),
      () => store.destroyByOwner(OWNER),
      () => store.listByOwner(OWNER),
    ]
    for (const call of calls) await evidence.failure(call)
  }
}, driverBackends)
