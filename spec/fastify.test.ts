// End to end: a real Fastify 5 app with @fastify/session 11 and PostgresSessionStore,
// driven through fastify.inject, on real PostgreSQL (PGlite and the server).
// @fastify/session calls get, set and destroy (never touch); with rolling it calls set on every request.
import fastifyCookie, { Signer } from '@fastify/cookie'
import fastifySession, { MemoryStore, type FastifySessionObject, type FastifySessionOptions } from '@fastify/session'
import Fastify, { type FastifyInstance, type LightMyRequestResponse } from 'fastify'
import { PostgresSessionStore } from '../lib/session-store'
import { connectForSuite, describeEachBackend, realBackends, uniqueTable } from './support/backends'
import { Gate } from './support/gate'

declare module 'fastify' {
  interface Session {
    user?: string
    views?: number
  }
}

const SECRET = 'a fastify session secret of 32 or more characters'
const HOUR = 3600_000
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

type Reply = { id: string; user?: string; views?: number }

/**
 * A small app: log in (with a new session id), count visits, peek without changing anything,
 * log out; /slow waits at the gate, then counts a visit. Plain http, so the cookie is not Secure.
 */
async function buildApp(
  store: PostgresSessionStore | MemoryStore,
  options: Partial<FastifySessionOptions> = {},
  gate?: Gate,
): Promise<FastifyInstance> {
  const app = Fastify()
  await app.register(fastifyCookie)
  await app.register(fastifySession, { store, secret: SECRET, ...options, cookie: { secure: false, ...options.cookie } })
  const reply = (request: { session: FastifySessionObject }): Reply => ({
    id: request.session.sessionId, user: request.session.user, views: request.session.views,
  })
  app.post<{ Params: { user: string } }>('/login/:user', async (request) => {
    await request.session.regenerate()
    request.session.user = request.params.user
    return reply(request)
  })
  app.get('/count', async (request) => {
    request.session.views = (request.session.views ?? 0) + 1
    return reply(request)
  })
  app.get('/peek', async (request) => reply(request))
  app.post('/logout', async (request) => {
    await request.session.destroy()
    return { loggedOut: true }
  })
  app.get('/slow', async (request) => {
    await gate!.pass()
    request.session.views = (request.session.views ?? 0) + 1
    return reply(request)
  })
  await app.ready()
  return app
}

/** A browser: keeps the cookies the app sets (as sent, still encoded) and sends them back. */
class Browser {
  readonly cookies = new Map<string, string>()
  constructor(private readonly app: FastifyInstance) {}

  async send(method: 'GET' | 'POST', url: string): Promise<LightMyRequestResponse> {
    const cookie = [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; ')
    const response = await this.app.inject({ method, url, headers: cookie ? { cookie } : {} })
    for (const header of setCookies(response)) {
      const [name, value] = header.split(';')[0].split(/=(.*)/s)
      const expires = /Expires=([^;]+)/i.exec(header)?.[1]
      if (value === '' || (expires && Date.parse(expires) <= Date.now())) this.cookies.delete(name)
      else this.cookies.set(name, value)
    }
    return response
  }

  async json(method: 'GET' | 'POST', url: string): Promise<Reply> {
    const response = await this.send(method, url)
    expect(response.statusCode).toBe(200)
    return response.json()
  }

  /** A copy of this browser, cookies included: the same user in another tab, or an attacker with a stolen cookie. */
  clone(): Browser {
    const copy = new Browser(this.app)
    for (const [name, value] of this.cookies) copy.cookies.set(name, value)
    return copy
  }
}

function setCookies(response: LightMyRequestResponse): string[] {
  return ([] as string[]).concat(response.headers['set-cookie'] ?? [])
}

describeEachBackend('@fastify/session on Fastify 5', (backend) => {
  const db = connectForSuite(backend)
  let store: PostgresSessionStore
  const apps: FastifyInstance[] = []

  async function app(options: Partial<FastifySessionOptions> = {}, gate?: Gate) {
    const created = await buildApp(store, options, gate)
    apps.push(created)
    return created
  }

  async function storedExpiry(id: string): Promise<number> {
    const entry = await store.store.findEntry(id)
    if (!entry) throw new Error('no stored session')
    return entry.expiry.getTime()
  }

  beforeEach(async () => {
    store = new PostgresSessionStore({ ...db().source, ...backend.storeOptions, table: uniqueTable('fastify'), cleanupInterval: 0, touchAfter: 0 })
    await store.migrate()
  })
  afterEach(async () => {
    for (const each of apps.splice(0)) await each.close()
    await store.close()
    await db().sql.unsafe(`DROP TABLE IF EXISTS "${store.store.table}"`)
  })

  it('logs in with a new session id, counts visits, and logs out for good', async () => {
    const browser = new Browser(await app())
    const visitor = await browser.json('GET', '/count')
    const login = await browser.json('POST', '/login/ada')
    // regenerate: the visitor's session id is replaced and its row is gone.
    expect(login.id).not.toBe(visitor.id)
    expect(await store.get(visitor.id)).toBeNull()
    expect(await browser.json('GET', '/count')).toEqual({ id: login.id, user: 'ada', views: 1 })
    expect(await browser.json('GET', '/count')).toEqual({ id: login.id, user: 'ada', views: 2 })
    expect(await store.get(login.id)).toMatchObject({ user: 'ada', views: 2 })

    const stolen = browser.clone()
    expect(await browser.json('POST', '/logout')).toEqual({ loggedOut: true })
    expect(await store.get(login.id)).toBeNull()
    expect(await store.length()).toBe(0)
    // The cookie from before the logout is worth nothing.
    const replay = await stolen.json('GET', '/peek')
    expect(replay.user).toBeUndefined()
    expect(replay.id).not.toBe(login.id)
  })

  it('the cookie from before the login does not reach the logged-in session', async () => {
    const browser = new Browser(await app())
    await browser.json('GET', '/count')
    const planted = browser.clone()
    await browser.json('POST', '/login/ada')
    expect((await planted.json('GET', '/peek')).user).toBeUndefined()
  })

  it('rolling (the default): an unchanged request sends the cookie again and moves the stored expiry', async () => {
    const browser = new Browser(await app({ cookie: { maxAge: HOUR } }))
    const { id } = await browser.json('POST', '/login/ada')
    const first = await storedExpiry(id)
    await sleep(1100)
    const peek = await browser.send('GET', '/peek')
    expect(setCookies(peek)).toHaveLength(1)
    const moved = await storedExpiry(id)
    expect(moved).toBeGreaterThanOrEqual(first + 1000)
    // The cookie's Expires (whole seconds) and the row agree.
    const expires = Date.parse(/Expires=([^;]+)/.exec(setCookies(peek)[0])![1])
    expect(Math.abs(expires - moved)).toBeLessThan(1000)
  })

  it('rolling false: an unchanged request sends no cookie and writes nothing', async () => {
    const browser = new Browser(await app({ rolling: false, cookie: { maxAge: HOUR } }))
    const { id } = await browser.json('POST', '/login/ada')
    const first = await storedExpiry(id)
    const set = jest.spyOn(store, 'set')
    await sleep(20)
    const peek = await browser.send('GET', '/peek')
    expect(peek.json()).toMatchObject({ id, user: 'ada' })
    expect(setCookies(peek)).toEqual([])
    expect(set).not.toHaveBeenCalled()
    expect(await storedExpiry(id)).toBe(first)
    // A change is still saved.
    expect(await browser.json('GET', '/count')).toMatchObject({ id, views: 1 })
    expect(await store.get(id)).toMatchObject({ user: 'ada', views: 1 })
  })

  it('saveUninitialized false stores nothing for a visitor who changed nothing; the default stores it', async () => {
    const lazy = await new Browser(await app({ saveUninitialized: false })).send('GET', '/peek')
    expect(setCookies(lazy)).toEqual([])
    expect(await store.length()).toBe(0)

    const eager = await new Browser(await app()).send('GET', '/peek')
    expect(setCookies(eager)).toHaveLength(1)
    expect(Object.keys(await store.all())).toEqual([eager.json().id])
  })

  it('without maxAge the cookie is a browser-session cookie, and the row lives for the store\'s ttl', async () => {
    const browser = new Browser(await app())
    const before = Date.now()
    const { id } = await browser.json('POST', '/login/ada')
    const expiry = await storedExpiry(id)
    expect(expiry).toBeGreaterThanOrEqual(before + 24 * HOUR)
    expect(expiry).toBeLessThanOrEqual(Date.now() + 24 * HOUR)
    expect((await store.get(id))!.cookie.expires).toBeNull()
  })

  it('a session whose maxAge has passed is gone, even when the old cookie is sent again', async () => {
    // 1.5 s: the cookie's Expires has whole seconds, and a browser drops a cookie whose Expires has passed.
    const browser = new Browser(await app({ rolling: false, cookie: { maxAge: 1500 } }))
    const { id } = await browser.json('POST', '/login/ada')
    const kept = browser.clone()
    expect((await browser.json('GET', '/peek')).user).toBe('ada')
    await sleep(1700)
    expect(await store.get(id)).toBeNull()
    const late = await kept.json('GET', '/peek')
    expect(late.user).toBeUndefined()
    expect(late.id).not.toBe(id)
  })

  it('cookiePrefix: the cookie carries the prefix, and a cookie without it finds no session', async () => {
    const prefixed = await app({ cookiePrefix: 's:' })
    const browser = new Browser(prefixed)
    const { id } = await browser.json('POST', '/login/ada')
    const value = browser.cookies.get('sessionId')!
    expect(decodeURIComponent(value).startsWith(`s:${id}.`)).toBe(true)
    expect(await browser.json('GET', '/peek')).toMatchObject({ id, user: 'ada' })

    const unprefixed = new Browser(prefixed)
    unprefixed.cookies.set('sessionId', encodeURIComponent(decodeURIComponent(value).slice('s:'.length)))
    expect((await unprefixed.json('GET', '/peek')).user).toBeUndefined()
  })

  // As in @fastify/session's own tests: a row written by something else, without a cookie, is handed
  // to fastify, which carries on (200, not 500), as it does with its own MemoryStore.
  it.each([
    ['an expiry field but no cookie', { expires: Date.now() - 1000 }],
    ['data but no cookie', { user: 'ada' }],
  ])('a stored session with %s: the request succeeds, as with fastify\'s MemoryStore', async (_, stored) => {
    const sid = 'stored-by-someone-else'
    const signed = encodeURIComponent(new Signer(SECRET).sign(sid))
    const statusWith = async (sessionStore: PostgresSessionStore | MemoryStore) => {
      await new Promise<void>((resolve, reject) =>
        sessionStore.set(sid, stored as never, (error?: unknown) => (error ? reject(error) : resolve())))
      const instance = await buildApp(sessionStore)
      apps.push(instance)
      const browser = new Browser(instance)
      browser.cookies.set('sessionId', signed)
      const response = await browser.send('GET', '/count')
      return { status: response.statusCode, user: (response.json() as Reply).user }
    }
    const ours = await statusWith(store)
    expect(ours.status).toBe(200)
    expect(ours).toEqual(await statusWith(new MemoryStore()))
  })

  it('keeps several users apart when their requests run at once', async () => {
    const shared = await app()
    const names = ['ada', 'bob', 'cy', 'dee', 'eve', 'fay']
    const browsers = names.map(() => new Browser(shared))
    await Promise.all(browsers.map((browser, i) => browser.json('POST', `/login/${names[i]}`)))
    for (let round = 1; round <= 3; round++) {
      const replies = await Promise.all(browsers.map((browser) => browser.json('GET', '/count')))
      expect(replies).toEqual(names.map((user) => expect.objectContaining({ user, views: round })))
    }
    expect(await store.length()).toBe(names.length)
  })

  it('a slow request that read the session before a logout cannot write it back (tombstones)', async () => {
    const gate = new Gate()
    const shared = await app({}, gate)
    const browser = new Browser(shared)
    const { id } = await browser.json('POST', '/login/ada')
    const tab = browser.clone()
    const slow = tab.send('GET', '/slow')
    await gate.entered

    await browser.json('POST', '/logout')
    gate.release()
    // The slow request answers as it would have (fastify saved with rolling) but the store kept the logout.
    expect((await slow).json()).toMatchObject({ id, user: 'ada', views: 1 })
    expect(await store.get(id)).toBeNull()
    expect(await store.length()).toBe(0)
    const after = await new Browser(shared).json('GET', '/peek')
    expect(after.user).toBeUndefined()
    // Even the tab whose slow request got a fresh cookie is logged out.
    expect((await tab.json('GET', '/peek')).user).toBeUndefined()
  })
}, realBackends)
