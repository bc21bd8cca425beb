// The core's conditional write: commitIfVersion writes only while the row
// still has the version findEntry gave, in the same statement, and otherwise
// hands back the row it lost to, for the adapter to merge with.
import { PostgresStore, type PostgresStoreOptions } from '../lib/postgres-store'
import { connectForSuite, describeEachBackend, realDriverBackends, uniqueTable } from './support/backends'

const HOUR = 3600_000
const later = (ms: number) => new Date(Date.now() + ms)
const text = (data: Buffer | undefined) => data?.toString()

describeEachBackend('commitIfVersion', (backend) => {
  const db = connectForSuite(backend)

  async function newStore(options: PostgresStoreOptions = {}) {
    const store = new PostgresStore(db().client, { ...backend.storeOptions, table: uniqueTable('cond'), cleanupInterval: 0, ...options })
    await store.migrate()
    return store
  }

  it('writes while the version is the one read, and moves the version on each write of data (not on a touch)', async () => {
    const store = await newStore()
    await store.commit('t', Buffer.from('v1'), later(HOUR))
    const read = (await store.findEntry('t'))!
    expect(await store.touch('t', later(2 * HOUR))).toBe(true)
    expect((await store.findEntry('t'))!.version).toBe(read.version)

    const result = await store.commitIfVersion('t', Buffer.from('v2'), later(HOUR), null, read.version)
    expect(result).toEqual({ outcome: 'written', version: expect.any(String) })
    const after = (await store.findEntry('t'))!
    expect(text(after.data)).toBe('v2')
    expect(after.version).toBe((result as { version: string }).version)
    expect(after.version).not.toBe(read.version)
  })

  it('writes nothing when another write came first, and hands back that row', async () => {
    const store = await newStore()
    await store.commit('t', Buffer.from('v1'), later(HOUR))
    const read = (await store.findEntry('t'))!
    await store.commit('t', Buffer.from('theirs'), later(HOUR))

    const result = await store.commitIfVersion('t', Buffer.from('ours'), later(HOUR), null, read.version)
    expect(result.outcome).toBe('conflict')
    const { current } = result as { current: { data: Buffer; version: string; expiry: Date } }
    expect(text(current.data)).toBe('theirs')
    expect(current).toEqual(await store.findEntry('t'))
  })

  it('leaves a destroyed token destroyed', async () => {
    const store = await newStore()
    await store.commit('t', Buffer.from('v1'), later(HOUR))
    const read = (await store.findEntry('t'))!
    await store.delete('t')
    expect(await store.commitIfVersion('t', Buffer.from('late'), later(HOUR), null, read.version)).toEqual({ outcome: 'destroyed' })
    expect(await store.find('t')).toBeNull()
  })

  it('writes a token that is gone or expired whatever the version', async () => {
    const store = await newStore({ tombstones: false })
    expect((await store.commitIfVersion('gone', Buffer.from('back'), later(HOUR), null, '7')).outcome).toBe('written')
    expect(text(await store.find('gone') ?? undefined)).toBe('back')

    await store.commit('old', Buffer.from('v1'), later(50))
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect((await store.commitIfVersion('old', Buffer.from('new life'), later(HOUR), null, '12345')).outcome).toBe('written')
    expect(text(await store.find('old') ?? undefined)).toBe('new life')
  })

  it('hands back the row decrypted, with secret and hashTokens', async () => {
    const store = await newStore({ secret: 'a secret of sixteen or more', hashTokens: true })
    await store.commit('t', Buffer.from('v1'), later(HOUR), 'ada')
    const read = (await store.findEntry('t'))!
    await store.commit('t', Buffer.from('theirs'), later(HOUR), 'ada')
    const result = await store.commitIfVersion('t', Buffer.from('ours'), later(HOUR), 'ada', read.version)
    expect(text((result as { current: { data: Buffer } }).current.data)).toBe('theirs')
    const again = await store.commitIfVersion('t', Buffer.from('merged'), later(HOUR), 'ada', (await store.findEntry('t'))!.version)
    expect(again.outcome).toBe('written')
    expect((await store.listByOwner('ada')).map((entry) => text(entry.data))).toEqual(['merged'])
  })

  it('rejects a version that findEntry cannot have given, writing nothing', async () => {
    const store = await newStore()
    await expect(store.commitIfVersion('t', Buffer.from('x'), later(HOUR), null, 3 as any)).rejects.toThrow(TypeError)
    await expect(store.commitIfVersion('t', Buffer.from('x'), later(HOUR), null, '-1')).rejects.toThrow(RangeError)
    expect(await store.find('t')).toBeNull()
  })

  it('in one coalesced batch, writes the first of two writes of a token and hands the second that row', async () => {
    const store = await newStore()
    await Promise.all(['a', 'b'].map((token) => store.commit(token, Buffer.from('v1'), later(HOUR))))
    const [a, b] = await Promise.all(['a', 'b'].map(async (token) => (await store.findEntry(token))!))
    // The first call goes out alone; the next three wait and go out as one batch.
    const first = store.commitIfVersion('b', Buffer.from('b1'), later(HOUR), null, b.version)
    const batch = [
      store.commitIfVersion('a', Buffer.from('a1'), later(HOUR), null, a.version),
      store.commitIfVersion('a', Buffer.from('a2'), later(HOUR), null, a.version),
      store.commitIfVersion('b', Buffer.from('b2'), later(HOUR), null, b.version),
    ]
    const [one, two, three] = await Promise.all(batch)
    expect((await first).outcome).toBe('written')
    expect(one.outcome).toBe('written')
    expect(two).toEqual({ outcome: 'conflict', current: { data: Buffer.from('a1'), expiry: expect.any(Date), version: (one as any).version } })
    expect(three.outcome).toBe('conflict')
    expect(text((await store.find('a'))!)).toBe('a1')
    expect(text((await store.find('b'))!)).toBe('b1')
  })
// Not on pg-mem: its RETURNING hands back rows that ON CONFLICT ... WHERE left
// unchanged, so every conditional write there reads as written.
}, realDriverBackends)
