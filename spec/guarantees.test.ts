// The core's guarantees beyond pgxstore: tombstones, owners, absolute
// lifetime, hashed tokens, encryption at rest and in-place migration.
import { DecryptionError } from '../lib/encryption'
import { PostgresStore, type PostgresStoreOptions } from '../lib/postgres-store'
import { parseTableName } from '../lib/table'
import { hashToken } from '../lib/tokens'
import { connectForSuite, describeEachBackend, driverBackends, realDriverBackends, uniqueTable } from './support/backends'

const HOUR = 3600_000
const later = (ms: number) => new Date(Date.now() + ms)
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const SECRET = 'a secret of at least sixteen characters'

describeEachBackend('PostgresStore guarantees', (backend) => {
  const db = connectForSuite(backend)
  const stores: PostgresStore[] = []

  async function newStore(options: PostgresStoreOptions = {}) {
    const store = new PostgresStore(db().client, { ...backend.storeOptions, table: uniqueTable(), cleanupInterval: 0, ...options })
    stores.push(store)
    await store.migrate()
    return store
  }

  async function rawRows(store: PostgresStore) {
    return db().sql.unsafe<{ token: string; data: Buffer; expiry: Date; created: Date; owner: string | null; destroyed: boolean }[]>(
      `SELECT token, data, expiry, created, owner, destroyed FROM ${parseTableName(store.table).quoted} ORDER BY token`,
    )
  }

  afterEach(() => {
    for (const store of stores.splice(0)) store.stopCleanup()
  })

  describe('a deleted token stays deleted (tombstones, the default)', () => {
    it('refuses a later commit and touch, and keeps no data', async () => {
      const store = await newStore()
      await store.commit('tok', Buffer.from('secret data'), later(HOUR), 'ada')
      await store.delete('tok')
      await store.commit('tok', Buffer.from('written back'), later(HOUR))
      expect(await store.touch('tok', later(2 * HOUR))).toBe(false)
      expect(await store.find('tok')).toBeNull()
      const [row] = await rawRows(store)
      expect(row).toMatchObject({ token: 'tok', data: Buffer.alloc(0), owner: null, destroyed: true })
    })

    it('also guards a token deleted before it was ever stored', async () => {
      const store = await newStore()
      await store.delete('never-stored')
      await store.commit('never-stored', Buffer.from('x'), later(HOUR))
      expect(await store.find('never-stored')).toBeNull()
    })

    it('keeps the tombstone at least an hour, and as long as the session would have lived', async () => {
      const store = await newStore()
      const longLived = later(30 * 24 * HOUR)
      await store.commit('long', Buffer.from('x'), longLived)
      await store.commit('short', Buffer.from('x'), later(1000))
      await store.delete('long')
      await store.delete('short')
      const [long, short] = await rawRows(store)
      expect(long.expiry).toEqual(longLived)
      expect(short.expiry.getTime()).toBeGreaterThan(Date.now() + HOUR - 60_000)
    })

    it('stores a new token normally', async () => {
      const store = await newStore()
      await store.delete('old')
      await store.commit('new', Buffer.from('n'), later(HOUR))
      expect(await store.find('new')).toEqual(Buffer.from('n'))
    })

    it('leaves tombstones out of all, count and stats, and clear removes them', async () => {
      const store = await newStore()
      await store.commit('live', Buffer.from('l'), later(HOUR))
      await store.commit('dead', Buffer.from('d'), later(HOUR))
      await store.delete('dead')
      expect([...(await store.all()).keys()]).toEqual(['live'])
      expect(await store.count()).toBe(1)
      expect((await store.stats()).active).toBe(1)
      expect(await store.clear()).toBe(2)
    })

    it('with tombstones: false, delete removes the row and the token can be stored again', async () => {
      const store = await newStore({ tombstones: false })
      await store.commit('tok', Buffer.from('a'), later(HOUR))
      await store.delete('tok')
      expect(await rawRows(store)).toHaveLength(0)
      await store.commit('tok', Buffer.from('b'), later(HOUR))
      expect(await store.find('tok')).toEqual(Buffer.from('b'))
    })
  })

  describe('owners', () => {
    it('lists an owner’s active sessions, oldest first, with expiry, creation time and data', async () => {
      const store = await newStore()
      await store.commit('laptop', Buffer.from('L'), later(HOUR), 'ada')
      await sleep(5)
      await store.commit('phone', Buffer.from('P'), later(2 * HOUR), 'ada')
      await store.commit('other', Buffer.from('O'), later(HOUR), 'bob')
      await store.commit('gone', Buffer.from('G'), new Date(Date.now() - 1000), 'ada')
      const listed = await store.listByOwner('ada')
      expect(listed.map((entry) => [entry.token, String(entry.data)])).toEqual([['laptop', 'L'], ['phone', 'P']])
      expect(listed[0].created.getTime()).toBeLessThanOrEqual(listed[1].created.getTime())
      expect(listed[1].expiry.getTime()).toBeGreaterThan(Date.now() + HOUR)
      expect(await store.listByOwner('nobody')).toEqual([])
    })

    it('destroyByOwner ends every session of that owner, and only those', async () => {
      const store = await newStore()
      await store.commit('a1', Buffer.from('x'), later(HOUR), 'ada')
      await store.commit('a2', Buffer.from('x'), later(HOUR), 'ada')
      await store.commit('b1', Buffer.from('x'), later(HOUR), 'bob')
      expect(await store.destroyByOwner('ada')).toBe(2)
      expect(await store.find('a1')).toBeNull()
      expect(await store.find('a2')).toBeNull()
      expect(await store.find('b1')).toEqual(Buffer.from('x'))
      await store.commit('a1', Buffer.from('back'), later(HOUR), 'ada')
      expect(await store.find('a1')).toBeNull()
      expect(await store.destroyByOwner('ada')).toBe(0)
    })

    it('follows the owner given by the latest commit', async () => {
      const store = await newStore()
      await store.commit('tok', Buffer.from('x'), later(HOUR), 'ada')
      await store.commit('tok', Buffer.from('x'), later(HOUR))
      expect(await store.listByOwner('ada')).toEqual([])
    })

    it.each([
      ['a number', 42, TypeError],
      ['an empty string', '', TypeError],
    ])('rejects an owner that is %s', async (_, owner, type) => {
      const store = await newStore()
      await expect(store.commit('tok', Buffer.from('x'), later(HOUR), owner as string)).rejects.toThrow(type)
      await expect(store.destroyByOwner(owner as string)).rejects.toThrow(type)
      await expect(store.listByOwner(owner as string)).rejects.toThrow(type)
      expect(await rawRows(store)).toHaveLength(0)
    })
  })

  describe('absoluteTimeout', () => {
    it('ends a session at its creation time plus the timeout, however it is extended', async () => {
      const store = await newStore({ absoluteTimeout: 800 })
      await store.commit('tok', Buffer.from('x'), later(HOUR))
      const entry = await store.findEntry('tok')
      const [{ created }] = await rawRows(store)
      const lifetime = entry!.expiry.getTime() - created.getTime()
      // pg-mem reads now() once per call, not per statement: a millisecond or two apart.
      expect(lifetime).toBeLessThanOrEqual(800)
      expect(lifetime).toBeGreaterThan(790)
      await sleep(300)
      expect(await store.touch('tok', later(HOUR))).toBe(true)
      await store.commit('tok', Buffer.from('y'), later(HOUR))
      expect((await store.findEntry('tok'))!.expiry.getTime()).toBeLessThanOrEqual(created.getTime() + 800)
      await sleep(700)
      expect(await store.find('tok')).toBeNull()
    })

    it('leaves a shorter expiry alone', async () => {
      const store = await newStore({ absoluteTimeout: HOUR })
      const expiry = later(1000)
      await store.commit('tok', Buffer.from('x'), expiry)
      expect((await store.findEntry('tok'))!.expiry).toEqual(expiry)
    })

    it('gives an expired token committed again a new life', async () => {
      const store = await newStore({ absoluteTimeout: HOUR })
      await store.commit('tok', Buffer.from('x'), new Date(Date.now() - 1000))
      await store.commit('tok', Buffer.from('y'), later(1000))
      expect(await store.find('tok')).toEqual(Buffer.from('y'))
    })
  })

  describe('hashTokens', () => {
    it('stores only the SHA-256 of each token', async () => {
      const store = await newStore({ hashTokens: true })
      await store.commit('plain-session-id', Buffer.from('x'), later(HOUR), 'ada')
      const rows = await rawRows(store)
      expect(rows.map((row) => row.token)).toEqual([hashToken('plain-session-id')])
      expect(rows[0].token).toMatch(/^[0-9a-f]{64}$/)
      expect(await store.find('plain-session-id')).toEqual(Buffer.from('x'))
      expect(await store.find(hashToken('plain-session-id'))).toBeNull()
    })

    it('all and listByOwner return the hashes; touch and delete take the token', async () => {
      const store = await newStore({ hashTokens: true })
      await store.commit('sid', Buffer.from('x'), later(HOUR), 'ada')
      expect([...(await store.all()).keys()]).toEqual([hashToken('sid')])
      expect((await store.listByOwner('ada')).map((entry) => entry.token)).toEqual([hashToken('sid')])
      expect(await store.touch('sid', later(2 * HOUR))).toBe(true)
      await store.delete('sid')
      expect(await store.find('sid')).toBeNull()
    })
  })

  describe('secret (encryption at rest)', () => {
    const marker = 'alice@example.com'

    it('stores no plaintext and reads it back', async () => {
      const store = await newStore({ secret: SECRET })
      await store.commit('tok', Buffer.from(`{"user":"${marker}"}`), later(HOUR))
      const [row] = await rawRows(store)
      expect(row.data.includes(Buffer.from(marker))).toBe(false)
      expect(String(await store.find('tok'))).toContain(marker)
      expect(String((await store.all()).get('tok'))).toContain(marker)
    })

    it('rotates: a store with a new first secret reads old rows and writes with the new one', async () => {
      const old = await newStore({ secret: 'the old secret, sixteen+ chars' })
      await old.commit('tok', Buffer.from('v1'), later(HOUR))
      const rotated = new PostgresStore(db().client, { ...backend.storeOptions, table: old.table, cleanupInterval: 0, secret: [SECRET, 'the old secret, sixteen+ chars'] })
      expect(await rotated.find('tok')).toEqual(Buffer.from('v1'))
      await rotated.commit('tok', Buffer.from('v2'), later(HOUR))
      const onlyNew = new PostgresStore(db().client, { ...backend.storeOptions, table: old.table, cleanupInterval: 0, secret: SECRET })
      expect(await onlyNew.find('tok')).toEqual(Buffer.from('v2'))
    })

    it('reads a tampered row, or one copied under another token, as missing and reports it', async () => {
      const errors: Error[] = []
      const store = await newStore({ secret: SECRET, onError: (error) => errors.push(error) })
      await store.commit('victim', Buffer.from(marker), later(HOUR))
      const table = parseTableName(store.table).quoted
      await db().sql.unsafe(`INSERT INTO ${table} (token, data, expiry) SELECT 'attacker', data, expiry FROM ${table} WHERE token = 'victim'`)
      expect(await store.find('attacker')).toBeNull()
      await db().sql.unsafe(`UPDATE ${table} SET data = overlay(data placing '\\xff'::bytea from 30 for 1) WHERE token = 'victim'`)
      expect(await store.find('victim')).toBeNull()
      expect(await store.all()).toEqual(new Map())
      expect(errors.length).toBeGreaterThanOrEqual(3)
      for (const error of errors) {
        expect(error).toBeInstanceOf(DecryptionError)
        expect(error.message).not.toMatch(/victim|attacker|alice/)
      }
      expect(await rawRows(store)).toHaveLength(2)
    })
  })
}, driverBackends)

// pg-mem has no table comments (obj_description), where the version is recorded.
describeEachBackend('migrate', (backend) => {
  const db = connectForSuite(backend)

  it('reports 0 for a missing table and 4 for a new one', async () => {
    const store = new PostgresStore(db().client, { ...backend.storeOptions, table: uniqueTable(), cleanupInterval: 0 })
    expect(await store.schemaVersion()).toBe(0)
    await store.migrate()
    expect(await store.schemaVersion()).toBe(4)
  })

  it('upgrades a version 1 table in place without losing a row, from several stores at once', async () => {
    const table = uniqueTable('v1')
    const quoted = parseTableName(table).quoted
    // pgxstore's table, as version 1 of schema.sql created it.
    await db().sql.unsafe(`CREATE TABLE ${quoted} (token TEXT PRIMARY KEY, data BYTEA NOT NULL, expiry TIMESTAMPTZ NOT NULL)`)
    await db().sql.unsafe(`CREATE INDEX ON ${quoted} (expiry)`)
    const sessions = Array.from({ length: 300 }, (_, i) => ({ token: `t${i}`, data: Buffer.from([i % 256, 0, 255]) }))
    const v1 = new PostgresStore(db().client, { ...backend.storeOptions, table, cleanupInterval: 0 })
    expect(await v1.schemaVersion()).toBe(1)
    for (const { token, data } of sessions) {
      await db().sql.unsafe(`INSERT INTO ${quoted} (token, data, expiry) VALUES ($1, $2, $3)`, [token, data, later(HOUR)])
    }

    const racing = Array.from({ length: 4 }, () => new PostgresStore(db().client, { ...backend.storeOptions, table, cleanupInterval: 0 }))
    await Promise.all(racing.map((store) => store.migrate()))
    await racing[0].migrate()

    expect(await racing[0].schemaVersion()).toBe(4)
    const all = await racing[1].all()
    expect(all.size).toBe(sessions.length)
    for (const { token, data } of sessions) expect(all.get(token)).toEqual(data)
    await racing[2].commit('t0', Buffer.from('owned'), later(HOUR), 'ada')
    expect((await racing[2].listByOwner('ada')).map((entry) => entry.token)).toEqual(['t0'])
  })

  it('upgrades a version 2 table in place, keeping rows, owners and tombstones, and versions its writes', async () => {
    const table = uniqueTable('v2')
    const quoted = parseTableName(table).quoted
    // The table as version 2 of schema.sql created it.
    await db().sql.unsafe(
      `CREATE TABLE ${quoted} (token TEXT PRIMARY KEY, data BYTEA NOT NULL, expiry TIMESTAMPTZ NOT NULL, ` +
      'created TIMESTAMPTZ NOT NULL DEFAULT now(), owner TEXT, destroyed BOOLEAN NOT NULL DEFAULT false)',
    )
    await db().sql.unsafe(`COMMENT ON TABLE ${quoted} IS 'express-session-postgres schema 2'`)
    await db().sql.unsafe(`INSERT INTO ${quoted} (token, data, expiry, owner) VALUES ('kept', 'data', $1, 'ada')`, [later(HOUR)])
    await db().sql.unsafe(`INSERT INTO ${quoted} (token, data, expiry, destroyed) VALUES ('gone', '', $1, true)`, [later(HOUR)])
    const store = new PostgresStore(db().client, { ...backend.storeOptions, table, cleanupInterval: 0 })
    expect(await store.schemaVersion()).toBe(2)

    await Promise.all([store.migrate(), store.migrate()])

    expect(await store.schemaVersion()).toBe(4)
    const kept = (await store.findEntry('kept'))!
    expect(kept).toEqual({ data: Buffer.from('data'), expiry: expect.any(Date), version: '0' })
    expect((await store.listByOwner('ada')).map((entry) => entry.token)).toEqual(['kept'])
    await store.commit('gone', Buffer.from('back?'), later(HOUR))
    expect(await store.find('gone')).toBeNull()
    expect(await store.commitIfVersion('kept', Buffer.from('new'), later(HOUR), 'ada', kept.version)).toEqual({ outcome: 'written', version: '1' })
  })
}, realDriverBackends)

// Thousands of interleavings need a server with real row locks and real
// concurrency: pg-mem runs one statement at a time, and PGlite has a single backend.
describeEachBackend('a destroyed session is never resurrected', (backend) => {
  const db = connectForSuite(backend, { max: 16 })

  // Coalesced, the writes meet as batches; one statement per call, as single rows.
  it.each([true, false])('under thousands of interleavings of commit and touch against delete (coalesce: %s)', async (coalesce) => {
    const store = new PostgresStore(db().client, { ...backend.storeOptions, coalesce, table: uniqueTable('race'), cleanupInterval: 0 })
    await store.migrate()
    const tokens = Array.from({ length: 1500 }, (_, i) => `race-${i}`)
    await Promise.all(tokens.map((token) => store.commit(token, Buffer.from('v0'), later(HOUR))))
    const jitter = () => sleep(Math.floor(Math.random() * 3))

    let lateWrites = 0
    await Promise.all(tokens.map(async (token) => {
      // Requests that read the session before the logout write it back
      // around the delete, in every order; some only after it resolved.
      const deleted = jitter().then(() => store.delete(token))
      const racers = Array.from({ length: 3 }, async (_, i) => {
        await jitter()
        if (i === 2) {
          await deleted
          lateWrites++
        }
        await (i === 1 ? store.touch(token, later(2 * HOUR)) : store.commit(token, Buffer.from(`v${i + 1}`), later(2 * HOUR)))
      })
      await Promise.all([deleted, ...racers])
    }))

    expect(lateWrites).toBe(tokens.length)
    const survivors = (await Promise.all(tokens.map((token) => store.find(token)))).filter((found) => found !== null)
    expect(survivors).toHaveLength(0)
    expect(await store.count()).toBe(0)
  })
}, realDriverBackends.filter((backend) => backend.name !== 'PGlite'))

// Advisory locks need separate backends: PGlite runs every connection in one,
// and pg-mem has none (its stub always grants the lock).
describeEachBackend('stores sharing a table sweep one at a time', (backend) => {
  const db = connectForSuite(backend)

  it('a sweep that finds another store sweeping deletes nothing and resolves 0', async () => {
    const store = new PostgresStore(db().client, { ...backend.storeOptions, table: uniqueTable('sweep'), cleanupInterval: 0 })
    await store.migrate()
    for (let i = 0; i < 3; i++) await store.commit(`old-${i}`, Buffer.from('x'), new Date(Date.now() - 1000))

    let release!: () => void
    const held = new Promise<void>((resolve) => (release = resolve))
    let locked!: () => void
    const isLocked = new Promise<void>((resolve) => (locked = resolve))
    // Another store's sweep, holding the table's cleanup lock in its transaction.
    const otherSweep = db().sql.begin(async (tx) => {
      await tx.unsafe('SELECT pg_advisory_xact_lock(hashtext($1))', [`express-session-postgres:cleanup:${store.table}`])
      locked()
      await held
    })
    await isLocked
    expect(await store.deleteExpired()).toBe(0)
    release()
    await otherSweep
    expect(await store.deleteExpired()).toBe(3)
  })
}, realDriverBackends.filter((backend) => backend.name !== 'PGlite'))

describeEachBackend('iterate', (backend) => {
  const db = connectForSuite(backend)

  it('yields every active session, in batches, and nothing else', async () => {
    const store = new PostgresStore(db().client, { ...backend.storeOptions, table: uniqueTable('iter'), cleanupInterval: 0 })
    await store.migrate()
    for (let i = 0; i < 25; i++) await store.commit(`live-${i}`, Buffer.from([i]), later(HOUR))
    await store.commit('expired', Buffer.from('e'), new Date(Date.now() - 1000))
    await store.commit('destroyed', Buffer.from('d'), later(HOUR))
    await store.delete('destroyed')
    const seen = new Map<string, Buffer>()
    for await (const [token, data] of store.iterate(7)) seen.set(token, data)
    expect(seen).toEqual(await store.all())
    expect(seen.size).toBe(25)
    await expect(store.iterate(0).next()).rejects.toThrow(RangeError)
  })
}, driverBackends)
