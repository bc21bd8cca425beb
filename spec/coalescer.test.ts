import type { Sql } from 'postgres'
import {
  batchedQueries,
  Coalescer,
  commitCoalescer,
  deleteCoalescer,
  findCoalescer,
  textArray,
  touchCoalescer,
  type RunQuery,
  type SingleQueries,
} from '../lib/coalescer'
import { PostgresStore } from '../lib/postgres-store'
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
  })
})

// The core's single-row statements, as lib/postgres-store.ts writes them.
function singleQueries(table: string): SingleQueries {
  return {
    findEntry: `SELECT data, expiry FROM ${table} WHERE token = $1 AND expiry > now()`,
    commit:
      `INSERT INTO ${table} (token, data, expiry) VALUES ($1, $2, $3) ` +
      'ON CONFLICT (token) DO UPDATE SET data = EXCLUDED.data, expiry = EXCLUDED.expiry',
    delete: `DELETE FROM ${table} WHERE token = $1`,
    touch: `UPDATE ${table} SET expiry = $1 WHERE token = $2 AND expiry > now()`,
  }
}

const inAnHour = () => new Date(Date.now() + 3600_000)
// Tokens and bytes that an array literal could mangle if quoting were wrong.
const awkwardTokens = ['plain', 'quote"d', 'back\\slash', 'comma,brace{}', 'NULL', ' spaced ', 'ünï\u{1F600}']
const awkwardData = (i: number) => Buffer.from([0, 255, 92, 34, 44, 123, 125, i])

describeEachBackend(
  'coalesced statements',
  (backend) => {
    let sql: Sql
    let store: PostgresStore
    let table: string
    let statements: string[]
    let run: RunQuery

    beforeAll(() => {
      sql = backend.connect()
    })
    afterAll(() => sql.end({ timeout: 5 }))

    beforeEach(async () => {
      const name = uniqueTable('coalesce')
      store = new PostgresStore(sql, { table: name, cleanupInterval: 0 })
      await store.migrate()
      table = quoteIdentifier(name)
      statements = []
      run = (query, params) => {
        statements.push(query)
        return sql.unsafe(query, params as any[], { prepare: true }) as any
      }
    })
    afterEach(() => sql.unsafe(`DROP TABLE IF EXISTS ${table}`))

    const coalescers = () => {
      const single = singleQueries(table)
      const many = batchedQueries(table)
      return {
        finds: findCoalescer(run, single, many),
        commits: commitCoalescer(run, single, many),
        deletes: deleteCoalescer(run, single, many),
        touches: touchCoalescer(run, single, many),
        single,
        many,
      }
    }

    it('commits concurrent calls in one upsert after the lone first one, each row readable', async () => {
      const { commits, single, many } = coalescers()
      const expiry = inAnHour()
      await Promise.all(awkwardTokens.map((token, i) => commits.run({ token, data: awkwardData(i), expiry })))
      expect(statements).toEqual([single.commit, many.commitMany])
      for (const [i, token] of awkwardTokens.entries()) {
        expect(await store.find(token)).toEqual(awkwardData(i))
      }
    })

    it('keeps the last call when one batch commits the same token twice, and resolves both', async () => {
      const { commits } = coalescers()
      const expiry = inAnHour()
      const calls = [
        commits.run({ token: 'first', data: Buffer.from('lone'), expiry }),
        commits.run({ token: 'twice', data: Buffer.from('older'), expiry }),
        commits.run({ token: 'other', data: Buffer.from('x'), expiry }),
        commits.run({ token: 'twice', data: Buffer.from('newer'), expiry }),
      ]
      await expect(Promise.all(calls)).resolves.toEqual([undefined, undefined, undefined, undefined])
      expect(statements).toHaveLength(2)
      expect(await store.find('twice')).toEqual(Buffer.from('newer'))
    })

    it('stores the expiry of a batched commit to the millisecond', async () => {
      const { commits } = coalescers()
      const expiry = new Date('2099-05-06T07:08:09.123Z')
      const past = new Date(Date.now() - 1000)
      await Promise.all([
        commits.run({ token: 'a', data: Buffer.from('a'), expiry }),
        commits.run({ token: 'b', data: Buffer.from('b'), expiry }),
        commits.run({ token: 'c', data: Buffer.from('c'), expiry: past }),
      ])
      const rows = await sql.unsafe(`SELECT token, expiry FROM ${table} ORDER BY token`)
      expect(rows.map((row) => [row.token, (row.expiry as Date).toISOString()])).toEqual([
        ['a', expiry.toISOString()],
        ['b', expiry.toISOString()],
        ['c', past.toISOString()],
      ])
      expect(await store.find('c')).toBeNull()
    })

    it('finds in one statement, each caller getting its own entry or null', async () => {
      const expiry = new Date('2099-05-06T07:08:09.123Z')
      for (const [i, token] of awkwardTokens.entries()) await store.commit(token, awkwardData(i), expiry)
      await store.commit('expired', Buffer.from('old'), new Date(Date.now() - 1000))
      const { finds, single, many } = coalescers()
      const asked = [...awkwardTokens, 'missing', 'expired', awkwardTokens[1]]
      const found = await Promise.all(asked.map((token) => finds.run(token)))
      expect(statements).toEqual([single.findEntry, many.findEntries])
      const entries = awkwardTokens.map((_, i) => ({ data: awkwardData(i), expiry }))
      expect(found).toEqual([...entries, null, null, entries[1]])
    })

    it('finds a lone token with the single-row statement, null when missing', async () => {
      const expiry = inAnHour()
      await store.commit('here', Buffer.from('data'), expiry)
      const { finds, single } = coalescers()
      await expect(finds.run('here')).resolves.toEqual({ data: Buffer.from('data'), expiry })
      await expect(finds.run('gone')).resolves.toBeNull()
      expect(statements).toEqual([single.findEntry, single.findEntry])
    })

    it('touches in one statement: active rows move, missing and expired ones stay out', async () => {
      const old = inAnHour()
      const later = new Date('2099-01-02T03:04:05.678Z')
      for (const token of ['lone', 'a', 'b']) await store.commit(token, Buffer.from(token), old)
      await store.commit('expired', Buffer.from('x'), new Date(Date.now() - 1000))
      const { touches, single, many } = coalescers()
      const results = await Promise.all([
        touches.run({ token: 'lone', expiry: later }),
        touches.run({ token: 'a', expiry: old }),
        touches.run({ token: 'b', expiry: later }),
        touches.run({ token: 'a', expiry: later }),
        touches.run({ token: 'missing', expiry: later }),
        touches.run({ token: 'expired', expiry: later }),
      ])
      expect(statements).toEqual([single.touch, many.touchMany])
      expect(results).toEqual([true, true, true, true, false, false])
      for (const token of ['lone', 'a', 'b']) {
        expect(await store.findEntry(token)).toEqual({ data: Buffer.from(token), expiry: later })
      }
      expect(await store.findEntry('expired')).toBeNull()
      expect(await store.count()).toBe(3)
    })

    it('deletes in one statement, missing tokens included', async () => {
      const expiry = inAnHour()
      for (const token of ['a', 'b', 'c', 'keep']) await store.commit(token, Buffer.from(token), expiry)
      const { deletes, single, many } = coalescers()
      await Promise.all(['a', 'b', 'missing', 'c', 'b'].map((token) => deletes.run(token)))
      expect(statements).toEqual([single.delete, many.deleteMany])
      expect([...(await store.all()).keys()]).toEqual(['keep'])
    })

    it('rejects every caller of a failed batch with the database error, then carries on', async () => {
      const finds = findCoalescer(run, singleQueries(table), batchedQueries(quoteIdentifier(uniqueTable('missing'))))
      await store.commit('a', Buffer.from('a'), inAnHour())
      const lone = finds.run('a')
      const batched = [finds.run('a'), finds.run('b')]
      await expect(lone).resolves.toMatchObject({ data: Buffer.from('a') })
      for (const call of batched) await expect(call).rejects.toMatchObject({ code: '42P01' })
      await expect(finds.run('a')).resolves.toMatchObject({ data: Buffer.from('a') })
    })
  },
  realBackends,
)
