// The contract of the core store, PostgresStore, run on every backend.
import pg from 'pg'
import type { Sql } from 'postgres'
import type { Client } from '../lib/drivers/detect'
import { PostgresStore } from '../lib/postgres-store'
import { parseTableName } from '../lib/table'
import { describeEachBackend, driverBackends, uniqueTable, type Connection } from './support/backends'

const later = (ms: number) => new Date(Date.now() + ms)
const HOUR = 3600_000
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describeEachBackend('PostgresStore', (backend) => {
  let db: Connection
  let sql: Sql
  let store: PostgresStore
  const stores: PostgresStore[] = []

  /** A store on a fresh table, stopped after the test. */
  async function newStore(options: ConstructorParameters<typeof PostgresStore>[1] = {}) {
    const created = new PostgresStore(db.client, { ...backend.storeOptions, table: uniqueTable(), cleanupInterval: 0, ...options })
    stores.push(created)
    await created.migrate()
    return created
  }

  beforeAll(() => {
    db = backend.open()
    sql = db.sql
  })
  beforeEach(async () => {
    store = await newStore()
  })
  afterEach(() => {
    for (const each of stores.splice(0)) each.stopCleanup()
  })
  afterAll(async () => {
    await db.end()
  })

  describe('find', () => {
    it('resolves to null for a token that was never committed', async () => {
      expect(await store.find('never-committed')).toBeNull()
    })

    it('resolves to the committed bytes for an active token', async () => {
      await store.commit('tok', Buffer.from('hello'), later(HOUR))
      expect(await store.find('tok')).toEqual(Buffer.from('hello'))
    })

    it('resolves to null once the expiry has passed, at millisecond precision', async () => {
      await store.commit('short', Buffer.from('x'), later(150))
      expect(await store.find('short')).toEqual(Buffer.from('x'))
      await sleep(300)
      expect(await store.find('short')).toBeNull()
    })

    it('resolves to null for a token committed with an expiry in the past', async () => {
      await store.commit('past', Buffer.from('x'), new Date(Date.now() - 1000))
      expect(await store.find('past')).toBeNull()
    })

    it('answers 200 concurrent finds, each with its own data', async () => {
      const tokens = Array.from({ length: 200 }, (_, i) => `concurrent-${i}`)
      await Promise.all(tokens.map((token) => store.commit(token, Buffer.from(`data of ${token}`), later(HOUR))))
      const found = await Promise.all(tokens.map((token) => store.find(token)))
      expect(found.map(String)).toEqual(tokens.map((token) => `data of ${token}`))
    })
  })

  describe('commit', () => {
    it('overwrites data and expiry of an existing token (upsert)', async () => {
      await store.commit('tok', Buffer.from('first'), later(HOUR))
      await store.commit('tok', Buffer.from('second'), later(150))
      expect(await store.find('tok')).toEqual(Buffer.from('second'))
      await sleep(300)
      expect(await store.find('tok')).toBeNull()
    })

    it('revives an expired token with new data', async () => {
      await store.commit('tok', Buffer.from('old'), new Date(Date.now() - 1000))
      await store.commit('tok', Buffer.from('new'), later(HOUR))
      expect(await store.find('tok')).toEqual(Buffer.from('new'))
    })

    it('leaves exactly one consistent row when many commits race on one token', async () => {
      const versions = Array.from({ length: 50 }, (_, i) => Buffer.from(`version ${i}`))
      await Promise.all(versions.map((data) => store.commit('contended', data, later(HOUR))))
      const all = await store.all()
      expect([...all.keys()]).toEqual(['contended'])
      expect(versions).toContainEqual(all.get('contended'))
      expect(await store.find('contended')).toEqual(all.get('contended'))
    })

    it.each([
      ['NUL bytes', Buffer.from([0, 0, 1, 0])],
      ['invalid UTF-8', Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0x80])],
      ['an empty buffer', Buffer.alloc(0)],
      ['every byte value', Buffer.from(Array.from({ length: 256 }, (_, i) => i))],
      ['1 MiB', Buffer.from(Array.from({ length: 1024 * 1024 }, (_, i) => (i * 31) % 256))],
    ])('round-trips binary data byte-exact: %s', async (_, data) => {
      await store.commit('bin', data, later(HOUR))
      const found = await store.find('bin')
      expect(found).toBeInstanceOf(Buffer)
      expect(found!.equals(data)).toBe(true)
    })

    it('accepts a Uint8Array, including a view into a larger buffer', async () => {
      const backing = new Uint8Array([9, 9, 1, 2, 3, 9])
      await store.commit('view', backing.subarray(2, 5), later(HOUR))
      expect(await store.find('view')).toEqual(Buffer.from([1, 2, 3]))
    })

    it('stores tokens with quotes, backslashes and unicode as they are', async () => {
      const tokens = ["it's", 'back\\slash', '$1', 'ünïcødé ✓ 🍪', 'a'.repeat(1024)]
      for (const token of tokens) await store.commit(token, Buffer.from(token), later(HOUR))
      for (const token of tokens) expect(String(await store.find(token))).toBe(token)
      expect([...(await store.all()).keys()].sort()).toEqual([...tokens].sort())
    })
  })

  describe('delete', () => {
    it('removes the token', async () => {
      await store.commit('tok', Buffer.from('x'), later(HOUR))
      await store.delete('tok')
      expect(await store.find('tok')).toBeNull()
    })

    it('resolves for a token that does not exist', async () => {
      await expect(store.delete('missing')).resolves.toBeUndefined()
    })

    it('leaves other tokens alone', async () => {
      await store.commit('keep', Buffer.from('k'), later(HOUR))
      await store.commit('drop', Buffer.from('d'), later(HOUR))
      await store.delete('drop')
      expect(await store.find('keep')).toEqual(Buffer.from('k'))
    })
  })

  describe('all', () => {
    it('resolves to an empty Map when there are no sessions', async () => {
      const all = await store.all()
      expect(all).toBeInstanceOf(Map)
      expect(all.size).toBe(0)
    })

    it('holds every active session and no expired one', async () => {
      await store.commit('a', Buffer.from('A'), later(HOUR))
      await store.commit('b', Buffer.from([0, 1]), later(HOUR))
      await store.commit('gone', Buffer.from('G'), new Date(Date.now() - 1))
      expect(await store.all()).toEqual(new Map([['a', Buffer.from('A')], ['b', Buffer.from([0, 1])]]))
    })
  })

  describe('deleteExpired', () => {
    it('removes only expired rows and resolves to how many', async () => {
      for (let i = 0; i < 7; i++) await store.commit(`old-${i}`, Buffer.from('o'), new Date(Date.now() - 1000 * (i + 1)))
      await store.commit('live', Buffer.from('l'), later(HOUR))
      expect(await store.deleteExpired()).toBe(7)
      expect(await store.deleteExpired()).toBe(0)
      expect(await store.find('live')).toEqual(Buffer.from('l'))
    })

    // The sweep looks at a row when its first expiry comes (sweep_at): one
    // extended since by a touch or a commit is kept then, and removed once its new expiry passes.
    it('keeps a session extended past its first expiry, and removes it when the new one passes', async () => {
      await store.commit('touched', Buffer.from('t'), later(200))
      await store.commit('recommitted', Buffer.from('r'), later(200))
      expect(await store.touch('touched', later(600))).toBe(true)
      await store.commit('recommitted', Buffer.from('r2'), later(600))
      await sleep(300)
      expect(await store.deleteExpired()).toBe(0)
      expect(await store.find('touched')).toEqual(Buffer.from('t'))
      expect(await store.find('recommitted')).toEqual(Buffer.from('r2'))
      await sleep(400)
      expect(await store.deleteExpired()).toBe(2)
      expect(await store.stats()).toEqual({ active: 0, expired: 0 })
    })

    it('removes a session whose expiry was moved earlier, at the earlier time', async () => {
      await store.commit('shortened', Buffer.from('s'), later(HOUR))
      await store.commit('shortened', Buffer.from('s'), later(200))
      await sleep(300)
      expect(await store.deleteExpired()).toBe(1)
      expect(await store.stats()).toEqual({ active: 0, expired: 0 })
    })
  })

  describe('cleanup timer', () => {
    async function rowCount(table: PostgresStore) {
      const [{ count }] = await sql.unsafe(`SELECT count(*)::int AS count FROM ${quoted(table.table)}`)
      return Number(count)
    }

    it('deletes expired rows on its interval', async () => {
      const timed = await newStore({ cleanupInterval: 100 })
      await timed.commit('expired', Buffer.from('e'), new Date(Date.now() - 1000))
      await timed.commit('live', Buffer.from('l'), later(HOUR))
      await sleep(500)
      expect(await rowCount(timed)).toBe(1)
      expect(await timed.find('live')).toEqual(Buffer.from('l'))
    })

    it('does not run before its interval has passed', async () => {
      const slow = await newStore({ cleanupInterval: 60_000 })
      await slow.commit('expired', Buffer.from('e'), new Date(Date.now() - 1000))
      await sleep(300)
      expect(await rowCount(slow)).toBe(1)
    })

    it('never runs when cleanupInterval is 0', async () => {
      await store.commit('expired', Buffer.from('e'), new Date(Date.now() - 1000))
      await sleep(300)
      expect(await rowCount(store)).toBe(1)
    })

    it('stops with stopCleanup, which may be called twice', async () => {
      const timed = await newStore({ cleanupInterval: 150 })
      timed.stopCleanup()
      timed.stopCleanup()
      await timed.commit('expired', Buffer.from('e'), new Date(Date.now() - 1000))
      await sleep(400)
      expect(await rowCount(timed)).toBe(1)
    })

    it('reports failures to onError and keeps running', async () => {
      const errors: Error[] = []
      const broken = new PostgresStore(db.client, { ...backend.storeOptions, table: uniqueTable('missing'), cleanupInterval: 50, onError: (e) => errors.push(e) })
      stores.push(broken)
      await sleep(400)
      expect(errors.length).toBeGreaterThanOrEqual(2)
      expect(errors[0]).toBeInstanceOf(Error)
    })

    it('by default writes one line to stderr that names no token and no data', async () => {
      const lines: string[] = []
      const isOurs = (line: string) => line.startsWith('express-session-postgres:')
      const write = jest.spyOn(process.stderr, 'write').mockImplementation((chunk) => {
        lines.push(String(chunk))
        return true
      })
      try {
        const written = await newStore()
        await written.commit('secret-token-123', Buffer.from('secret-data-456'), later(HOUR))
        await sql.unsafe(`DROP TABLE ${quoted(written.table)}`)
        // The sweeping store starts after the DROP: on PGlite, whose connections
        // share one backend, a DROP during a sweep can break the sweep's statement.
        const timed = new PostgresStore(db.client, { ...backend.storeOptions, table: written.table, cleanupInterval: 60 })
        for (let waited = 0; waited < 3000 && !lines.some(isOurs); waited += 50) await sleep(50)
        timed.stopCleanup()
      } finally {
        write.mockRestore()
      }
      const ours = lines.filter(isOurs)
      expect(ours.length).toBeGreaterThanOrEqual(1)
      for (const line of ours) {
        expect(line).toMatch(/^[^\n]*\n$/)
        expect(line).not.toMatch(/secret-token-123|secret-data-456/)
      }
    })
  })

  describe('table names', () => {
    it('creates and uses a schema-qualified table', async () => {
      const schema = uniqueTable('schema')
      await sql.unsafe(`CREATE SCHEMA ${quoted(schema)}`)
      const qualified = await newStore({ table: `${schema}.sessions` })
      await qualified.commit('tok', Buffer.from('q'), later(HOUR))
      expect(await qualified.find('tok')).toEqual(Buffer.from('q'))
      const [{ count }] = await sql.unsafe(`SELECT count(*)::int AS count FROM ${quoted(schema)}."sessions"`)
      expect(Number(count)).toBe(1)
    })

    it('quotes a hostile table name instead of running it', async () => {
      const hostile = `${uniqueTable('we"ird')}; DROP TABLE x; --`
      const odd = await newStore({ table: hostile })
      await odd.commit('tok', Buffer.from('h'), later(HOUR))
      expect(await odd.find('tok')).toEqual(Buffer.from('h'))
      expect(await odd.all()).toEqual(new Map([['tok', Buffer.from('h')]]))
      expect(await odd.deleteExpired()).toBe(0)
      await odd.delete('tok')
      expect(await odd.find('tok')).toBeNull()
    })

    it('migrate can run again on an existing table, keeping its rows', async () => {
      await store.commit('tok', Buffer.from('kept'), later(HOUR))
      await store.migrate()
      expect(await store.find('tok')).toEqual(Buffer.from('kept'))
    })

    // PGlite serves every connection from one backend, so five connections'
    // transactions interleave there ('portal "" does not exist'): it cannot
    // stand for several processes. The server and pg-mem (which serialises
    // transactions) can.
    const racingMigrations = backend.name === 'PGlite' ? it.skip : it
    racingMigrations('migrate succeeds when several stores start at once', async () => {
      const table = uniqueTable()
      const racing = Array.from({ length: 5 }, () => new PostgresStore(db.client, { ...backend.storeOptions, table, cleanupInterval: 0 }))
      await Promise.all(racing.map((each) => each.migrate()))
      await racing[0].commit('tok', Buffer.from('r'), later(HOUR))
      expect(await racing[4].find('tok')).toEqual(Buffer.from('r'))
    })
  })

  describe('bad input is rejected before any SQL runs', () => {
    let statements: number
    let counted: PostgresStore

    beforeEach(async () => {
      await store.commit('existing', Buffer.from('intact'), later(HOUR))
      statements = 0
      counted = new PostgresStore(counting(db.client, () => statements++), { ...backend.storeOptions, table: store.table, cleanupInterval: 0 })
    })

    afterEach(async () => {
      expect(statements).toBe(0)
      expect(await store.all()).toEqual(new Map([['existing', Buffer.from('intact')]]))
    })

    const badTokens: [string, unknown, ErrorConstructor][] = [
      ['a number', 42, TypeError],
      ['undefined', undefined, TypeError],
      ['null', null, TypeError],
      ['an object', { toString: () => 'existing' }, TypeError],
      ['an empty string', '', TypeError],
      ['a string with NUL', 'exi\0sting', TypeError],
      ['a lone surrogate', 'bad\uD800', TypeError],
      ['more than 1024 bytes', 'é'.repeat(513), RangeError],
    ]

    it.each(badTokens)('find with a token that is %s', async (_, token, type) => {
      await expect(counted.find(token as string)).rejects.toThrow(type)
    })

    it.each(badTokens)('commit with a token that is %s', async (_, token, type) => {
      await expect(counted.commit(token as string, Buffer.from('x'), later(HOUR))).rejects.toThrow(type)
    })

    it.each(badTokens)('delete with a token that is %s', async (_, token, type) => {
      await expect(counted.delete(token as string)).rejects.toThrow(type)
    })

    it.each([
      ['a string', 'intact'],
      ['an array of numbers', [1, 2, 3]],
      ['null', null],
      ['an ArrayBuffer', new ArrayBuffer(2)],
    ])('commit with data that is %s is a TypeError', async (_, data) => {
      await expect(counted.commit('existing', data as unknown as Buffer, later(HOUR))).rejects.toThrow(TypeError)
    })

    it.each([
      ['a number', Date.now() + HOUR, TypeError],
      ['an ISO string', new Date(Date.now() + HOUR).toISOString(), TypeError],
      ['undefined', undefined, TypeError],
      ['an Invalid Date', new Date('not a date'), RangeError],
      ['before the year 1', new Date(Date.parse('0001-01-01T00:00:00Z') - 1), RangeError],
      ['after the year 9999', new Date('+010000-01-01T00:00:00Z'), RangeError],
    ])('commit with an expiry that is %s', async (_, expiry, type) => {
      await expect(counted.commit('existing', Buffer.from('x'), expiry as Date)).rejects.toThrow(type)
    })

    it('names the problem without echoing the value', async () => {
      const error = await counted.find('é'.repeat(600)).catch((e: Error) => e)
      expect((error as Error).message).toBe('token must be at most 1024 bytes of UTF-8')
    })
  })

  it(`never ends the caller’s ${backend.driver === 'pg' ? 'pg.Pool' : 'postgres.js instance'}`, async () => {
    const own = await newStore({ cleanupInterval: 100 })
    await own.deleteExpired()
    own.stopCleanup()
    expect(await new PostgresStore(db.client, { ...backend.storeOptions, table: own.table, cleanupInterval: 0 }).count()).toBe(0)
  })
}, driverBackends)

/** The same client, counting every statement a store sends through it. */
function counting(client: Client, onStatement: () => void): Client {
  const method = typeof client === 'function' ? 'unsafe' : 'query'
  return new Proxy(client, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver)
      if (property === method) return (...args: unknown[]) => (onStatement(), value.apply(target, args))
      // A transaction's client, from a pg.Pool, counts too.
      if (property === 'connect') return async () => counting(await value.apply(target), onStatement)
      return typeof value === 'function' && method === 'query' ? value.bind(target) : value
    },
  })
}

describe('PostgresStore construction', () => {
  const fakeSql = Object.assign(() => undefined, { unsafe: () => undefined }) as unknown as Sql

  it.each([
    ['no client', undefined, {}, TypeError, /postgres\.js instance or a node-postgres pool/],
    ['a connection string instead of a client', 'postgres://x', {}, TypeError, /postgres\.js instance or a node-postgres pool/],
    ['a plain object', {}, {}, TypeError, /postgres\.js instance or a node-postgres pool/],
    ['a single pg.Client, not a pool', new pg.Client(), {}, TypeError, /new pg\.Pool/],
    ['a prepare string', fakeSql, { prepare: 'no' }, TypeError, /prepare must be a boolean/],
    ['options that are not an object', fakeSql, 'sessions', TypeError, /options/],
    ['an empty table name', fakeSql, { table: '' }, TypeError, /table/],
    ['a table name with three parts', fakeSql, { table: 'a.b.c' }, TypeError, /table/],
    ['a table name with an empty part', fakeSql, { table: 'a.' }, TypeError, /table/],
    ['a cleanupInterval that is a string', fakeSql, { cleanupInterval: '1000' }, TypeError, /cleanupInterval/],
    ['a negative cleanupInterval', fakeSql, { cleanupInterval: -1 }, RangeError, /cleanupInterval/],
    ['a fractional cleanupInterval', fakeSql, { cleanupInterval: 1.5 }, RangeError, /cleanupInterval/],
    ['a cleanupInterval beyond what timers allow', fakeSql, { cleanupInterval: 2 ** 31 }, RangeError, /cleanupInterval/],
    ['an onError that is not a function', fakeSql, { onError: 'log' }, TypeError, /onError/],
  ])('rejects %s', (_, sql, options, type, message) => {
    expect(() => new PostgresStore(sql as Sql, options as object)).toThrow(type)
    expect(() => new PostgresStore(sql as Sql, options as object)).toThrow(message)
  })

  it('defaults to the sessions table and a sweep every 5 minutes', () => {
    jest.useFakeTimers()
    const sweeps: string[] = []
    // A stand-in for postgres.js that records the sweep's transactions.
    const tx = {
      unsafe: (query: string) => Promise.resolve(Object.assign([{ locked: true }], { count: 0 })),
    }
    const recording = Object.assign(() => undefined, {
      unsafe: () => Promise.reject(new Error('the sweep runs in a transaction')),
      begin: (work: (t: typeof tx) => unknown) => (sweeps.push('BEGIN'), work(tx)),
    }) as unknown as Sql
    try {
      const store = new PostgresStore(recording)
      expect(store.table).toBe('sessions')
      jest.advanceTimersByTime(5 * 60_000 - 1)
      expect(sweeps).toHaveLength(0)
      jest.advanceTimersByTime(1)
      expect(sweeps).toHaveLength(1)
      store.stopCleanup()
    } finally {
      jest.useRealTimers()
    }
  })

  describe('a statement that loses a deadlock', () => {
    // A stand-in for postgres.js whose statements fail with the given codes, then succeed.
    function failingSql(codes: string[]) {
      const attempts: string[] = []
      const sql = Object.assign(() => undefined, {
        unsafe: (query: string) => {
          attempts.push(query)
          const code = codes.shift()
          return code ? Promise.reject(Object.assign(new Error(`failed with ${code}`), { code })) : Promise.resolve(Object.assign([], { count: 1 }))
        },
      }) as unknown as Sql
      return { sql, attempts }
    }

    it('is tried again, and the call succeeds', async () => {
      const { sql, attempts } = failingSql(['40P01', '40P01'])
      const store = new PostgresStore(sql, { cleanupInterval: 0 })
      await expect(store.commit('tok', Buffer.from('x'), new Date(Date.now() + HOUR))).resolves.toBeUndefined()
      expect(attempts).toHaveLength(3)
    })

    it('fails the call after three deadlocks, and on any other error at once', async () => {
      const deadlocked = failingSql(['40P01', '40P01', '40P01'])
      await expect(new PostgresStore(deadlocked.sql, { cleanupInterval: 0 }).delete('tok')).rejects.toMatchObject({ code: '40P01' })
      expect(deadlocked.attempts).toHaveLength(3)
      const broken = failingSql(['42P01'])
      await expect(new PostgresStore(broken.sql, { cleanupInterval: 0 }).delete('tok')).rejects.toMatchObject({ code: '42P01' })
      expect(broken.attempts).toHaveLength(1)
    })
  })

  it('arms a timer that does not keep the process alive', () => {
    const refedTimers = () => process.getActiveResourcesInfo().filter((name) => name === 'Timeout').length
    const before = refedTimers()
    const store = new PostgresStore(fakeSql, { cleanupInterval: 1000 })
    expect(refedTimers()).toBe(before)
    store.stopCleanup()
  })
})

function quoted(table: string): string {
  return parseTableName(table).quoted
}
