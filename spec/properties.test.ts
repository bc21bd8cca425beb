// Property-based tests with fast-check, on real PostgreSQL (PGlite and the
// server). Whatever a caller passes, each call either stores and reads back
// exactly, or fails with a TypeError or RangeError and writes nothing.
// The oracle below restates lib/validate.ts's rules independently.
import fc from 'fast-check'
import type { SessionData } from 'express-session'
import type { Sql } from 'postgres'
import { PostgresStore } from '../lib/postgres-store'
import { PostgresSessionStore } from '../lib/session-store'
import { describeEachBackend, realBackends, uniqueTable } from './support/backends'

const NUM_RUNS = 150
const MIN_EXPIRY = Date.parse('0001-01-01T00:00:00.000Z')
const MAX_EXPIRY = Date.parse('9999-12-31T23:59:59.999Z')
const HOUR = 3600_000

/** Why the store must refuse this token, or null when it must accept it. */
function tokenProblem(token: unknown): 'TypeError' | 'RangeError' | null {
  if (typeof token !== 'string' || token === '' || token.includes('\0') || !token.isWellFormed()) return 'TypeError'
  return Buffer.byteLength(token, 'utf8') > 1024 ? 'RangeError' : null
}

function expiryProblem(expiry: unknown): 'TypeError' | 'RangeError' | null {
  if (!(expiry instanceof Date)) return 'TypeError'
  const time = expiry.getTime()
  return Number.isNaN(time) || time < MIN_EXPIRY || time > MAX_EXPIRY ? 'RangeError' : null
}

// Tokens of every kind: ordinary, unicode, with NUL, lone surrogates, huge, empty, not strings.
const tokens = fc.oneof(
  fc.string({ minLength: 1, maxLength: 64 }),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }),
  fc.string({ unit: fc.constantFrom('\0', 'a', '\uD800', '\uDC00', 'é', '😀'), minLength: 1, maxLength: 8 }),
  fc.string({ unit: fc.constantFrom('x', '€', '😀'), minLength: 250, maxLength: 600 }),
  fc.constant(''),
  fc.anything(),
)

// Dates around the edges: far past, far future, beyond PostgreSQL's reach, invalid; and non-dates.
const expiries = fc.oneof(
  fc.date({ min: new Date(Date.now() + HOUR), max: new Date(MAX_EXPIRY), noInvalidDate: true }),
  fc.date({ min: new Date(MIN_EXPIRY), max: new Date(Date.now() - 1000), noInvalidDate: true }),
  fc.date({ noInvalidDate: false }),
  fc.constantFrom(new Date(MIN_EXPIRY), new Date(MAX_EXPIRY), new Date(MIN_EXPIRY - 1), new Date(MAX_EXPIRY + 1)),
  fc.oneof(fc.integer(), fc.string(), fc.constant(null), fc.constant(undefined)),
)

const data = fc.oneof(
  fc.uint8Array({ maxLength: 4096 }),
  fc.uint8Array({ maxLength: 64 }).map((bytes) => Buffer.from(bytes)),
  fc.anything(),
)

describeEachBackend(
  'properties',
  (backend) => {
    let sql: Sql
    let store: PostgresStore
    let adapter: PostgresSessionStore

    beforeAll(async () => {
      sql = backend.connect()
      store = new PostgresStore(sql, { table: uniqueTable('properties'), cleanupInterval: 0 })
      await store.migrate()
      adapter = new PostgresSessionStore({ store })
    })
    // Each property starts from an empty table: a tombstone left by the delete
    // property would rightly refuse a later set of the same id.
    beforeEach(async () => {
      await store.clear()
    })
    afterAll(async () => {
      await sql.unsafe(`DROP TABLE IF EXISTS "${store.table}"`)
      await sql.end({ timeout: 5 })
    })

    const rowCount = async () =>
      Number((await sql.unsafe<{ n: string }[]>(`SELECT count(*) AS n FROM "${store.table}"`))[0].n)

    test('commit stores and find reads back exactly, or it throws and writes nothing', async () => {
      await fc.assert(
        fc.asyncProperty(tokens, data, expiries, async (token, bytes, expiry) => {
          const problem = tokenProblem(token) ?? (bytes instanceof Uint8Array ? null : 'TypeError') ?? expiryProblem(expiry)
          const before = await rowCount()
          const outcome = await settle(() => store.commit(token as string, bytes as Uint8Array, expiry as Date))
          if (problem) {
            expect(outcome.error?.name).toBe(problem)
            expect(await rowCount()).toBe(before)
            return
          }
          expect(outcome.error).toBeUndefined()
          const live = (expiry as Date).getTime() > Date.now()
          const found = await store.find(token as string)
          expect(found === null ? null : [...found]).toEqual(live ? [...(bytes as Uint8Array)] : null)
        }),
        { numRuns: NUM_RUNS },
      )
    })

    test('find and delete accept any valid token and refuse the rest without writing', async () => {
      await fc.assert(
        fc.asyncProperty(tokens, async (token) => {
          const problem = tokenProblem(token)
          const before = await rowCount()
          const found = await settle(() => store.find(token as string))
          const deleted = await settle(() => store.delete(token as string))
          expect(found.error?.name).toBe(problem ?? undefined)
          expect(deleted.error?.name).toBe(problem ?? undefined)
          // A valid delete may write (a tombstone); a refused one must not.
          if (problem) expect(await rowCount()).toBe(before)
        }),
        { numRuns: NUM_RUNS },
      )
    })

    test('the adapter stores any JSON session under any valid sid, or refuses and writes nothing', async () => {
      await fc.assert(
        fc.asyncProperty(tokens, fc.dictionary(fc.string(), fc.jsonValue()), async (sid, fields) => {
          const problem = tokenProblem(sid)
          const session = { ...fields, cookie: { expires: new Date(Date.now() + HOUR).toISOString() } }
          const before = await rowCount()
          const outcome = await settle(() => adapter.set(sid as string, session as unknown as SessionData))
          if (problem) {
            expect(outcome.error?.name).toBe(problem)
            expect(await rowCount()).toBe(before)
            return
          }
          expect(outcome.error).toBeUndefined()
          const read = await adapter.get(sid as string)
          // The stored form is JSON: compare with what JSON keeps of the session.
          const { cookie: storedCookie, ...rest } = read as unknown as Record<string, unknown>
          const { cookie: _cookie, ...expected } = JSON.parse(JSON.stringify(session))
          expect(rest).toEqual(expected)
          expect(storedCookie).toBeDefined()
        }),
        { numRuns: NUM_RUNS },
      )
    })

    test('the adapter stores any JSON session with any cookie or none for ttl or its expiry, and reads it back as stored', async () => {
      const cookies = fc.oneof(
        fc.constant(undefined),
        fc.jsonValue(),
        fc.record({ expires: fc.oneof(fc.jsonValue(), fc.date({ noInvalidDate: false }), expiries) }, { requiredKeys: [] }),
      )
      await fc.assert(
        fc.asyncProperty(fc.dictionary(fc.string(), fc.jsonValue()), cookies, async (fields, cookie) => {
          const session = { ...fields, cookie } as unknown as SessionData
          const before = Date.now()
          const outcome = await settle(() => adapter.set('sid', session))
          expect(outcome.error).toBeUndefined()
          const stored = JSON.parse(JSON.stringify(session))
          const expires = stored.cookie?.expires
          const time = typeof expires === 'string' || typeof expires === 'number' ? new Date(expires).getTime() : NaN
          const read = await adapter.get('sid')
          if (Number.isNaN(time)) {
            // No usable expiry: kept for ttl (one day), exactly as stored.
            expect(read).toEqual(stored)
            const entry = await store.findEntry('sid')
            expect(entry!.expiry.getTime()).toBeGreaterThanOrEqual(before + 24 * HOUR)
          } else if (time <= Date.now()) {
            expect(read).toBeNull()
          } else {
            // A usable expiry: the cookie reads back with it (capped at the year 9999), the rest as stored.
            expect(read).toEqual({ ...stored, cookie: { ...stored.cookie, expires: new Date(Math.min(time, MAX_EXPIRY)) } })
          }
          await store.clear()
        }),
        { numRuns: NUM_RUNS },
      )
    })
  },
  realBackends,
)

/** The call's value or its error, so a property can inspect either. */
async function settle<T>(call: () => Promise<T>): Promise<{ value?: T; error?: Error }> {
  try {
    return { value: await call() }
  } catch (error) {
    return { error: error as Error }
  }
}
