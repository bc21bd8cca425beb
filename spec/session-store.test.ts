// The express-session adapter, PostgresSessionStore, and the core methods it
// needs (findEntry, touch, count, clear), run on every backend.
import { execFile } from 'node:child_process'
import type { SessionData } from 'express-session'
import pg from 'pg'
import postgres, { type Sql } from 'postgres'
import { PostgresStore } from '../lib/postgres-store'
import { hashToken } from '../lib/tokens'
import { PostgresSessionStore, type Callback, type PostgresSessionStoreOptions } from '../lib/session-store'
import { describeEachBackend, driverBackends, uniqueTable, type Connection } from './support/backends'

const HOUR = 3600_000
const DAY = 24 * HOUR
const later = (ms: number) => new Date(Date.now() + ms)
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** A session as express-session hands it to a store (after JSON, expires is a string). */
function sessionOf(data: Record<string, unknown> = {}, expires: Date | null = later(HOUR)): SessionData {
  const cookie = { originalMaxAge: expires ? expires.getTime() - Date.now() : null, expires, httpOnly: true, path: '/' }
  return { cookie, ...data } as unknown as SessionData
}

/** Calls method with a recording callback and waits long enough to see a second call. */
async function callbackCalls<T>(method: (callback: Callback<T>) => unknown) {
  const calls: unknown[][] = []
  let returned: unknown
  await new Promise<void>((resolve) => {
    returned = method((...args) => {
      calls.push(args)
      resolve()
    })
  })
  await sleep(20)
  return { calls, returned }
}

describeEachBackend('PostgresSessionStore', (backend) => {
  let db: Connection
  let sql: Sql
  let core: PostgresStore
  let store: PostgresSessionStore
  let reported: Error[]
  const cores: PostgresStore[] = []
  const adapters: PostgresSessionStore[] = []

  /** An adapter on the current test's table, closed after the test. */
  function adapter(options: Partial<PostgresSessionStoreOptions> = {}) {
    const created = new PostgresSessionStore({
      ...db.source,
      table: core.table,
      cleanupInterval: 0,
      onError: (error) => reported.push(error),
      ...backend.storeOptions,
      ...options,
    } as PostgresSessionStoreOptions)
    adapters.push(created)
    return created
  }

  // The rows that hold a session, straight from SQL, expired or not. A destroyed session leaves a tombstone with
  // no data (see the core's tests), which holds none.
  async function rows() {
    return sql.unsafe<{ token: string; data: Buffer; expiry: Date }[]>(
      `SELECT token, data, expiry FROM "${core.table}" WHERE NOT destroyed ORDER BY token`,
    )
  }

  beforeAll(() => {
    db = backend.open()
    sql = db.sql
  })
  beforeEach(async () => {
    reported = []
    core = new PostgresStore(db.client, { table: uniqueTable('adapter'), cleanupInterval: 0, ...backend.storeOptions })
    cores.push(core)
    await core.migrate()
    store = adapter()
  })
  afterEach(async () => {
    for (const each of adapters.splice(0)) await each.close()
    for (const each of cores.splice(0)) {
      each.stopCleanup()
      await sql`DROP TABLE IF EXISTS ${sql(each.table)}`
    }
  })
  afterAll(async () => {
    await db.end()
  })

  describe('core: findEntry', () => {
    it('resolves to the data and the stored expiry of an active token, to the millisecond', async () => {
      const expiry = new Date(Date.now() + HOUR + 0.123)
      await core.commit('tok', Buffer.from('data'), expiry)
      const entry = await core.findEntry('tok')
      expect(entry?.data).toEqual(Buffer.from('data'))
      expect(entry?.expiry.getTime()).toBe(Math.floor(expiry.getTime()))
    })

    it('resolves to null for a missing or an expired token', async () => {
      await core.commit('past', Buffer.from('x'), new Date(Date.now() - 1000))
      expect(await core.findEntry('missing')).toBeNull()
      expect(await core.findEntry('past')).toBeNull()
    })

    it('rejects a token that is not a non-empty string with a TypeError', async () => {
      await expect(core.findEntry(42 as unknown as string)).rejects.toThrow(TypeError)
      await expect(core.findEntry('')).rejects.toThrow(TypeError)
    })
  })

  describe('core: touch', () => {
    it('moves only the expiry of an active token and resolves to true', async () => {
      await core.commit('tok', Buffer.from('kept'), later(HOUR))
      const moved = later(2 * HOUR)
      expect(await core.touch('tok', moved)).toBe(true)
      expect(await core.findEntry('tok')).toEqual({ data: Buffer.from('kept'), expiry: moved, version: '0' })
    })

    it('resolves to false and creates nothing for a missing token', async () => {
      expect(await core.touch('missing', later(HOUR))).toBe(false)
      expect(await rows()).toHaveLength(0)
    })

    it('resolves to false and does not revive an expired token', async () => {
      await core.commit('past', Buffer.from('x'), new Date(Date.now() - 1000))
      expect(await core.touch('past', later(HOUR))).toBe(false)
      expect(await core.findEntry('past')).toBeNull()
    })

    it('rejects a bad token or expiry before writing', async () => {
      await core.commit('tok', Buffer.from('x'), later(HOUR))
      const before = await core.findEntry('tok')
      await expect(core.touch('', later(HOUR))).rejects.toThrow(TypeError)
      await expect(core.touch('tok', 'tomorrow' as unknown as Date)).rejects.toThrow(TypeError)
      await expect(core.touch('tok', new Date(NaN))).rejects.toThrow(RangeError)
      expect(await core.findEntry('tok')).toEqual(before)
    })
  })

  describe('core: count and clear', () => {
    it('count resolves to the number of active rows only', async () => {
      expect(await core.count()).toBe(0)
      await core.commit('a', Buffer.from('x'), later(HOUR))
      await core.commit('b', Buffer.from('x'), later(HOUR))
      await core.commit('old', Buffer.from('x'), new Date(Date.now() - 1000))
      expect(await core.count()).toBe(2)
    })

    it('clear deletes every row, active and expired, of its own table only', async () => {
      const other = new PostgresStore(db.client, { table: uniqueTable('adapter_other'), cleanupInterval: 0, ...backend.storeOptions })
      cores.push(other)
      await other.migrate()
      await other.commit('elsewhere', Buffer.from('x'), later(HOUR))
      await core.commit('a', Buffer.from('x'), later(HOUR))
      await core.commit('old', Buffer.from('x'), new Date(Date.now() - 1000))
      expect(await core.clear()).toBe(2)
      expect(await rows()).toHaveLength(0)
      expect(await other.find('elsewhere')).toEqual(Buffer.from('x'))
      expect(await core.clear()).toBe(0)
    })
  })

  describe('get and set', () => {
    it('returns what set stored, with cookie.expires equal to the stored expiry', async () => {
      const session = sessionOf({ user: 'ada', visits: 3, tags: ['a', 'ü', '😀'] })
      await store.set('sid-1', session)
      const found = await store.get('sid-1')
      expect(found).toEqual({ ...JSON.parse(JSON.stringify(session)), cookie: expect.any(Object) })
      expect(found?.cookie.expires).toEqual(session.cookie.expires)
      expect((await rows())[0].expiry).toEqual(session.cookie.expires)
    })

    it('returns null for a session that was never stored', async () => {
      expect(await store.get('never-stored')).toBeNull()
    })

    it('returns null once cookie.expires has passed, by the millisecond', async () => {
      await store.set('short', sessionOf({}, later(200)))
      expect(await store.get('short')).not.toBeNull()
      await sleep(350)
      expect(await store.get('short')).toBeNull()
    })

    it('stores the session as the UTF-8 bytes of its JSON by default', async () => {
      const session = sessionOf({ name: 'Zoë' })
      await store.set('sid', session)
      expect((await rows())[0].data).toEqual(Buffer.from(JSON.stringify(session), 'utf8'))
    })

    it('takes cookie.expires as a Date or as the ISO string JSON makes of it', async () => {
      const expiry = later(3 * HOUR)
      await store.set('as-date', sessionOf({}, expiry))
      await store.set('as-string', { cookie: { expires: expiry.toISOString(), originalMaxAge: 1 } } as never)
      expect((await rows()).map((row) => row.expiry)).toEqual([expiry, expiry])
    })

    it('keeps a session cookie (no expires) for ttl seconds, one day by default', async () => {
      const before = Date.now()
      await store.set('sid', sessionOf({}, null))
      const expiry = (await rows())[0].expiry.getTime()
      expect(expiry).toBeGreaterThanOrEqual(before + DAY)
      expect(expiry).toBeLessThanOrEqual(Date.now() + DAY)
      expect((await store.get('sid'))?.cookie.expires).toBeNull()
    })

    it('uses a ttl given in seconds, as a number or as a function of the session', async () => {
      const fixed = adapter({ ttl: 60 })
      const perUser = adapter({ ttl: (session) => ((session as { user?: string }).user ? 7200 : 30) })
      const before = Date.now()
      await fixed.set('fixed', sessionOf({}, null))
      await perUser.set('guest', sessionOf({}, null))
      await perUser.set('member', sessionOf({ user: 'ada' }, null))
      const after = Date.now()
      const [fixedRow, guestRow, memberRow] = await rows()
      expect(fixedRow.expiry.getTime()).toBeGreaterThanOrEqual(before + 60_000)
      expect(fixedRow.expiry.getTime()).toBeLessThanOrEqual(after + 60_000)
      expect(guestRow.expiry.getTime()).toBeLessThanOrEqual(after + 30_000)
      expect(memberRow.expiry.getTime()).toBeGreaterThanOrEqual(before + 7200_000)
    })

    it('rejects a ttl function that returns no positive number, writing nothing', async () => {
      const broken = adapter({ ttl: () => -5 })
      await expect(broken.set('sid', sessionOf({}, null))).rejects.toThrow(RangeError)
      expect(await rows()).toHaveLength(0)
    })

    it('a ttl function that throws: a TypeError naming ttl() but not its message, nothing written', async () => {
      const broken = adapter({ ttl: () => { throw new Error('hunter2') } })
      const error = await broken.set('sid', sessionOf({}, null)).catch((caught: Error) => caught)
      expect(error).toBeInstanceOf(TypeError)
      expect((error as Error).message).toBe('ttl() threw Error, so nothing was written')
      expect(await rows()).toHaveLength(0)
    })

    it('removes the session when set is given an expiry already past', async () => {
      await store.set('sid', sessionOf({ user: 'ada' }))
      await store.set('sid', sessionOf({ user: 'ada' }, new Date(Date.now() - 1)))
      expect(await rows()).toHaveLength(0)
    })

    it('replaces data and expiry of an existing session', async () => {
      await store.set('sid', sessionOf({ step: 1 }, later(HOUR)))
      const second = sessionOf({ step: 2 }, later(5 * HOUR))
      await store.set('sid', second)
      const found = await store.get('sid')
      expect(found).toMatchObject({ step: 2 })
      expect(found?.cookie.expires).toEqual(second.cookie.expires)
    })

    it('uses a custom serializer both ways', async () => {
      const serializer = {
        stringify: (session: SessionData) => 'v1:' + JSON.stringify(session),
        parse: (text: string) => JSON.parse(text.slice('v1:'.length)),
      }
      const custom = adapter({ serializer })
      await custom.set('sid', sessionOf({ user: 'ada' }))
      expect((await rows())[0].data.subarray(0, 3).toString()).toBe('v1:')
      expect(await custom.get('sid')).toMatchObject({ user: 'ada' })
    })
  })

  // What express-session's MemoryStore (and connect-pg-simple, connect-redis) accept, this store accepts:
  // a session without a cookie, or whose cookie.expires is no date, lives for ttl and reads back as stored.
  describe('sessions without a usable cookie, as the reference stores keep them', () => {
    const noCookie = { user: 'ada' }
    const unusable: [string, unknown, unknown][] = [
      // [what, cookie.expires as set, cookie.expires as JSON stores it]
      ['an Invalid Date', new Date(NaN), null],
      ['a string that is no date', 'next tuesday', 'next tuesday'],
      ['an object', { when: 'soon' }, { when: 'soon' }],
    ]

    function expectTtlExpiry(expiry: Date, before: number, seconds: number) {
      expect(expiry.getTime()).toBeGreaterThanOrEqual(before + seconds * 1000)
      expect(expiry.getTime()).toBeLessThanOrEqual(Date.now() + seconds * 1000)
    }

    it('a session without a cookie is stored for ttl and read back exactly as stored, no cookie added', async () => {
      const short = adapter({ ttl: 90 })
      const before = Date.now()
      await short.set('sid', noCookie as unknown as SessionData)
      expectTtlExpiry((await rows())[0].expiry, before, 90)
      expect(await short.get('sid')).toEqual(noCookie)
      expect(await short.all()).toEqual({ sid: noCookie })
      expect(await short.length()).toBe(1)
    })

    it.each(unusable)('cookie.expires %s: stored for ttl, read back as stored', async (_, expires, stored) => {
      const short = adapter({ ttl: 90 })
      const before = Date.now()
      await short.set('sid', { user: 'ada', cookie: { expires, path: '/' } } as unknown as SessionData)
      expectTtlExpiry((await rows())[0].expiry, before, 90)
      expect(await short.get('sid')).toEqual({ user: 'ada', cookie: { expires: stored, path: '/' } })
    })

    it('a ttl function decides for them too', async () => {
      const perUser = adapter({ ttl: (session) => ((session as { user?: string }).user ? 7200 : 30) })
      const before = Date.now()
      await perUser.set('sid', noCookie as unknown as SessionData)
      expectTtlExpiry((await rows())[0].expiry, before, 7200)
    })

    it('a cookie.expires beyond the year 9999 keeps the session until then, as good as forever', async () => {
      await store.set('sid', { cookie: { expires: new Date('+010000-01-01T00:00:00Z') } } as unknown as SessionData)
      expect((await rows())[0].expiry).toEqual(new Date('9999-12-31T23:59:59.999Z'))
      expect(await store.get('sid')).not.toBeNull()
    })

    it('touch moves them forward by ttl, and get still returns them as stored', async () => {
      const exact = adapter({ ttl: 90, touchAfter: 0 })
      await exact.set('sid', noCookie as unknown as SessionData)
      const first = (await rows())[0].expiry
      await sleep(20)
      await exact.touch('sid', noCookie as unknown as SessionData)
      expect((await rows())[0].expiry.getTime()).toBeGreaterThan(first.getTime())
      const read = await exact.get('sid')
      expect(read).toEqual(noCookie)
      // touch with the session get returned (touchAfter remembers its stored expiry) copes as well.
      await exact.touch('sid', read!)
      expect(await exact.get('sid')).toEqual(noCookie)
    })

    it('listByOwner and destroyByOwner find them', async () => {
      const owned = adapter({ owner: (session) => (session as { user?: string }).user })
      await owned.set('sid', noCookie as unknown as SessionData)
      expect(await owned.listByOwner('ada')).toEqual([
        { id: 'sid', expiry: expect.any(Date), created: expect.any(Date), session: noCookie },
      ])
      expect(await owned.destroyByOwner('ada')).toBe(1)
      expect(await owned.get('sid')).toBeNull()
    })

    it('a stored row without a cookie is returned by get, not removed as undecodable', async () => {
      await core.commit('sid', Buffer.from('{"user":"ada"}'), later(HOUR))
      expect(await store.get('sid')).toEqual(noCookie)
      expect(reported).toEqual([])
      expect(await rows()).toHaveLength(1)
    })

    it.each([
      ['null', null],
      ['a string', 'hunter2'],
      ['a number', 42],
    ])('a session that is %s is still a TypeError, and nothing is written', async (_, session) => {
      await expect(store.set('sid', session as unknown as SessionData)).rejects.toThrow(TypeError)
      await expect(store.touch('sid', session as unknown as SessionData)).rejects.toThrow(TypeError)
      expect(await rows()).toHaveLength(0)
    })
  })

  describe('sessions that cannot be serialized', () => {
    it.each([
      ['a circular object', () => {
        const session = sessionOf({ secret: 'hunter2' }) as unknown as Record<string, unknown>
        session.self = session
        return session
      }],
      ['a BigInt', () => sessionOf({ secret: 'hunter2', big: BigInt(1) })],
    ])('%s: set fails with an error that says so, and writes nothing', async (_, make) => {
      await store.set('sid', sessionOf({ kept: true }))
      const before = await rows()
      const error = await store.set('sid', make() as SessionData).catch((caught: Error) => caught)
      expect(error).toBeInstanceOf(TypeError)
      expect((error as Error).message).toMatch(/could not be serialized/)
      expect((error as Error).message).not.toMatch(/hunter2|sid/)
      expect(await rows()).toEqual(before)
    })

    it('a serializer that returns no string fails set and writes nothing', async () => {
      const custom = adapter({ serializer: { stringify: () => 42 as unknown as string, parse: JSON.parse } })
      await expect(custom.set('sid', sessionOf())).rejects.toThrow(/could not be serialized/)
      expect(await rows()).toHaveLength(0)
    })
  })

  describe('rows that cannot be decoded', () => {
    const secretSid = 'sid-that-must-not-leak'
    it.each([
      ['bytes that are not UTF-8', Buffer.from([0xff, 0xfe, 0x7b])],
      ['invalid JSON', Buffer.from('{"cookie": {"secret": "hunter2"')],
      ['JSON that is not an object', Buffer.from('"hunter2"')],
    ])('%s: get returns null, removes the row, reports without id or data', async (_, bytes) => {
      await core.commit(secretSid, bytes, later(HOUR))
      expect(await store.get(secretSid)).toBeNull()
      expect(await rows()).toHaveLength(0)
      expect(reported).toHaveLength(1)
      expect(reported[0].message).toMatch(/could not be decoded/)
      expect(reported[0].message).not.toMatch(/hunter2|must-not-leak/)
    })

    it('a serializer whose parse throws: get returns null and the row is removed', async () => {
      const custom = adapter({ serializer: { stringify: JSON.stringify, parse: () => { throw new Error('hunter2') } } })
      await custom.set(secretSid, sessionOf())
      expect(await custom.get(secretSid)).toBeNull()
      expect(await rows()).toHaveLength(0)
      expect(reported.map((error) => error.message)).toEqual([expect.stringMatching(/serializer threw Error/)])
      expect(reported[0].message).not.toMatch(/hunter2|must-not-leak/)
    })

    it('all leaves unreadable rows out and reports them; the next get of that id removes the row', async () => {
      await store.set('good', sessionOf({ user: 'ada' }))
      await core.commit('bad', Buffer.from('not json'), later(HOUR))
      expect(Object.keys(await store.all())).toEqual(['good'])
      expect(reported.map((error) => error.message)).toEqual([expect.stringMatching(/left out .* could not be decoded/)])
      expect(await store.get('bad')).toBeNull()
      expect((await rows()).map((row) => row.token)).toEqual(['good'])
    })

    it('a throwing onError does not break get', async () => {
      const loud = adapter({ onError: () => { throw new Error('onError failed') } })
      await core.commit('bad', Buffer.from('not json'), later(HOUR))
      expect(await loud.get('bad')).toBeNull()
    })
  })

  describe('touch', () => {
    it('moves only the stored expiry, and the next get shows it as cookie.expires', async () => {
      await store.set('sid', sessionOf({ visits: 1 }, later(HOUR)))
      const moved = later(3 * HOUR)
      await store.touch('sid', sessionOf({ visits: 99 }, moved))
      const found = await store.get('sid')
      expect(found).toMatchObject({ visits: 1 })
      expect(found?.cookie.expires).toEqual(moved)
      expect((await rows())[0].expiry).toEqual(moved)
    })

    it('extends a session cookie by ttl from now', async () => {
      const short = adapter({ ttl: 1 })
      await short.set('sid', sessionOf({}, null))
      await store.touch('sid', sessionOf({}, null))
      expect((await rows())[0].expiry.getTime()).toBeGreaterThan(Date.now() + DAY - 60_000)
    })

    it('does not create a missing session nor revive an expired one', async () => {
      await core.commit('past', Buffer.from(JSON.stringify(sessionOf())), new Date(Date.now() - 1000))
      await store.touch('missing', sessionOf())
      await store.touch('past', sessionOf({}, later(HOUR)))
      expect(await store.get('missing')).toBeNull()
      expect(await store.get('past')).toBeNull()
      expect((await rows()).map((row) => row.token)).toEqual(['past'])
    })

    it('does nothing with disableTouch', async () => {
      const still = adapter({ disableTouch: true })
      const first = later(HOUR)
      await still.set('sid', sessionOf({}, first))
      await still.touch('sid', sessionOf({}, later(3 * HOUR)))
      expect((await rows())[0].expiry).toEqual(first)
    })
  })

  describe('destroy', () => {
    it('ends the session; destroying a missing one is no error', async () => {
      await store.set('sid', sessionOf())
      await store.set('other', sessionOf())
      await store.destroy('sid')
      await store.destroy('never-stored')
      expect(await store.get('sid')).toBeNull()
      expect((await rows()).map((row) => row.token)).toEqual(['other'])
    })
  })

  describe('a destroyed session stays destroyed', () => {
    it('get, set and touch after destroy neither find nor write it back', async () => {
      await store.set('sid', sessionOf({ user: 'ada' }))
      await store.destroy('sid')
      // A request that read the session before the logout now saves it, or touches it.
      await store.set('sid', sessionOf({ user: 'ada', views: 2 }))
      await store.touch('sid', sessionOf({ user: 'ada' }, later(2 * HOUR)))
      expect(await store.get('sid')).toBeNull()
      expect(await store.all()).toEqual({})
      expect(await store.length()).toBe(0)
      expect(await rows()).toHaveLength(0)
    })

    it('a session id destroyed before it was ever stored cannot be stored later', async () => {
      await store.destroy('sid')
      await store.set('sid', sessionOf({ user: 'ada' }))
      expect(await store.get('sid')).toBeNull()
    })

    it('with tombstones: false, a late set writes the session back (the behaviour of the peers)', async () => {
      const plain = adapter({ tombstones: false })
      await plain.set('sid', sessionOf({ user: 'ada' }))
      await plain.destroy('sid')
      await plain.set('sid', sessionOf({ user: 'ada', views: 2 }))
      expect(await plain.get('sid')).toMatchObject({ user: 'ada', views: 2 })
    })
  })

  describe('owner', () => {
    const byUser = (session: SessionData) => (session as { user?: string }).user

    /** Logs user in on each device: one session per device, as a browser each. */
    async function logIn(owned: PostgresSessionStore, user: string, devices: string[]) {
      for (const device of devices) await owned.set(device, sessionOf({ user, device }))
    }

    it('listByOwner gives each user their own sessions, oldest first, with expiry, creation time and session', async () => {
      const owned = adapter({ owner: byUser })
      await logIn(owned, 'ada', ['ada-laptop', 'ada-phone', 'ada-tablet'])
      await logIn(owned, 'bob', ['bob-laptop', 'bob-phone'])
      await owned.set('guest', sessionOf({ cart: 1 }))
      const ada = await owned.listByOwner('ada')
      expect(ada.map((each) => each.id)).toEqual(['ada-laptop', 'ada-phone', 'ada-tablet'])
      expect(ada.map((each) => each.session)).toEqual(
        ['laptop', 'phone', 'tablet'].map((device) => expect.objectContaining({ user: 'ada', device: `ada-${device}` })),
      )
      const stored = await core.findEntry('ada-phone')
      expect(ada[1].expiry).toEqual(stored!.expiry)
      expect(ada[1].session.cookie.expires).toEqual(stored!.expiry)
      expect(ada[1].created.getTime()).toBeLessThanOrEqual(Date.now() + 1000)
      expect(ada[0].created.getTime()).toBeLessThanOrEqual(ada[2].created.getTime())
      expect((await owned.listByOwner('bob')).map((each) => each.id)).toEqual(['bob-laptop', 'bob-phone'])
      expect(await owned.listByOwner('nobody')).toEqual([])
    })

    it('destroyByOwner logs one user out of every device and leaves the other user alone', async () => {
      const owned = adapter({ owner: byUser })
      await logIn(owned, 'ada', ['ada-laptop', 'ada-phone', 'ada-tablet'])
      await logIn(owned, 'bob', ['bob-laptop', 'bob-phone'])
      expect(await owned.destroyByOwner('ada')).toBe(3)
      for (const device of ['ada-laptop', 'ada-phone', 'ada-tablet']) expect(await owned.get(device)).toBeNull()
      expect(await owned.get('bob-laptop')).toMatchObject({ user: 'bob' })
      expect(await owned.get('bob-phone')).toMatchObject({ user: 'bob' })
      expect(await owned.listByOwner('ada')).toEqual([])
      // A device's request still in flight cannot log it back in.
      await owned.set('ada-phone', sessionOf({ user: 'ada' }))
      expect(await owned.get('ada-phone')).toBeNull()
      expect(await owned.destroyByOwner('ada')).toBe(0)
    })

    it('follows the session: logging out (no user any more) takes it off the owner\'s list', async () => {
      const owned = adapter({ owner: byUser })
      await owned.set('sid', sessionOf({ user: 'ada' }))
      await owned.set('sid', sessionOf({}))
      expect(await owned.listByOwner('ada')).toEqual([])
      expect(await owned.destroyByOwner('ada')).toBe(0)
      expect(await owned.get('sid')).not.toBeNull()
    })

    it('listByOwner leaves unreadable rows out and reports them', async () => {
      const owned = adapter({ owner: byUser })
      await owned.set('good', sessionOf({ user: 'ada' }))
      await core.commit('bad', Buffer.from('not json'), later(HOUR), 'ada')
      expect((await owned.listByOwner('ada')).map((each) => each.id)).toEqual(['good'])
      expect(reported.map((error) => error.message)).toEqual([expect.stringMatching(/could not be decoded/)])
    })

    it.each([
      ['throws', () => { throw new Error('hunter2') }, /owner\(\) threw Error/],
      ['returns a number', () => 42, /owner\(\) must return a string or undefined, got number/],
      ['returns null', () => null, /owner\(\) must return a string or undefined, got null/],
      ['returns an empty string', () => '', /owner\(\) must not be empty/],
    ])('an owner function that %s: a TypeError to the set callback, nothing written', async (_, owner, message) => {
      const broken = adapter({ owner: owner as never })
      const { calls } = await callbackCalls<void>((done) => broken.set('sid', sessionOf({ user: 'ada' }), done))
      expect(calls).toEqual([[expect.any(TypeError)]])
      expect((calls[0][0] as Error).message).toMatch(message)
      expect((calls[0][0] as Error).message).not.toMatch(/hunter2|ada/)
      expect(await rows()).toHaveLength(0)
    })

    it('destroyByOwner and listByOwner reject an owner that is not a non-empty string, and call back', async () => {
      await expect(store.destroyByOwner(42 as never)).rejects.toThrow(TypeError)
      await expect(store.listByOwner('')).rejects.toThrow(TypeError)
      const owned = adapter({ owner: byUser })
      await owned.set('sid', sessionOf({ user: 'ada' }))
      const list = await callbackCalls<unknown>((done) => owned.listByOwner('ada', done))
      expect(list.calls).toEqual([[null, [expect.objectContaining({ id: 'sid' })]]])
      const destroy = await callbackCalls<number>((done) => owned.destroyByOwner('ada', done))
      expect(destroy.calls).toEqual([[null, 1]])
    })
  })

  describe('absoluteTimeout', () => {
    it('ends a session at created + absoluteTimeout however often it is set and touched', async () => {
      const capped = adapter({ absoluteTimeout: 1500 })
      const start = Date.now()
      await capped.set('sid', sessionOf({ user: 'ada' }, later(HOUR)))
      // Rolling: every request moves the cookie an hour ahead; some also save.
      for (let i = 0; Date.now() - start < 1100; i++) {
        if (i % 2) await capped.set('sid', sessionOf({ user: 'ada', views: i }, later(HOUR)))
        else await capped.touch('sid', sessionOf({ user: 'ada' }, later(HOUR)))
        const found = await capped.get('sid')
        expect(found).toMatchObject({ user: 'ada' })
        // get shows the capped expiry, not the hour the cookie asked for.
        expect(new Date(found!.cookie.expires!).getTime()).toBeLessThanOrEqual(start + 1500 + 250)
        await sleep(200)
      }
      await sleep(Math.max(0, start + 1800 - Date.now()))
      await capped.touch('sid', sessionOf({ user: 'ada' }, later(HOUR)))
      expect(await capped.get('sid')).toBeNull()
      expect(await capped.length()).toBe(0)
    })

    it('a new session id starts a new lifetime', async () => {
      const capped = adapter({ absoluteTimeout: 1500 })
      await capped.set('first', sessionOf({}, later(HOUR)))
      await sleep(1000)
      await capped.set('second', sessionOf({}, later(HOUR)))
      await sleep(700)
      expect(await capped.get('first')).toBeNull()
      expect(await capped.get('second')).not.toBeNull()
    })
  })

  describe('hashTokens', () => {
    /** Every row of the table as text: token and data, tombstones included. */
    async function rawTable() {
      const all = await sql.unsafe<{ token: string; data: Buffer }[]>(`SELECT token, data FROM "${core.table}"`)
      return all.map((row) => `${row.token} ${row.data.toString('latin1')}`).join('\n')
    }

    it('stores no session id; get, set, touch and destroy work by id; all is keyed by hash', async () => {
      const hashed = adapter({ hashTokens: true })
      const ids = ['sid-ada-0123456789', 'sid-bob-0123456789']
      await hashed.set(ids[0], sessionOf({ user: 'ada' }))
      await hashed.set(ids[1], sessionOf({ user: 'bob' }))
      await hashed.touch(ids[0], sessionOf({ user: 'ada' }, later(2 * HOUR)))
      expect(await hashed.get(ids[0])).toMatchObject({ user: 'ada' })
      const table = await rawTable()
      expect(table).not.toContain('sid-')
      expect(table).toContain(hashToken(ids[0]))
      const all = await hashed.all()
      expect(Object.keys(all).sort()).toEqual(ids.map(hashToken).sort())
      expect(all[hashToken(ids[1])]).toMatchObject({ user: 'bob' })

      await hashed.destroy(ids[0])
      expect(await hashed.get(ids[0])).toBeNull()
      expect(await hashed.get(ids[1])).toMatchObject({ user: 'bob' })
      expect(await hashed.length()).toBe(1)
      expect(await rawTable()).not.toContain('sid-')
    })

    it('a stored hash is not a session id: get with it finds nothing', async () => {
      const hashed = adapter({ hashTokens: true })
      await hashed.set('sid', sessionOf({ user: 'ada' }))
      expect(await hashed.get(hashToken('sid'))).toBeNull()
    })

    it('listByOwner gives hashed ids too', async () => {
      const hashed = adapter({ hashTokens: true, owner: (session) => (session as { user?: string }).user })
      await hashed.set('sid', sessionOf({ user: 'ada' }))
      expect((await hashed.listByOwner('ada')).map((each) => each.id)).toEqual([hashToken('sid')])
    })

    it('an undecodable row is still removed by get', async () => {
      const hashed = adapter({ hashTokens: true })
      await hashed.set('bad', sessionOf())
      await sql.unsafe(`UPDATE "${core.table}" SET data = $1 WHERE token = $2`, [Buffer.from('not json'), hashToken('bad')])
      expect(await hashed.get('bad')).toBeNull()
      expect(await rows()).toHaveLength(0)
    })
  })

  describe('secret', () => {
    const SECRET = 'the first secret, long enough'
    const OLD_SECRET = 'the old secret, also long enough'
    const MARKER = 'plaintext-marker-4711'

    async function rawData(): Promise<Buffer[]> {
      return (await sql.unsafe<{ data: Buffer }[]>(`SELECT data FROM "${core.table}"`)).map((row) => row.data)
    }

    it('the table holds no plaintext of the session; get and all decrypt it', async () => {
      const sealed = adapter({ secret: SECRET })
      await sealed.set('sid', sessionOf({ note: MARKER }))
      const [data] = await rawData()
      expect(data.includes(MARKER)).toBe(false)
      expect(data.includes('cookie')).toBe(false)
      expect(await sealed.get('sid')).toMatchObject({ note: MARKER })
      expect((await sealed.all()).sid).toMatchObject({ note: MARKER })
      // The contrast: without a secret the marker is right there.
      await store.set('plain', sessionOf({ note: MARKER }))
      expect((await rawData()).some((bytes) => bytes.includes(MARKER))).toBe(true)
    })

    it('rotation: a secret listed second still decrypts, and new writes use the first', async () => {
      const before = adapter({ secret: OLD_SECRET })
      await before.set('old', sessionOf({ note: 'sealed with the old secret' }))
      const rotated = adapter({ secret: [SECRET, OLD_SECRET] })
      expect(await rotated.get('old')).toMatchObject({ note: 'sealed with the old secret' })
      await rotated.set('new', sessionOf({ note: 'sealed with the new secret' }))
      const newOnly = adapter({ secret: SECRET })
      expect(await newOnly.get('new')).toMatchObject({ note: 'sealed with the new secret' })
      // The old secret alone cannot read what the rotated store wrote.
      expect(await before.get('new')).toBeNull()
      expect(reported.map((error) => error.name)).toEqual(['DecryptionError'])
    })

    it('a tampered byte: get returns null and onError hears it, without id or data', async () => {
      const sealed = adapter({ secret: SECRET })
      const sid = 'sid-that-must-not-leak'
      await sealed.set(sid, sessionOf({ note: MARKER }))
      const [data] = await rawData()
      const tampered = Buffer.from(data)
      tampered[tampered.length - 20] ^= 0x01
      await sql.unsafe(`UPDATE "${core.table}" SET data = $1 WHERE token = $2`, [tampered, sid])
      expect(await sealed.get(sid)).toBeNull()
      expect(await sealed.all()).toEqual({})
      expect(reported).toHaveLength(2)
      for (const error of reported) {
        expect(error.message).toMatch(/could not be decrypted/)
        expect(error.message).not.toContain(sid)
        expect(error.message).not.toContain(MARKER)
      }
    })

    it('a row moved under another id does not decrypt there', async () => {
      const sealed = adapter({ secret: SECRET })
      await sealed.set('victim', sessionOf({ user: 'ada' }))
      const [data] = await rawData()
      await core.commit('attacker', data, later(HOUR))
      expect(await sealed.get('attacker')).toBeNull()
      expect(reported.map((error) => error.name)).toEqual(['DecryptionError'])
    })
  })

  describe('migrate', () => {
    it('creates a missing table at the current version, and calls back', async () => {
      const fresh = adapter({ table: uniqueTable('adapter_migrate') })
      const created = new PostgresStore(db.client, { ...backend.storeOptions, table: fresh.store.table, cleanupInterval: 0 })
      cores.push(created)
      expect(await created.schemaVersion()).toBe(0)
      const { calls } = await callbackCalls<void>((done) => fresh.migrate(done))
      expect(calls).toEqual([[null, undefined]])
      await fresh.migrate()
      await fresh.set('sid', sessionOf({ user: 'ada' }))
      expect(await fresh.get('sid')).toMatchObject({ user: 'ada' })
    })
  })

  describe('touchAfter', () => {
    // What express-session does on a request that only reads the session: get,
    // build req.session from it, reset the cookie's maxAge, then touch.
    async function readOnlyRequest(through: PostgresSessionStore, sid: string) {
      const data = await through.get(sid)
      const session = through.createSession({ sessionID: sid, sessionStore: through } as any, data!)
      session.touch()
      await through.touch(sid, session)
    }
    const storedExpiry = async (sid: string) => (await core.findEntry(sid))!.expiry.getTime()

    it('by default skips a touch that would move the expiry by less than a tenth of the lifetime', async () => {
      await store.set('sid', sessionOf({}, later(HOUR)))
      const before = await storedExpiry('sid')
      await sleep(50)
      await readOnlyRequest(store, 'sid')
      expect(await storedExpiry('sid')).toBe(before)
    })

    it('writes the touch of a short session once it moves by a tenth of its lifetime', async () => {
      await store.set('sid', sessionOf({}, later(2000)))
      const before = await storedExpiry('sid')
      await sleep(300)
      await readOnlyRequest(store, 'sid')
      expect(await storedExpiry('sid')).toBeGreaterThanOrEqual(before + 250)
    })

    it('with touchAfter: 0 writes every touch', async () => {
      const exact = adapter({ touchAfter: 0 })
      await exact.set('sid', sessionOf({}, later(HOUR)))
      const before = await storedExpiry('sid')
      await sleep(50)
      await readOnlyRequest(exact, 'sid')
      expect(await storedExpiry('sid')).toBeGreaterThan(before)
    })

    it('honours a touchAfter smaller than the lifetime cap', async () => {
      const everySecond = adapter({ touchAfter: 1 })
      await everySecond.set('sid', sessionOf({}, later(HOUR)))
      const before = await storedExpiry('sid')
      await sleep(1100)
      await readOnlyRequest(everySecond, 'sid')
      expect(await storedExpiry('sid')).toBeGreaterThan(before + 1000)
    })

    it('writes a touch for a session it did not read', async () => {
      await store.set('sid', sessionOf({}, later(HOUR)))
      const moved = later(HOUR + 1000)
      await store.touch('sid', sessionOf({}, moved))
      expect(await storedExpiry('sid')).toBe(moved.getTime())
    })

    it.each([
      ['a string', '60', TypeError],
      ['a negative number', -1, RangeError],
      ['Infinity', Infinity, RangeError],
    ])('rejects a touchAfter that is %s', (_, touchAfter, type) => {
      expect(() => new PostgresSessionStore({ sql, touchAfter } as unknown as PostgresSessionStoreOptions)).toThrow(type)
      expect(() => new PostgresSessionStore({ sql, touchAfter } as unknown as PostgresSessionStoreOptions)).toThrow(/touchAfter/)
    })
  })

  describe('all, length and clear', () => {
    it('all resolves to the active sessions keyed by id; length counts them', async () => {
      await store.set('a', sessionOf({ n: 1 }))
      await store.set('b', sessionOf({ n: 2 }))
      await core.commit('expired', Buffer.from(JSON.stringify(sessionOf({ n: 3 }))), new Date(Date.now() - 1000))
      const all = await store.all()
      expect(Object.keys(all).sort()).toEqual(['a', 'b'])
      expect(all.a).toMatchObject({ n: 1 })
      expect(all.b).toMatchObject({ n: 2 })
      expect(await store.length()).toBe(2)
    })

    it('all shows each session with its stored expiry, as get does after a touch', async () => {
      const session = sessionOf({ n: 1 })
      await store.set('a', session)
      const moved = later(2 * HOUR)
      await store.touch('a', sessionOf({ n: 1 }, moved))
      expect(new Date((await store.all()).a.cookie.expires as Date)).toEqual(moved)
      expect(new Date((await store.get('a'))!.cookie.expires as Date)).toEqual(moved)
    })

    it('all is an empty object and length 0 with no sessions', async () => {
      expect(await store.all()).toEqual({})
      expect(await store.length()).toBe(0)
    })

    it('a session id such as __proto__ is an ordinary key of all', async () => {
      await store.set('__proto__', sessionOf({ n: 1 }))
      const all = await store.all()
      expect(Object.keys(all)).toEqual(['__proto__'])
      expect(Object.getOwnPropertyDescriptor(all, '__proto__')?.value).toMatchObject({ n: 1 })
    })

    it('clear removes every session of the table, active and expired', async () => {
      await store.set('a', sessionOf())
      await core.commit('expired', Buffer.from('{}'), new Date(Date.now() - 1000))
      await store.clear()
      expect(await rows()).toHaveLength(0)
      expect(await store.length()).toBe(0)
    })
  })

  describe('callbacks', () => {
    it('each method calls back exactly once with (null, value) and returns nothing', async () => {
      const session = sessionOf({ user: 'ada' })
      const set = await callbackCalls<void>((done) => store.set('sid', session, done))
      expect(set.returned).toBeUndefined()
      expect(set.calls).toEqual([[null, undefined]])
      const get = await callbackCalls<SessionData | null>((done) => store.get('sid', done))
      expect(get.calls).toEqual([[null, expect.objectContaining({ user: 'ada' })]])
      const touch = await callbackCalls<void>((done) => store.touch('sid', session, done))
      expect(touch.calls).toEqual([[null, undefined]])
      const all = await callbackCalls<Record<string, SessionData>>((done) => store.all(done))
      expect(all.calls).toEqual([[null, { sid: expect.objectContaining({ user: 'ada' }) }]])
      const length = await callbackCalls<number>((done) => store.length(done))
      expect(length.calls).toEqual([[null, 1]])
      const destroy = await callbackCalls<void>((done) => store.destroy('sid', done))
      expect(destroy.calls).toEqual([[null, undefined]])
      const missing = await callbackCalls<SessionData | null>((done) => store.get('sid', done))
      expect(missing.calls).toEqual([[null, null]])
      const clear = await callbackCalls<void>((done) => store.clear(done))
      expect(clear.calls).toEqual([[null, undefined]])
    })

    it('a bad argument calls back once with a TypeError that does not echo it', async () => {
      const secret = 'x'.repeat(2000)
      const empty = await callbackCalls<SessionData | null>((done) => store.get('', done))
      expect(empty.calls).toEqual([[expect.any(TypeError)]])
      const long = await callbackCalls<void>((done) => store.set(secret, sessionOf(), done))
      expect(long.calls).toEqual([[expect.any(RangeError)]])
      expect((long.calls[0][0] as Error).message).not.toContain('xxxx')
      const noSession = await callbackCalls<void>((done) => store.set('sid', 'hunter2' as never, done))
      expect(noSession.calls).toEqual([[expect.any(TypeError)]])
      expect((noSession.calls[0][0] as Error).message).not.toContain('hunter2')
      expect(await rows()).toHaveLength(0)
    })

    it('a callback that is not a function is a TypeError before anything is written', () => {
      expect(() => store.set('sid', sessionOf(), 'done' as never)).toThrow(TypeError)
    })

    it('without a callback, each method returns a promise', async () => {
      const pending = store.length()
      expect(pending).toBeInstanceOf(Promise)
      await pending
    })
  })

  describe('database outages', () => {
    it('reach the callback and the promise as errors, not as crashes', async () => {
      const down = backend.open()
      await down.end()
      const broken = adapter(down.source)
      const viaCallback = await callbackCalls<SessionData | null>((done) => broken.get('sid', done))
      expect(viaCallback.calls).toEqual([[expect.any(Error)]])
      await expect(broken.set('sid', sessionOf())).rejects.toThrow()
      await expect(broken.length()).rejects.toThrow()
    })
  })

  describe('ownership', () => {
    it(`close stops the cleanup timer but never ends the caller's ${backend.driver === 'pg' ? 'pool' : 'sql'}`, async () => {
      const own = adapter({ cleanupInterval: 60_000 })
      await own.close()
      await own.close()
      expect(await adapter().length()).toBe(0)
    })

    it('an adapter on an existing PostgresStore stores through it and leaves it running', async () => {
      const shared = adapter({ sql: undefined, pool: undefined, table: undefined, cleanupInterval: undefined, coalesce: undefined, prepare: undefined, store: core })
      expect(shared.store).toBe(core)
      await shared.set('sid', sessionOf({ user: 'ada' }))
      await shared.close()
      expect(await core.find('sid')).not.toBeNull()
    })
  })
}, driverBackends)

describe('PostgresSessionStore with a connectionString [PGlite]', () => {
  it('opens its own pool and close() ends it', async () => {
    const table = uniqueTable('adapter_url')
    const sql = postgres(process.env.PGLITE_TEST_URL!, { onnotice: () => {} })
    const core = new PostgresStore(sql, { table, cleanupInterval: 0 })
    try {
      await core.migrate()
      const store = new PostgresSessionStore({ connectionString: process.env.PGLITE_TEST_URL!, table })
      await store.set('sid', sessionOf({ user: 'ada' }))
      expect(await core.find('sid')).not.toBeNull()
      await store.close()
      await expect(store.get('sid')).rejects.toThrow()
    } finally {
      await sql.unsafe(`DROP TABLE IF EXISTS "${table}"`)
      await sql.end({ timeout: 5 })
    }
  })
})

describe('PostgresSessionStore with a connectionString [PostgreSQL server]', () => {
  // PGlite has no synchronous_commit to speak of; the server shows the setting.
  const url = process.env.TEST_DATABASE_URL
  const onServer = url ? it : it.skip

  onServer('synchronousCommit: false sets synchronous_commit = off on the pool it opens', async () => {
    const relaxed = new PostgresSessionStore({ connectionString: url!, synchronousCommit: false, cleanupInterval: 0 })
    const durable = new PostgresSessionStore({ connectionString: url!, cleanupInterval: 0 })
    // ownSql: the pool the adapter opened; asked directly, as nothing else shows a session setting.
    const setting = async (store: PostgresSessionStore) =>
      (await (store as unknown as { ownSql: Sql })['ownSql']`SHOW synchronous_commit`)[0].synchronous_commit
    try {
      expect(await setting(relaxed)).toBe('off')
      expect(await setting(durable)).toBe('on')
    } finally {
      await relaxed.close()
      await durable.close()
    }
  })
})

describe('PostgresSessionStore construction', () => {
  // postgres.js connects lazily: this instance never opens a connection.
  const sql = postgres('postgres://nobody@127.0.0.1:1/none')
  const core = new PostgresStore(sql, { cleanupInterval: 0 })
  // node-postgres connects lazily too.
  const pool = new pg.Pool({ connectionString: 'postgres://nobody@127.0.0.1:1/none' })
  afterAll(async () => {
    core.stopCleanup()
    await Promise.all([sql.end({ timeout: 1 }), pool.end()])
  })

  const build = (options: unknown) => () => new PostgresSessionStore(options as PostgresSessionStoreOptions)

  it('accepts { sql }, { store } and every documented option', async () => {
    const full = new PostgresSessionStore({
      sql, table: 'app.sessions', cleanupInterval: 0, ttl: 60, serializer: JSON, disableTouch: true, onError: () => {},
      tombstones: false, absoluteTimeout: 60_000, hashTokens: true, secret: ['a secret of sixteen+', 'an older secret here'],
      owner: (session) => (session as { user?: string }).user, queryTimeout: 5000, coalesce: false,
    })
    await full.close()
    await new PostgresSessionStore({ store: core, ttl: () => 5 }).close()
  })

  it('accepts { pool }, a pg.Pool, with the core options, prepare among them', async () => {
    const onPool = new PostgresSessionStore({ pool, table: 'app.sessions', cleanupInterval: 0, prepare: false, hashTokens: true })
    await onPool.close()
    // close() leaves the caller's pool open.
    expect(pool.ended).toBe(false)
  })

  it.each([
    ['no options', undefined, TypeError, /options object/],
    ['none of sql, pool, store, connectionString', {}, TypeError, /exactly one of sql, pool, store or connectionString/],
    ['two of them', { sql, store: core }, TypeError, /exactly one/],
    ['sql and pool', { sql, pool }, TypeError, /exactly one/],
    ['a pool that is no pg.Pool', { pool: {} }, TypeError, /pool must be a node-postgres pool such as new pg\.Pool\(\), got an instance of Object/],
    ['a postgres.js instance as pool', { pool: sql }, TypeError, /pool must be a node-postgres pool/],
    ['a pg.Pool as sql', { sql: pool }, TypeError, /sql must be a postgres\.js instance such as postgres\(url\)/],
    ['prepare beside store', { store: core, prepare: false }, TypeError, /prepare configures/],
    ['a prepare string', { pool, prepare: 'no' }, TypeError, /prepare must be a boolean/],
    ['an unknown option', { sql, maxAge: 5 }, TypeError, /unknown option "maxAge"/],
    ['a store that is no PostgresStore', { store: {} }, TypeError, /store must be a PostgresStore/],
    ['table beside store', { store: core, table: 'x' }, TypeError, /table configures the PostgresStore/],
    ['tombstones beside store', { store: core, tombstones: false }, TypeError, /tombstones configures the PostgresStore/],
    ['absoluteTimeout beside store', { store: core, absoluteTimeout: 5 }, TypeError, /absoluteTimeout configures/],
    ['hashTokens beside store', { store: core, hashTokens: true }, TypeError, /hashTokens configures/],
    ['secret beside store', { store: core, secret: 'a secret of sixteen+' }, TypeError, /secret configures/],
    ['a tombstones string', { sql, tombstones: 'yes' }, TypeError, /tombstones must be a boolean/],
    ['an absoluteTimeout string', { sql, absoluteTimeout: '1h' }, TypeError, /absoluteTimeout must be a number/],
    ['an absoluteTimeout of 0', { sql, absoluteTimeout: 0 }, RangeError, /absoluteTimeout must be a whole number/],
    ['a fractional absoluteTimeout', { sql, absoluteTimeout: 1.5 }, RangeError, /absoluteTimeout/],
    ['a hashTokens number', { sql, hashTokens: 1 }, TypeError, /hashTokens must be a boolean/],
    ['a secret number', { sql, secret: 42 }, TypeError, /secret must be a string/],
    ['an empty secret list', { sql, secret: [] }, TypeError, /secret must be a string or a non-empty array/],
    ['a short secret', { sql, secret: 'short' }, RangeError, /secret must be at least 16 characters/],
    ['an owner that is no function', { sql, owner: 'user' }, TypeError, /owner must be a function/],
    ['queryTimeout beside store', { store: core, queryTimeout: 5 }, TypeError, /queryTimeout configures/],
    ['coalesce beside store', { store: core, coalesce: false }, TypeError, /coalesce configures/],
    ['a negative queryTimeout', { sql, queryTimeout: -1 }, RangeError, /queryTimeout/],
    ['a coalesce string', { sql, coalesce: 'no' }, TypeError, /coalesce must be a boolean/],
    ['an empty connectionString', { connectionString: '' }, TypeError, /connectionString/],
    ['synchronousCommit beside sql', { sql, synchronousCommit: false }, TypeError, /synchronousCommit applies to the pool/],
    ['a synchronousCommit string', { connectionString: 'postgres://x', synchronousCommit: 'off' }, TypeError, /synchronousCommit must be a boolean/],
    ['a ttl string', { sql, ttl: '1d' }, TypeError, /ttl must be a number/],
    ['a ttl of 0', { sql, ttl: 0 }, RangeError, /ttl must be a positive/],
    ['an infinite ttl', { sql, ttl: Infinity }, RangeError, /ttl/],
    ['a serializer without parse', { sql, serializer: { stringify: JSON.stringify } }, TypeError, /serializer/],
    ['a disableTouch string', { sql, disableTouch: 'yes' }, TypeError, /disableTouch/],
    ['an onError string', { sql, onError: 'log' }, TypeError, /onError/],
    ['a bad table', { sql, table: '' }, TypeError, /table/],
    ['a bad cleanupInterval', { sql, cleanupInterval: -1 }, RangeError, /cleanupInterval/],
    ['an sql that is no postgres.js instance', { sql: {} }, TypeError, /postgres.js instance/],
  ])('rejects %s', (_, options, type, message) => {
    expect(build(options)).toThrow(type)
    expect(build(options)).toThrow(message)
  })
})

describe('a callback that throws', () => {
  // Run in a child process: jest itself turns an uncaught exception into a test
  // failure, and that exception is exactly what this test expects to happen.
  const script = `
    require('ts-node').register({ transpileOnly: true, project: 'spec/tsconfig.json' })
    const Module = require('node:module')
    const resolve = Module._resolveFilename
    Module._resolveFilename = function (request, ...rest) {
      try { return resolve.call(this, request, ...rest) } catch (error) {
        if (!request.endsWith('.js')) throw error
        return resolve.call(this, request.replace(/\\.js$/, '.ts'), ...rest)
      }
    }
    const { PostgresStore, PostgresSessionStore } = require('./lib/index.ts')
    // A stand-in for postgres.js whose every query finds nothing.
    const sql = Object.assign(() => {}, { unsafe: async () => [] })
    const store = new PostgresSessionStore({ store: new PostgresStore(sql, { cleanupInterval: 0 }) })
    const calls = { found: 0, failed: 0 }
    const uncaught = []
    process.on('uncaughtException', (error) => uncaught.push(error.message))
    store.get('sid', () => { calls.found++; throw new Error('thrown after a result') })
    store.get('', () => { calls.failed++; throw new Error('thrown after an error') })
    setTimeout(() => console.log(JSON.stringify({ calls, uncaught })), 100)
  `

  it('surfaces as an uncaught exception and never causes a second call', async () => {
    const output = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, ['-e', script], { cwd: `${__dirname}/..` }, (error, stdout) =>
        error ? reject(error) : resolve(stdout))
    })
    expect(JSON.parse(output)).toEqual({
      calls: { found: 1, failed: 1 },
      uncaught: expect.arrayContaining(['thrown after a result', 'thrown after an error']),
    })
  })
})
