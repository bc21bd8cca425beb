// Concurrent requests of one session, over HTTP, on Express 4, Express 5 and
// Fastify: each request reads the session, waits a little, changes its own
// part and saves. Without merging the last save wins and the others' changes
// are lost; with it, every change is kept (README "Concurrent requests").
import type { Client as DatabaseClient } from '../lib/drivers/detect'
import { PostgresStore } from '../lib/postgres-store'
import { readContextInUse } from '../lib/read-context'
import { MAX_SAVE_ATTEMPTS, PostgresSessionStore, SessionConflictError, type PostgresSessionStoreOptions } from '../lib/session-store'
import { connectForSuite, describeEachBackend, realDriverBackends, uniqueTable, type Backend } from './support/backends'
import { Client, frameworks, jitter, startApp, type Framework, type RunningApp } from './support/session-apps'

const PARALLEL = 20
const ROUNDS = 20
const HOUR = 3600_000
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** The same client (postgres.js or a pg.Pool), counting the statements a store sends by their first word (SELECT, INSERT...). */
function countingStatements(client: DatabaseClient) {
  const counts: Record<string, number> = {}
  const count = (query: string | { text: string }) => {
    const kind = (typeof query === 'string' ? query : query.text).trim().split(/\s/)[0].toUpperCase()
    counts[kind] = (counts[kind] ?? 0) + 1
  }
  const method = typeof client === 'function' ? 'unsafe' : 'query'
  const wrap = (target: any): any => new Proxy(target, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver)
      if (property === method) return (query: string | { text: string }, ...rest: unknown[]) => (count(query), value.call(target, query, ...rest))
      if (property === 'connect' && method === 'query') return async () => wrap(await value.call(target))
      return typeof value === 'function' && method === 'query' ? value.bind(target) : value
    },
  })
  return { client: wrap(client) as DatabaseClient, counts }
}

const writes = (counts: Record<string, number>) => (counts.INSERT ?? 0) + (counts.UPDATE ?? 0) + (counts.DELETE ?? 0)

// Real concurrency: a server, or PgBouncer in front of one. (pg-mem runs one
// statement at a time and misreports conditional writes; PGlite has one backend.)
const concurrentBackends = realDriverBackends.filter((backend) => backend.name !== 'PGlite')

describeEachBackend('concurrent requests of one session', (backend) => {
  const db = connectForSuite(backend, { max: 10 })

  async function serve(framework: Framework, options: Partial<PostgresSessionStoreOptions> = {}, client = db().client) {
    const store = new PostgresSessionStore({
      store: new PostgresStore(client, { ...backend.storeOptions, table: uniqueTable('merge'), cleanupInterval: 0 }), ...options,
    } as PostgresSessionStoreOptions)
    await store.migrate()
    const app = await startApp(framework, store)
    return { store, app, close: async () => (await app.close(), await store.close()) }
  }

  /** Starts a session, sends `parallel` requests with its cookie at once, and reads the session back. */
  async function race(app: RunningApp, path: (i: number) => string, parallel = PARALLEL): Promise<Record<string, any>> {
    const client = new Client(app)
    await client.get('/start')
    await Promise.all(Array.from({ length: parallel }, (_, i) => client.get(path(i), jitter(30))))
    return client.get('/peek')
  }

  const keysKept = (session: Record<string, any>) => Object.keys(session).filter((key) => /^k\d+$/.test(key)).length

  describe.each(frameworks)('%s', (framework) => {
    let served: Awaited<ReturnType<typeof serve>>
    beforeAll(async () => {
      served = await serve(framework)
    })
    afterAll(() => served.close())

    it(`keeps all ${PARALLEL} top-level keys set by parallel requests, ${ROUNDS} times over`, async () => {
      const kept: number[] = []
      for (let round = 0; round < ROUNDS; round++) kept.push(keysKept(await race(served.app, (i) => `/key/${i}`)))
      expect(kept).toEqual(Array(ROUNDS).fill(PARALLEL))
    })

    it(`keeps all ${PARALLEL} nested keys (files[uuid]) added by parallel requests`, async () => {
      const kept: number[] = []
      for (let round = 0; round < 5; round++) kept.push(Object.keys((await race(served.app, (i) => `/file/${i}`)).files ?? {}).length)
      expect(kept).toEqual(Array(5).fill(PARALLEL))
    })

    it('keeps one value when two requests set the same key: the one saved last', async () => {
      const client = new Client(served.app)
      await client.get('/start')
      // Both read the session before either saves; "late" saves last.
      await Promise.all([client.get('/set/color/late', 150), client.get('/set/color/early', 0)])
      expect((await client.get('/peek')).color).toBe('late')
    })

    it('applies a deletion and an unrelated change made side by side', async () => {
      const client = new Client(served.app)
      await client.get('/start')
      await client.get('/set/a/1')
      await client.get('/set/b/1')
      await Promise.all([client.get('/delete/a', 50), client.get('/set/b/2', 0)])
      await Promise.all([client.get('/delete/b', 0), client.get('/set/c/3', 50)])
      const session = await client.get('/peek')
      expect([session.a, session.b, session.c]).toEqual([undefined, undefined, '3'])
    })

    it('stays logged out when slow requests that read the session save after the logout', async () => {
      const before = await served.store.length()
      const client = new Client(served.app)
      await client.get('/start')
      const slow = Array.from({ length: 3 }, (_, i) => client.get(`/key/${i}`, 200))
      await sleep(50)
      await client.get('/logout')
      await Promise.all(slow)
      expect(keysKept(await client.get('/peek'))).toBe(0)
      expect(await served.store.length()).toBe(before)
    })

    it('writes nothing for requests that leave the session unchanged', async () => {
      const { client: counting, counts } = countingStatements(db().client)
      const quiet = await serve(framework, {}, counting)
      try {
        const client = new Client(quiet.app)
        await client.get('/start')
        await client.get('/key/1')
        for (const kind of Object.keys(counts)) delete counts[kind]
        for (let i = 0; i < 10; i++) await client.get('/peek')
        expect({ reads: counts.SELECT, writes: writes(counts) }).toEqual({ reads: 10, writes: 0 })
        expect((await client.get('/peek')).k1).toBe(1)
      } finally {
        await quiet.close()
      }
    })

    it('cannot merge a counter: parallel increments of one number count once (the documented limit)', async () => {
      const session = await race(served.app, () => '/count', 10)
      expect(session.count).toBeLessThan(10)
    })
  })

  it('with merge: false, the last save wins, as in every other store', async () => {
    const served = await serve('Express 5', { merge: false })
    try {
      expect(keysKept(await race(served.app, (i) => `/key/${i}`))).toBeLessThan(PARALLEL)
    } finally {
      await served.close()
    }
  })
}, concurrentBackends)

describeEachBackend('merging saves, called directly', (backend: Backend) => {
  const db = connectForSuite(backend)

  const opened: PostgresSessionStore[] = []
  afterEach(async () => {
    for (const store of opened.splice(0)) await store.close()
  })

  async function newStore(options: Partial<PostgresSessionStoreOptions> = {}) {
    const store = new PostgresSessionStore({
      ...db().source, ...backend.storeOptions, table: uniqueTable('mergedirect'), cleanupInterval: 0, ...options,
    } as PostgresSessionStoreOptions)
    opened.push(store)
    await store.migrate()
    return store
  }
  const cookie = () => ({ originalMaxAge: HOUR, expires: new Date(Date.now() + HOUR), path: '/', httpOnly: true })

  it('merges sessions get returned through promises, with secret and hashTokens', async () => {
    const store = await newStore({ secret: 'a secret of sixteen or more', hashTokens: true })
    await store.set('sid', { cookie: cookie(), cart: { apple: 1 } } as any)
    const [one, two] = [await store.get('sid'), await store.get('sid')] as any[]
    one.cart.pear = 2
    two.cart.plum = 3
    two.user = 'ada'
    await store.set('sid', one)
    await store.set('sid', two)
    expect(await store.get('sid')).toMatchObject({ cart: { apple: 1, pear: 2, plum: 3 }, user: 'ada' })
  })

  it('merges what a custom serializer parses, and takes a value that is not a plain object whole', async () => {
    // Dates survive this serializer as Dates: not plain objects, so taken whole.
    const serializer = {
      stringify: (session: any) => JSON.stringify(session, (key, value) => (key === 'seen' ? { date: value } : value)),
      parse: (text: string) => JSON.parse(text, (key, value) => (key === 'seen' ? new Date(value.date) : value)),
    }
    const store = await newStore({ serializer })
    await store.set('sid', { cookie: cookie(), seen: new Date(1000), n: 1 } as any)
    const [one, two] = [await store.get('sid'), await store.get('sid')] as any[]
    one.seen = new Date(2000)
    two.other = true
    await store.set('sid', one)
    await store.set('sid', two)
    const merged = (await store.get('sid')) as any
    expect(merged.seen).toEqual(new Date(2000))
    expect(merged.other).toBe(true)
  })

  it('gives up with a SessionConflictError after MAX_SAVE_ATTEMPTS lost races, leaving the winner stored', async () => {
    // A core where another request saves the session just before each of ours.
    class Contended extends PostgresStore {
      others = 0
      override async commitIfVersion(...args: Parameters<PostgresStore['commitIfVersion']>) {
        const [token, , expiry] = args
        await this.commit(token, Buffer.from(JSON.stringify({ cookie: {}, other: ++this.others })), expiry)
        return super.commitIfVersion(...args)
      }
    }
    const core = new Contended(db().client, { ...backend.storeOptions, table: uniqueTable('contended'), cleanupInterval: 0 })
    await core.migrate()
    const store = new PostgresSessionStore({ store: core })
    opened.push(store)
    await store.set('sid', { cookie: cookie(), mine: false } as any)
    const session = (await store.get('sid')) as any
    session.mine = true
    await expect(store.set('sid', session)).rejects.toThrow(SessionConflictError)
    expect(core.others).toBe(MAX_SAVE_ATTEMPTS)
    expect(await store.get('sid')).toMatchObject({ other: MAX_SAVE_ATTEMPTS })
    expect(((await store.get('sid')) as any).mine).toBeUndefined()
  })

  // On Node 20 an AsyncLocalStorage in use slows every promise in the process;
  // express-session does not need it, so it must not stay in use.
  it('stops using the async context for @fastify/session once express-session builds a session', async () => {
    const store = await newStore()
    expect(readContextInUse()).toBe(true)
    store.createSession({} as any, { cookie: cookie() } as any)
    expect(readContextInUse()).toBe(false)
  })

  it('rejects a merge option that is not a boolean', () => {
    expect(() => new PostgresSessionStore({ ...db().source, merge: 'yes' as any } as PostgresSessionStoreOptions)).toThrow(TypeError)
  })
}, concurrentBackends)
