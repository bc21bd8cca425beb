// What only the node-postgres driver can get wrong: a pg.Pool lends out
// clients, and every way a call can end (a timeout, a failed transaction, a
// loop that stops early) must give its client back, or the pool runs dry.
// Each test uses a pool of one client, so a client kept is the next call lost.
// The contract itself runs on pg with every other suite (support/backends.ts).
import pg from 'pg'
import postgres from 'postgres'
import { PostgresStore, type PostgresStoreOptions } from '../lib/postgres-store'
import { QueryTimeoutError } from '../lib/query-timeout'
import { uniqueTable } from './support/backends'

const url = process.env.TEST_DATABASE_URL
const describeOnServer = url ? describe : describe.skip
const HOUR = 3600_000
const later = (ms: number) => new Date(Date.now() + ms)

describeOnServer('a pg.Pool of one client [PostgreSQL server, pg]', () => {
  let pool: pg.Pool
  const stores: PostgresStore[] = []

  async function newStore(options: PostgresStoreOptions = {}) {
    const store = new PostgresStore(pool, { table: uniqueTable('pg_pool'), cleanupInterval: 0, ...options })
    stores.push(store)
    await store.migrate()
    return store
  }

  beforeEach(() => {
    pool = new pg.Pool({ connectionString: url, max: 1 })
    pool.on('error', () => {})
  })
  afterEach(async () => {
    for (const store of stores.splice(0)) await pool.query(`DROP TABLE IF EXISTS "${store.table}"`)
    await pool.end()
  })

  it('gets its client back from a statement that timed out, while the statement is still blocked', async () => {
    const store = await newStore({ queryTimeout: 1000 })
    await store.commit('locked', Buffer.from('v1'), later(HOUR))
    const other = postgres(url!, { max: 1, onnotice: () => {} })
    let release!: () => void
    const held = new Promise<void>((resolve) => (release = resolve))
    let locked!: () => void
    const isLocked = new Promise<void>((resolve) => (locked = resolve))
    const holder = other.begin(async (tx) => {
      await tx.unsafe(`SELECT 1 FROM "${store.table}" WHERE token = 'locked' FOR UPDATE`)
      locked()
      await held
    })
    try {
      await isLocked
      await expect(store.commit('locked', Buffer.from('v2'), later(HOUR))).rejects.toThrow(QueryTimeoutError)
      // The row is still locked: only a client given back can answer this.
      expect(await store.find('locked')).toEqual(Buffer.from('v1'))
    } finally {
      release()
      await holder
      await other.end({ timeout: 1 })
    }
  })

  it('gets its client back from a transaction that failed', async () => {
    const store = await newStore()
    const missing = new PostgresStore(pool, { table: uniqueTable('pg_missing'), cleanupInterval: 0 })
    await expect(missing.deleteExpired()).rejects.toMatchObject({ code: '42P01' })
    await store.commit('tok', Buffer.from('x'), later(HOUR))
    expect(await store.count()).toBe(1)
  })

  it('gets its client back from an iterate loop that stops early, and from one that ends', async () => {
    const store = await newStore()
    for (let i = 0; i < 5; i++) await store.commit(`tok-${i}`, Buffer.from([i]), later(HOUR))
    for await (const _ of store.iterate(2)) break
    expect(await store.count()).toBe(5)
    let seen = 0
    for await (const _ of store.iterate(2)) seen++
    expect(seen).toBe(5)
    expect(await store.count()).toBe(5)
  })

  it('prepares each statement once per connection, and none with prepare: false (for PgBouncer)', async () => {
    const preparedNames = async () =>
      (await pool.query<{ name: string }>('SELECT name FROM pg_prepared_statements')).rows.map((row) => row.name)
    const unprepared = await newStore({ prepare: false })
    await unprepared.find('tok')
    await unprepared.find('tok')
    expect(await preparedNames()).toEqual([])
    const prepared = await newStore()
    await prepared.find('tok')
    const afterFirstFind = await preparedNames()
    await prepared.find('tok')
    expect(await preparedNames()).toEqual(afterFirstFind)
    // migrate's, schemaVersion's and find's statements, each under a name of its text's hash.
    expect(afterFirstFind).toHaveLength(3)
    for (const name of afterFirstFind) expect(name).toMatch(/^esp_[0-9a-f]{32}$/)
  })
})

// pg connects to one address; following a failover is the address's job (README: High availability).
test('primaryOnly with a pg.Pool is a TypeError that says what to do instead', () => {
  const pool = new pg.Pool({ connectionString: 'postgres://nobody@127.0.0.1:1/none' })
  expect(() => new PostgresStore(pool, { primaryOnly: true })).toThrow(TypeError)
  expect(() => new PostgresStore(pool, { primaryOnly: true })).toThrow(/address that always leads to the primary/)
})
