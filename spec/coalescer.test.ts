import type { Sql } from 'postgres'
import {
  Coalescer,
  commitCoalescer,
  deleteCoalescer,
  findCoalescer,
  textArray,
  touchCoalescer,
  type RunQuery,
} from '../lib/coalescer'
import { buildQueries, PostgresStore, type PostgresStoreOptions } from '../lib/postgres-store'
import { quoteIdentifier } from '../lib/table'
import { describeEachBackend, realBackends, uniqueTable } from './support/backends'

// A promise whose settling the test controls: it stands for a statement in flight.
function deferred<T>() {
  let resolve!: (value: T) => void
  let reject!: (error: unknown) => void
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)))
  return { promise, resolve, reject }
}

describe('Coalescer', () => {
  it('sends a call that arrives alone at once, as a batch of one', () => {
    const batches: number[][] = []
    const coalescer = new Coalescer<number, number>(async (inputs) => (batches.push([...inputs]), inputs))
    void coalescer.run(7)
    expect(batches).toEqual([[7]])
  })

  it('queues calls while a batch is in flight and sends them together when it settles', async () => {
    const batches: number[][] = []
    const first = deferred<void>()
    const coalescer = new Coalescer<number, string>(async (inputs) => {
      batches.push([...inputs])
      if (batches.length === 1) await first.promise
      return inputs.map((n) => `out ${n}`)
    })
    const results = [1, 2, 3, 4].map((n) => coalescer.run(n))
    expect(batches).toEqual([[1]])
    first.resolve()
    await expect(Promise.all(results)).resolves.toEqual(['out 1', 'out 2', 'out 3', 'out 4'])
    expect(batches).toEqual([[1], [2, 3, 4]])
  })

  it('rejects every caller of a failed batch with its error, and still runs the next batch', async () => {
    const first = deferred<void>()
    let batchCount = 0
    const coalescer = new Coalescer<number, number>(async (inputs) => {
      batchCount++
      if (batchCount === 1) await first.promise
      if (batchCount === 2) throw new Error('statement failed')
      return inputs
    })
    const lone = coalescer.run(1)
    const failed = [2, 3].map((n) => coalescer.run(n))
    first.resolve()
    await expect(lone).resolves.toBe(1)
    for (const call of failed) await expect(call).rejects.toThrow('statement failed')
    await expect(coalescer.run(4)).resolves.toBe(4)
  })

  it('rejects every caller when a batch returns the wrong number of results', async () => {
    const coalescer = new Coalescer<number, number>(async () => [])
    await expect(coalescer.run(1)).rejects.toThrow('a batch of 1 calls produced 0 results')
    await expect(coalescer.run(2)).rejects.toThrow('a batch of 1 calls produced 0 results')
  })

  it('rejects a batch function that throws synchronously without breaking the queue', async () => {
    let calls = 0
    const coalescer = new Coalescer<number, number>(((inputs: readonly number[]) => {
      if (++calls === 1) throw new Error('sync failure')
      return Promise.resolve(inputs)
    }) as (inputs: readonly number[]) => Promise<readonly number[]>)
    await expect(coalescer.run(1)).rejects.toThrow('sync failure')
    await expect(coalescer.run(2)).resolves.toBe(2)
  })

  it('keeps up to maxInFlight batches in flight, then queues', async () => {
    const batches: number[][] = []
    const gates = [deferred<void>(), deferred<void>()]
    const coalescer = new Coalescer<number, number>(async (inputs) => {
      const gate = gates[batches.length]
      batches.push([...inputs])
      if (gate) await gate.promise
      return inputs
    }, { maxInFlight: 2 })
    const results = [1, 2, 3, 4].map((n) => coalescer.run(n))
    expect(batches).toEqual([[1], [2]])
    gates[1].resolve()
    await results[1]
    await new Promise((resolve) => setImmediate(resolve)) // the freed slot is refilled after callers hear back
    expect(batches).toEqual([[1], [2], [3, 4]])
    gates[0].resolve()
    await expect(Promise.all(results)).resolves.toEqual([1, 2, 3, 4])
  })

  it('with batches overlapping, holds a call whose key is in flight until that batch settles, in arrival order', async () => {
    const batches: string[][] = []
    const gates = new Map<string, ReturnType<typeof deferred<void>>>()
    const coalescer = new Coalescer<string, string>(async (inputs) => {
      batches.push([...inputs])
      const gate = deferred<void>()
      gates.set(inputs.join(), gate)
      await gate.promise
      return inputs
    }, { maxInFlight: 2, keyOf: (input) => input.split('#')[0] })
    const results = ['a#1', 'a#2', 'b#1', 'a#3', 'c#1'].map((input) => coalescer.run(input))
    // a#1 went alone; a#2 waits behind it; b#1 took the second slot.
    expect(batches).toEqual([['a#1'], ['b#1']])
    gates.get('b#1')!.resolve()
    await results[2]
    await new Promise((resolve) => setImmediate(resolve))
    // The freed slot takes c#1; every a waits for a#1, however many slots are free.
    expect(batches).toEqual([['a#1'], ['b#1'], ['c#1']])
    gates.get('a#1')!.resolve()
    await results[0]
    await new Promise((resolve) => setImmediate(resolve))
    expect(batches).toEqual([['a#1'], ['b#1'], ['c#1'], ['a#2', 'a#3']])
    gates.get('c#1')!.resolve()
    gates.get('a#2,a#3')!.resolve()
    await expect(Promise.all(results)).resolves.toEqual(['a#1', 'a#2', 'b#1', 'a#3', 'c#1'])
  })

  it('without batching (maxInFlight Infinity), sends calls of one key at once, as a pool would', async () => {
    const batches: string[][] = []
    const gate = deferred<void>()
    const coalescer = new Coalescer<string, string>(async (inputs) => {
      batches.push([...inputs])
      await gate.promise
      return inputs
    }, { maxInFlight: Infinity, keyOf: () => 'same' })
    const results = ['x', 'y'].map((input) => coalescer.run(input))
    expect(batches).toEqual([['x'], ['y']])
    gate.resolve()
    await expect(Promise.all(results)).resolves.toEqual(['x', 'y'])
  })

  it('needs a function and a whole maxInFlight from 1', () => {
    const echo = async (inputs: readonly number[]) => inputs
    expect(() => new Coalescer(undefined as any)).toThrow(TypeError)
    expect(() => new Coalescer(echo, { maxInFlight: '2' as any })).toThrow(TypeError)
    expect(() => new Coalescer(echo, { maxInFlight: 0 })).toThrow(RangeError)
    expect(() => new Coalescer(echo, { maxInFlight: 1.5 })).toThrow(RangeError)
  })
})

describe('textArray', () => {
  it('quotes every element and escapes quotes and backslashes', () => {
    expect(textArray([])).toBe('{}')
    expect(textArray(['a', 'b"c', 'd\\e', 'f,{g}', 'NULL'])).toBe('{"a","b\\"c","d\\\\e","f,{g}","NULL"}')
    expect(textArray(['a', null])).toBe('{"a",NULL}')
  })
})

// The core, whose find, commit, touch and delete go through the coalescers:
// its own statements for a lone call, the batched ones otherwise.
// `statements` records what reached the database.
function coalescedStore(sql: Sql, options: PostgresStoreOptions & { table: string }) {
  const statements: string[] = []
  const recording = new Proxy(sql, {
    get(target, property, receiver) {
      if (property !== 'unsafe') return Reflect.get(target, property, receiver)
      return (query: string, ...rest: unknown[]) => (statements.push(query), (target.unsafe as any)(query, ...rest))
    },
  })
  const store = new PostgresStore(recording, { cleanupInterval: 0, ...options })
  const queries = buildQueries(quoteIdentifier(options.table), options.tombstones ?? true)
  const single = { find: queries.find, commit: queries.commit, touch: queries.touch, delete: queries.delete }
  const many = { find: queries.findMany, commit: queries.commitMany, touch: queries.touchMany, delete: queries.deleteMany }
  return { store, statements, single, many }
}

const inAnHour = () => new Date(Date.now() + 3600_000)
// Tokens and bytes that an array literal could mangle if quoting were wrong.
const awkwardTokens = ['plain', 'quote"d', 'back\\slash', 'comma,brace{}', 'NULL', ' spaced ', 'ünï\u{1F600}']
const awkwardData = (i: number) => Buffer.from([0, 255, 92, 34, 44, 123, 125, i])

describeEachBackend(
  'coalesced statements',
  (backend) => {
    let sql: Sql
    let table: string

    beforeAll(() => {
      sql = backend.connect()
    })
    afterAll(() => sql.end({ timeout: 5 }))

    beforeEach(async () => {
      table = uniqueTable('coalesce')
      await new PostgresStore(sql, { table, cleanupInterval: 0 }).migrate()
    })
    afterEach(() => sql.unsafe(`DROP TABLE IF EXISTS ${quoteIdentifier(table)}`))

    // Two write batches may be in flight at once (one executing while the
    // other waits for its WAL flush): the first two of a burst go out alone.
    it('commits concurrent calls in one upsert after the lone first two, each row readable', async () => {
      const { store, statements, single, many } = coalescedStore(sql, { table })
      const expiry = inAnHour()
      await Promise.all(awkwardTokens.map((token, i) => store.commit(token, awkwardData(i), expiry, i % 2 ? 'owner' : null)))
      expect(statements).toEqual([single.commit, single.commit, many.commit])
      for (const [i, token] of awkwardTokens.entries()) {
        expect(await store.findEntry(token)).toEqual({ data: awkwardData(i), expiry, version: '0' })
      }
      expect((await store.listByOwner('owner')).length).toBe(3)
    })

    it('keeps the last call when one batch commits the same token twice, and resolves both', async () => {
      const { store, statements } = coalescedStore(sql, { table })
      const expiry = inAnHour()
      const calls = [
        store.commit('first', Buffer.from('lone'), expiry),
        store.commit('second', Buffer.from('lone'), expiry),
        store.commit('twice', Buffer.from('older'), expiry),
        store.commit('other', Buffer.from('x'), expiry),
        store.commit('twice', Buffer.from('newer'), expiry),
      ]
      await expect(Promise.all(calls)).resolves.toEqual([undefined, undefined, undefined, undefined, undefined])
      expect(statements).toHaveLength(3)
      expect(await store.find('twice')).toEqual(Buffer.from('newer'))
    })

    it('caps batched commits and touches by absoluteTimeout, as single ones are', async () => {
      const { store, statements, many } = coalescedStore(sql, { table, absoluteTimeout: 60_000 })
      const far = new Date('2099-01-01T00:00:00.000Z')
      await Promise.all(['a', 'b', 'c', 'd'].map((token) => store.commit(token, Buffer.from(token), far)))
      await Promise.all(['a', 'b', 'c', 'd'].map((token) => store.touch(token, far)))
      expect(statements).toContain(many.commit)
      expect(statements).toContain(many.touch)
      for (const token of ['a', 'b', 'c', 'd']) {
        const entry = await store.findEntry(token)
        expect(entry!.expiry.getTime()).toBeLessThanOrEqual(Date.now() + 60_000)
      }
    })

    it('finds in one statement, each caller getting its own entry or null', async () => {
      const plain = new PostgresStore(sql, { table, cleanupInterval: 0 })
      const expiry = new Date('2099-05-06T07:08:09.123Z')
      for (const [i, token] of awkwardTokens.entries()) await plain.commit(token, awkwardData(i), expiry)
      await plain.commit('expired', Buffer.from('old'), new Date(Date.now() - 1000))
      await plain.commit('destroyed', Buffer.from('gone'), expiry)
      await plain.delete('destroyed')
      const { store, statements, single, many } = coalescedStore(sql, { table })
      const asked = [...awkwardTokens, 'missing', 'expired', 'destroyed', awkwardTokens[1]]
      const found = await Promise.all(asked.map((token) => store.findEntry(token)))
      expect(statements).toEqual([single.find, many.find])
      const entries = awkwardTokens.map((_, i) => ({ data: awkwardData(i), expiry, version: '0' }))
      expect(found).toEqual([...entries, null, null, null, entries[1]])
    })

    it('touches in one statement: active rows move, missing, expired and destroyed ones stay out', async () => {
      const plain = new PostgresStore(sql, { table, cleanupInterval: 0 })
      const old = inAnHour()
      const later = new Date('2099-01-02T03:04:05.678Z')
      for (const token of ['lone', 'lone-2', 'a', 'b', 'destroyed']) await plain.commit(token, Buffer.from(token), old)
      await plain.commit('expired', Buffer.from('x'), new Date(Date.now() - 1000))
      await plain.delete('destroyed')
      const { store, statements, single, many } = coalescedStore(sql, { table })
      const results = await Promise.all([
        store.touch('lone', later),
        store.touch('lone-2', later),
        store.touch('a', old),
        store.touch('b', later),
        store.touch('a', later),
        store.touch('missing', later),
        store.touch('expired', later),
        store.touch('destroyed', later),
      ])
      expect(statements).toEqual([single.touch, single.touch, many.touch])
      expect(results).toEqual([true, true, true, true, true, false, false, false])
      for (const token of ['lone', 'lone-2', 'a', 'b']) {
        expect(await store.findEntry(token)).toEqual({ data: Buffer.from(token), expiry: later, version: '0' })
      }
      expect(await store.count()).toBe(4)
    })

    it('destroys in one statement, missing tokens included, and a destroyed token stays destroyed', async () => {
      const { store, statements, single, many } = coalescedStore(sql, { table })
      const expiry = inAnHour()
      for (const token of ['a', 'b', 'c', 'keep']) await store.commit(token, Buffer.from(token), expiry)
      statements.length = 0
      await Promise.all(['lone', 'lone-2', 'a', 'b', 'missing', 'c', 'b'].map((token) => store.delete(token)))
      expect(statements).toEqual([single.delete, single.delete, many.delete])
      expect([...(await store.all()).keys()]).toEqual(['keep'])
      await Promise.all(['a', 'b'].map((token) => store.commit(token, Buffer.from('back'), expiry)))
      expect(await store.find('a')).toBeNull()
      expect(await store.find('b')).toBeNull()
    })

    it('deletes rows in one statement when tombstones are off', async () => {
      const { store, statements, many } = coalescedStore(sql, { table, tombstones: false })
      const expiry = inAnHour()
      for (const token of ['a', 'b', 'keep']) await store.commit(token, Buffer.from(token), expiry)
      await Promise.all(['lone', 'lone-2', 'a', 'b', 'missing'].map((token) => store.delete(token)))
      expect(statements).toContain(many.delete)
      const [{ count }] = await sql.unsafe(`SELECT count(*)::int AS count FROM ${quoteIdentifier(table)}`)
      expect(count).toBe(1)
    })

    it('rejects every caller of a failed batch with the database error, then carries on', async () => {
      const plain = new PostgresStore(sql, { table, cleanupInterval: 0 })
      await plain.commit('a', Buffer.from('a'), inAnHour())
      const single = (plain as any).queries.find
      const exec: RunQuery = (query, params) => sql.unsafe(query, params as any[], { prepare: true }) as any
      const broken = buildQueries(quoteIdentifier(uniqueTable('missing')), true).findMany
      const finds = findCoalescer(exec, single, broken)
      const lone = finds.run(['a'])
      const batched = [finds.run(['a']), finds.run(['b'])]
      await expect(lone).resolves.toHaveLength(1)
      for (const call of batched) await expect(call).rejects.toMatchObject({ code: '42P01' })
      await expect(finds.run(['a'])).resolves.toHaveLength(1)
    })
  },
  realBackends,
)
