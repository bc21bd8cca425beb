// The table's layout since schema 4: the sweep finds due rows through an index
// on sweep_at, which writes leave alone unless they move an expiry earlier, so
// a set or touch of an active session is a HOT update (bench/LAYOUT.md).
// Checked on real PostgreSQL: pg-mem has no HOT updates, planner or statistics.
import pg from 'pg'
import { buildQueries, PostgresStore } from '../lib/postgres-store'
import { parseTableName, quoteIdentifier } from '../lib/table'
import { connectForSuite, describeEachBackend, realDriverBackends, uniqueTable, type Backend, type Connection } from './support/backends'

const HOUR = 3600_000
const later = (ms: number) => new Date(Date.now() + ms)
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

function newStore(db: Connection, backend: Backend, table = uniqueTable('sweep'), options = {}) {
  return new PostgresStore(db.client, { ...backend.storeOptions, table, cleanupInterval: 0, ...options })
}

describeEachBackend('the sweep index (schema 4)', (backend) => {
  const db = connectForSuite(backend)

  it('keeps sweep_at at or before the expiry, whatever writes a row takes', async () => {
    const store = newStore(db(), backend, uniqueTable('sweep'), { absoluteTimeout: 2 * HOUR })
    await store.migrate()
    await store.commit('extended', Buffer.from('a'), later(HOUR))
    await store.touch('extended', later(3 * HOUR)) // capped by absoluteTimeout
    await store.commit('shortened', Buffer.from('b'), later(HOUR))
    await store.commit('shortened', Buffer.from('b'), later(60_000))
    const read = (await store.findEntry('extended'))!
    await store.commitIfVersion('extended', Buffer.from('c'), later(90 * 60_000), null, read.version)
    await store.commit('owned', Buffer.from('d'), later(HOUR), 'ada')
    await store.destroyByOwner('ada')
    await store.delete('extended')
    await store.delete('never-stored')

    const rows = await db().sql.unsafe<{ token: string; behind: boolean; due: boolean }[]>(
      `SELECT token, sweep_at <= expiry AS behind, sweep_at <= now() AS due FROM ${parseTableName(store.table).quoted} ORDER BY token`,
    )
    expect(rows.map((row) => row.token)).toEqual(['extended', 'never-stored', 'owned', 'shortened'])
    for (const row of rows) expect(row).toMatchObject({ behind: true, due: false })
  })

  it('upgrades a version 3 table: rows are swept as before, and rows that old processes insert meanwhile too', async () => {
    const table = uniqueTable('v3')
    const quoted = parseTableName(table).quoted
    // The table as version 3 of schema.sql created it.
    await db().sql.unsafe(
      `CREATE TABLE ${quoted} (token TEXT PRIMARY KEY, data BYTEA NOT NULL, expiry TIMESTAMPTZ NOT NULL, ` +
      'created TIMESTAMPTZ NOT NULL DEFAULT now(), owner TEXT, destroyed BOOLEAN NOT NULL DEFAULT false, ' +
      'version BIGINT NOT NULL DEFAULT 0)',
    )
    await db().sql.unsafe(`CREATE INDEX ${quoteIdentifier(`${table}_expiry_idx`)} ON ${quoted} (expiry)`)
    await db().sql.unsafe(`COMMENT ON TABLE ${quoted} IS 'express-session-postgres schema 3'`)
    const insertAsVersion3 = (token: string, expiry: Date) =>
      db().sql.unsafe(`INSERT INTO ${quoted} (token, data, expiry, version) VALUES ($1, 'x', $2, 7)`, [token, expiry])
    for (let i = 0; i < 50; i++) await insertAsVersion3(`live-${i}`, later(HOUR))
    await insertAsVersion3('expired-before', new Date(Date.now() - 1000))
    const racing = Array.from({ length: 3 }, () => newStore(db(), backend, table))
    expect(await racing[0].schemaVersion()).toBe(3)

    await Promise.all(racing.map((store) => store.migrate()))

    const store = racing[0]
    expect(await store.schemaVersion()).toBe(4)
    const indexes = await db().sql.unsafe<{ indexname: string }[]>(
      'SELECT indexname FROM pg_indexes WHERE tablename = $1 ORDER BY indexname', [table],
    )
    expect(indexes.map((index) => index.indexname)).toEqual([`${table}_owner_idx`, `${table}_pkey`, `${table}_sweep_idx`])
    await insertAsVersion3('expired-during-rollout', new Date(Date.now() - 1000))
    expect(await store.deleteExpired()).toBe(2)
    expect(await store.count()).toBe(50)
    expect((await store.findEntry('live-0'))?.version).toBe('7')
    const [{ unfiled }] = await db().sql.unsafe<{ unfiled: number }[]>(
      `SELECT count(*)::int AS unfiled FROM ${quoted} WHERE sweep_at <> expiry`,
    )
    expect(unfiled).toBe(0)
    expect(await store.deleteExpired()).toBe(0)
  })
}, realDriverBackends)

// Plans and statistics: the server, where they are PostgreSQL's own and each
// connection is its own backend (PgBouncer hands statements to any of them).
const serverBackends = realDriverBackends.filter((backend) => backend.name === 'PostgreSQL server')

describeEachBackend('writes at the floor', (backend) => {
  // One connection, so the backend whose statistics the test flushes is the one that wrote.
  const db = connectForSuite(backend, { max: 1 })

  it('makes a set or touch of an active session a HOT update (no new index entries)', async () => {
    const store = newStore(db(), backend)
    await store.migrate()
    const tokens = Array.from({ length: 50 }, (_, i) => `hot-${i}`)
    for (const token of tokens) await store.commit(token, Buffer.from(`{"n":0,"token":"${token}"}`), later(HOUR))
    const before = await updateCounts(db(), store.table)
    for (let round = 1; round <= 4; round++) {
      for (const token of tokens) {
        await store.touch(token, later(HOUR + round * 60_000))
        await store.commit(token, Buffer.from(`{"n":${round},"token":"${token}"}`), later(HOUR + round * 61_000))
      }
    }
    const after = await updateCounts(db(), store.table, before.updates + tokens.length * 8)
    const updates = after.updates - before.updates
    const hot = after.hot - before.hot
    expect(updates).toBe(tokens.length * 8)
    expect(hot / updates).toBeGreaterThanOrEqual(0.9)
  })
}, serverBackends)

describeEachBackend('a sweep batch on a large table', (backend) => {
  const db = connectForSuite(backend)

  it('reads the sweep index and the primary key, never the whole table', async () => {
    const store = newStore(db(), backend)
    await store.migrate()
    const quoted = parseTableName(store.table).quoted
    await db().sql.unsafe(
      `INSERT INTO ${quoted} (token, data, expiry, sweep_at) ` +
      "SELECT 'live-' || i, 'x', now() + interval '1 day', now() + interval '1 day' FROM generate_series(1, 40000) AS i",
    )
    await db().sql.unsafe(
      `INSERT INTO ${quoted} (token, data, expiry, sweep_at) ` +
      "SELECT 'old-' || i, 'x', now() - interval '1 minute', now() - interval '1 minute' FROM generate_series(1, 1000) AS i",
    )
    await db().sql.unsafe(`ANALYZE ${quoted}`)
    const queries = buildQueries(quoted, true)
    for (const statement of [queries.deleteExpiredBatch, queries.refileBatch]) {
      const plan = await db().sql.unsafe<{ 'QUERY PLAN': string }[]>(`EXPLAIN ${statement.replace('$1', '5000')}`)
      const text = plan.map((line) => line['QUERY PLAN']).join('\n')
      expect(text).not.toMatch(/Seq Scan/)
      expect(text).toContain(`${store.table}_sweep_idx`)
    }
    expect(await store.deleteExpired()).toBe(1000)
  })
}, serverBackends.filter((backend) => backend.driver === 'postgres.js'))

// n_tup_upd and n_tup_hot_upd of the table, after the store's one backend has
// published its pending statistics (PostgreSQL 15 publishes them at most once
// a second otherwise); waits until `expected` updates are visible.
async function updateCounts(db: Connection, table: string, expected = 0): Promise<{ updates: number; hot: number }> {
  const flush = 'SELECT pg_stat_force_next_flush() FROM (SELECT 1 FROM pg_namespace LIMIT 1) AS catalog'
  if (db.client instanceof pg.Pool) await db.client.query(flush)
  else await db.sql.unsafe(flush)
  for (let attempt = 0; ; attempt++) {
    const [row] = await db.sql.unsafe<{ updates: number; hot: number }[]>(
      'SELECT n_tup_upd::int AS updates, n_tup_hot_upd::int AS hot FROM pg_stat_user_tables WHERE relid = to_regclass($1)',
      [parseTableName(table).quoted],
    )
    if (row.updates >= expected || attempt === 20) return row
    await sleep(100)
  }
}
