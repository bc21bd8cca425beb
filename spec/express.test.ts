// End to end: real Express 4 and Express 5 apps with express-session and
// PostgresSessionStore, driven over HTTP by supertest, on every backend.
import { createHmac } from 'node:crypto'
import express from 'express'
import session, { type SessionOptions } from 'express-session'
import type { Sql } from 'postgres'
import request from 'supertest'
import { PostgresStore } from '../lib/postgres-store'
import { PostgresSessionStore, type PostgresSessionStoreOptions } from '../lib/session-store'
import { hashToken } from '../lib/tokens'
import { describeEachBackend, driverBackends, uniqueTable, type Connection } from './support/backends'
import { Gate } from './support/gate'

// The package alias express4 has no types of its own; its API is Express 5's for what is used here.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const express4: typeof express = require('express4')

declare module 'express-session' {
  interface SessionData {
    user: string
    views: number
  }
}

const HOUR = 3600_000
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

type Express = typeof express
const EXPRESS_VERSIONS: [string, Express][] = [
  ['Express 4', express4],
  ['Express 5', express],
]
type Reply = { id: string; user?: string; views?: number }

/**
 * A small app: log in, count visits, peek without changing anything, regenerate, log out,
 * log out everywhere; /slow waits at the gate, then counts a visit.
 */
function buildApp(createApp: Express, store: PostgresSessionStore, options: Partial<SessionOptions> = {}, gate?: Gate) {
  const app = createApp()
  app.use(session({ store, secret: 'test secret', resave: false, saveUninitialized: false, ...options }))
  const reply = (req: express.Request): Reply => ({ id: req.sessionID, user: req.session.user, views: req.session.views })
  app.post('/login/:user', (req, res) => {
    req.session.user = req.params.user
    res.json(reply(req))
  })
  app.get('/count', (req, res) => {
    req.session.views = (req.session.views ?? 0) + 1
    res.json(reply(req))
  })
  app.get('/peek', (req, res) => {
    res.json(reply(req))
  })
  app.post('/regenerate', (req, res, next) => {
    const user = req.session.user
    req.session.regenerate((error) => {
      if (error) return next(error)
      if (user) req.session.user = user
      res.json(reply(req))
    })
  })
  app.post('/logout', (req, res, next) => {
    req.session.destroy((error) => (error ? next(error) : res.json({ loggedOut: true })))
  })
  app.post('/logout-everywhere', (req, res, next) => {
    const user = req.session.user
    if (!user) return res.status(401).json({ error: 'not logged in' })
    store.destroyByOwner(user).then((count) => res.json({ loggedOut: count }), next)
  })
  app.get('/slow', (req, res) => {
    void gate!.pass().then(() => {
      req.session.views = (req.session.views ?? 0) + 1
      res.json(reply(req))
    })
  })
  return app
}

/** The Set-Cookie header of the session cookie, or '' when the response set none. */
function sessionCookieHeader(response: request.Response): string {
  const cookies = ([] as string[]).concat(response.headers['set-cookie'] ?? [])
  return cookies.find((each) => each.startsWith('connect.sid=')) ?? ''
}

/** The signed session cookie of a response, ready to send back by hand. */
function sessionCookie(response: request.Response): string {
  const header = sessionCookieHeader(response)
  if (!header) throw new Error('the response set no session cookie')
  return header.split(';')[0]
}

const hasSessionCookie = (response: request.Response) => sessionCookieHeader(response) !== ''

describe.each(EXPRESS_VERSIONS)('%s', (_, createApp) => {
  describeEachBackend('with PostgresSessionStore', (backend) => {
    let db: Connection
    let sql: Sql
    let core: PostgresStore
    let store: PostgresSessionStore
    const stores: PostgresSessionStore[] = []

    /** A store on this test's table. */
    function newStore(options: Partial<PostgresSessionStoreOptions> = {}) {
      const created = new PostgresSessionStore({
        ...db.source, table: core.table, cleanupInterval: 0, ...backend.storeOptions, ...options,
      } as PostgresSessionStoreOptions)
      stores.push(created)
      return created
    }

    /** Rows of the table whose bytes contain text (tombstones hold none). */
    async function rowsContaining(text: string) {
      const rows = await sql.unsafe<{ token: string; data: Buffer }[]>(`SELECT token, data FROM "${core.table}"`)
      return rows.filter((row) => row.token.includes(text) || row.data.includes(text))
    }

    async function storedExpiry(sid: string): Promise<number> {
      const entry = await core.findEntry(sid)
      if (!entry) throw new Error('no stored session')
      return entry.expiry.getTime()
    }

    beforeAll(() => {
      db = backend.open()
      sql = db.sql
    })
    beforeEach(async () => {
      core = new PostgresStore(db.client, { table: uniqueTable('express'), cleanupInterval: 0, ...backend.storeOptions })
      await core.migrate()
      store = newStore()
    })
    afterEach(async () => {
      for (const each of stores.splice(0)) await each.close()
      core.stopCleanup()
      jest.restoreAllMocks()
      await sql`DROP TABLE IF EXISTS ${sql(core.table)}`
    })
    afterAll(async () => {
      await db.end()
    })

    it('logs in, counts visits, logs out', async () => {
      const agent = request.agent(buildApp(createApp, store))
      const login = await agent.post('/login/ada').expect(200)
      expect(login.body.user).toBe('ada')
      expect((await agent.get('/count')).body).toMatchObject({ user: 'ada', views: 1 })
      expect((await agent.get('/count')).body).toMatchObject({ user: 'ada', views: 2 })
      expect((await agent.get('/count')).body).toEqual({ id: login.body.id, user: 'ada', views: 3 })
      expect(await store.get(login.body.id)).toMatchObject({ user: 'ada', views: 3 })

      await agent.post('/logout').expect(200)
      expect(await store.get(login.body.id)).toBeNull()
      expect(await store.length()).toBe(0)
      const after = await agent.get('/count')
      expect(after.body.user).toBeUndefined()
      expect(after.body.views).toBe(1)
      expect(after.body.id).not.toBe(login.body.id)
    })

    it('rolling: an unchanged request sends the cookie again and moves the stored expiry', async () => {
      const exact = newStore({ touchAfter: 0 })
      const agent = request.agent(buildApp(createApp, exact, { rolling: true, cookie: { maxAge: HOUR } }))
      const { id } = (await agent.post('/login/ada')).body
      const first = await storedExpiry(id)
      await sleep(1100)
      const peek = await agent.get('/peek')
      expect(hasSessionCookie(peek)).toBe(true)
      const moved = await storedExpiry(id)
      expect(moved).toBeGreaterThanOrEqual(first + 1000)
      // The cookie's Expires (whole seconds) and the row agree.
      const expires = Date.parse(/Expires=([^;]+)/.exec(sessionCookieHeader(peek))![1])
      expect(Math.abs(expires - moved)).toBeLessThan(1000)
    })

    it('without rolling, an unchanged request sends no cookie', async () => {
      const agent = request.agent(buildApp(createApp, store, { cookie: { maxAge: HOUR } }))
      await agent.post('/login/ada')
      expect(hasSessionCookie(await agent.get('/peek'))).toBe(false)
    })

    it('resave false: an unchanged request touches the session instead of rewriting it', async () => {
      const agent = request.agent(buildApp(createApp, store, { resave: false }))
      await agent.post('/login/ada')
      const set = jest.spyOn(store, 'set')
      const touch = jest.spyOn(store, 'touch')
      await agent.get('/peek')
      expect(set).not.toHaveBeenCalled()
      expect(touch).toHaveBeenCalledTimes(1)
    })

    it('resave true: an unchanged request rewrites the session', async () => {
      const agent = request.agent(buildApp(createApp, store, { resave: true }))
      const { id } = (await agent.post('/login/ada')).body
      const set = jest.spyOn(store, 'set')
      await agent.get('/peek')
      expect(set).toHaveBeenCalledTimes(1)
      expect(await store.get(id)).toMatchObject({ user: 'ada' })
    })

    it('saveUninitialized false stores nothing for a visitor who changed nothing; true stores it', async () => {
      const lazy = await request(buildApp(createApp, store, { saveUninitialized: false })).get('/peek')
      expect(hasSessionCookie(lazy)).toBe(false)
      expect(await store.length()).toBe(0)

      const eager = await request(buildApp(createApp, store, { saveUninitialized: true })).get('/peek')
      expect(hasSessionCookie(eager)).toBe(true)
      expect(Object.keys(await store.all())).toEqual([eager.body.id])
    })

    it('regenerate replaces the session id and removes the old session', async () => {
      const agent = request.agent(buildApp(createApp, store))
      const before = (await agent.post('/login/ada')).body
      const after = (await agent.post('/regenerate')).body
      expect(after.id).not.toBe(before.id)
      expect(after.user).toBe('ada')
      expect(await store.get(before.id)).toBeNull()
      expect(await store.get(after.id)).toMatchObject({ user: 'ada' })
      expect((await agent.get('/peek')).body).toMatchObject({ id: after.id, user: 'ada' })
    })

    describe('a request in flight during a logout', () => {
      /** Logs ada in, starts /slow with her cookie, and waits until it has read her session. */
      async function slowRequestOfAda(app: ReturnType<typeof buildApp>, gate: Gate) {
        const login = await request(app).post('/login/ada-in-flight')
        const cookie = sessionCookie(login)
        const slow = request(app).get('/slow').set('Cookie', cookie).then((response) => response)
        await gate.entered
        return { id: login.body.id as string, cookie, slow }
      }

      it('cannot write the session back after the logout finished', async () => {
        const gate = new Gate()
        const app = buildApp(createApp, store, {}, gate)
        const ada = await slowRequestOfAda(app, gate)
        await request(app).post('/logout').set('Cookie', ada.cookie).expect(200)
        const set = jest.spyOn(store, 'set')
        gate.release()
        const late = await ada.slow
        // The slow request did change the session and express-session did save it...
        expect(late.body).toEqual({ id: ada.id, user: 'ada-in-flight', views: 1 })
        expect(set).toHaveBeenCalledWith(ada.id, expect.anything(), expect.any(Function))
        // ...but the store refused: the old cookie is anonymous, and no row holds her data.
        const after = await request(app).get('/peek').set('Cookie', ada.cookie)
        expect(after.body.user).toBeUndefined()
        expect(after.body.id).not.toBe(ada.id)
        expect(await store.get(ada.id)).toBeNull()
        expect(await rowsContaining('ada-in-flight')).toEqual([])
      })

      it('without tombstones the late request writes the logged-out session back (what the peers do)', async () => {
        const gate = new Gate()
        const app = buildApp(createApp, newStore({ tombstones: false }), {}, gate)
        const ada = await slowRequestOfAda(app, gate)
        await request(app).post('/logout').set('Cookie', ada.cookie).expect(200)
        gate.release()
        await ada.slow
        expect((await request(app).get('/peek').set('Cookie', ada.cookie)).body.user).toBe('ada-in-flight')
      })

      it('cannot bring back the old id after a regenerate either', async () => {
        const gate = new Gate()
        const app = buildApp(createApp, store, {}, gate)
        const ada = await slowRequestOfAda(app, gate)
        const regenerated = await request(app).post('/regenerate').set('Cookie', ada.cookie).expect(200)
        gate.release()
        await ada.slow
        expect((await request(app).get('/peek').set('Cookie', ada.cookie)).body.user).toBeUndefined()
        expect(await store.get(ada.id)).toBeNull()
        const fresh = await request(app).get('/peek').set('Cookie', sessionCookie(regenerated))
        expect(fresh.body).toMatchObject({ id: regenerated.body.id, user: 'ada-in-flight' })
      })
    })

    describe('owner: (session) => session.user', () => {
      it('lists each user\'s devices, and log out everywhere ends only that user\'s sessions', async () => {
        const owned = newStore({ owner: (data) => data.user })
        const app = buildApp(createApp, owned)
        const devices = { ada: [request.agent(app), request.agent(app), request.agent(app)], bob: [request.agent(app), request.agent(app)] }
        const ids: Record<string, string[]> = { ada: [], bob: [] }
        for (const [user, agents] of Object.entries(devices)) {
          for (const agent of agents) ids[user].push((await agent.post(`/login/${user}`)).body.id)
        }
        await request(app).get('/count') // a visitor, owned by nobody
        for (const user of ['ada', 'bob']) {
          const listed = await owned.listByOwner(user)
          expect(listed.map((each) => each.id).sort()).toEqual([...ids[user]].sort())
          expect(listed.map((each) => each.session.user)).toEqual(ids[user].map(() => user))
        }

        const [laptop, ...others] = devices.ada
        expect((await laptop.post('/logout-everywhere').expect(200)).body).toEqual({ loggedOut: 3 })
        for (const agent of devices.ada) expect((await agent.get('/peek')).body.user).toBeUndefined()
        // A new, anonymous session (JSON drops the undefined user).
        for (const agent of others) expect((await agent.get('/count')).body).toEqual({ id: expect.any(String), views: 1 })
        for (const agent of devices.bob) expect((await agent.get('/count')).body).toMatchObject({ user: 'bob', views: 1 })
        expect(await owned.listByOwner('ada')).toEqual([])
        expect(await owned.listByOwner('bob')).toHaveLength(2)
        expect(await rowsContaining('"ada"')).toEqual([])
      })
    })

    it('absoluteTimeout: rolling requests cannot keep a session past created + absoluteTimeout', async () => {
      const capped = newStore({ absoluteTimeout: 1500 })
      const agent = request.agent(buildApp(createApp, capped, { rolling: true, cookie: { maxAge: HOUR } }))
      const { id } = (await agent.post('/login/ada')).body
      // The session was created before the login answered, on a busy machine too.
      const loggedIn = Date.now()
      for (let i = 0; Date.now() - loggedIn < 1100; i++) {
        const reply = await agent.get(i % 2 ? '/count' : '/peek')
        expect(reply.body).toMatchObject({ id, user: 'ada' })
        expect(await storedExpiry(id)).toBeLessThanOrEqual(loggedIn + 1500 + 50)
        await sleep(150)
      }
      await sleep(Math.max(0, loggedIn + 1800 - Date.now()))
      const late = await agent.get('/peek')
      expect(late.body.user).toBeUndefined()
      expect(late.body.id).not.toBe(id)
    })

    it('hashTokens and secret: a whole visit works and the table holds neither the session id nor the user', async () => {
      const guarded = newStore({ hashTokens: true, secret: 'an encryption secret of some length' })
      const agent = request.agent(buildApp(createApp, guarded))
      const { id } = (await agent.post('/login/ada-guarded')).body
      expect((await agent.get('/count')).body).toEqual({ id, user: 'ada-guarded', views: 1 })
      expect((await agent.get('/count')).body).toEqual({ id, user: 'ada-guarded', views: 2 })
      expect(await rowsContaining(id)).toEqual([])
      expect(await rowsContaining('ada-guarded')).toEqual([])
      expect(Object.keys(await guarded.all())).toEqual([hashToken(id)])
      await agent.post('/logout').expect(200)
      expect((await agent.get('/peek')).body.user).toBeUndefined()
    })

    it('a session whose maxAge has passed is gone, even when the old cookie is sent again', async () => {
      const app = buildApp(createApp, store, { cookie: { maxAge: 300 } })
      const login = await request(app).post('/login/ada')
      const cookie = sessionCookie(login)
      expect((await request(app).get('/peek').set('Cookie', cookie)).body.user).toBe('ada')
      await sleep(500)
      const late = await request(app).get('/peek').set('Cookie', cookie)
      expect(late.body.user).toBeUndefined()
      expect(await store.get(login.body.id)).toBeNull()
    })

    it('a cookie without maxAge is a browser-session cookie, stored for ttl seconds', async () => {
      const shortLived = newStore({ ttl: 1 })
      const app = buildApp(createApp, shortLived)
      const before = Date.now()
      const login = await request(app).post('/login/ada')
      expect(sessionCookieHeader(login)).not.toMatch(/Expires=/)
      const expiry = await storedExpiry(login.body.id)
      expect(expiry).toBeGreaterThanOrEqual(before + 1000)
      expect(expiry).toBeLessThanOrEqual(Date.now() + 1000)

      await sleep(1200)
      const late = await request(app).get('/peek').set('Cookie', sessionCookie(login))
      expect(late.body.user).toBeUndefined()
    })

    it('with touchAfter: 0, each request touches the stored expiry forward, and get shows the new expiry', async () => {
      const exact = newStore({ touchAfter: 0 })
      const agent = request.agent(buildApp(createApp, exact, { cookie: { maxAge: HOUR } }))
      const { id } = (await agent.post('/login/ada')).body
      const first = await storedExpiry(id)
      await sleep(50)
      const before = Date.now()
      await agent.get('/peek')
      const touched = await storedExpiry(id)
      expect(touched).toBeGreaterThan(first)
      expect(touched).toBeGreaterThanOrEqual(before + HOUR)
      const found = await exact.get(id)
      expect(found).toMatchObject({ user: 'ada' })
      expect(new Date(found!.cookie.expires!).getTime()).toBe(touched)
    })

    it('by default, a request writes its touch only once the expiry moves by a tenth of maxAge', async () => {
      // A tenth of 8 s is 800 ms: room for a slow request on a busy machine before the touch is due.
      const agent = request.agent(buildApp(createApp, store, { cookie: { maxAge: 8000 } }))
      const { id } = (await agent.post('/login/ada')).body
      const first = await storedExpiry(id)
      await sleep(50)
      await agent.get('/peek')
      expect(await storedExpiry(id)).toBe(first)
      await sleep(900)
      const before = Date.now()
      await agent.get('/peek')
      expect(await storedExpiry(id)).toBeGreaterThanOrEqual(before + 8000)
    })

    it('keeps several sessions apart when they run at once', async () => {
      const app = buildApp(createApp, store)
      const names = ['ada', 'bob', 'cy', 'dee', 'eve', 'fay']
      const agents = names.map(() => request.agent(app))
      await Promise.all(agents.map((agent, i) => agent.post(`/login/${names[i]}`)))
      for (let round = 1; round <= 3; round++) {
        const replies = await Promise.all(agents.map((agent) => agent.get('/count')))
        expect(replies.map((reply) => reply.body)).toEqual(
          names.map((user) => expect.objectContaining({ user, views: round })),
        )
      }
      expect(await store.length()).toBe(names.length)
    })

    it('all, length and clear see what real requests stored', async () => {
      const app = buildApp(createApp, store)
      const ids: Record<string, string> = {}
      for (const user of ['ada', 'bob', 'cy']) ids[user] = (await request(app).post(`/login/${user}`)).body.id

      const all = await store.all()
      expect(Object.keys(all).sort()).toEqual(Object.values(ids).sort())
      for (const [user, id] of Object.entries(ids)) expect(all[id]).toMatchObject({ user })
      expect(await store.length()).toBe(3)

      await store.clear()
      expect(await store.length()).toBe(0)
      expect(await store.all()).toEqual({})
    })
  }, driverBackends)
})

// What an application sees when a session is odd, next to express-session's own MemoryStore:
// the same statuses and the same errors, because the store accepts what MemoryStore accepts.
describe.each(EXPRESS_VERSIONS)('%s: odd sessions, side by side with MemoryStore', (_, createApp) => {
  describeEachBackend('with PostgresSessionStore', (backend) => {
    let sql: Sql
    let store: PostgresSessionStore

    beforeAll(async () => {
      sql = backend.connect()
      store = new PostgresSessionStore({ sql, table: uniqueTable('express_odd'), cleanupInterval: 0, ...backend.storeOptions })
      await store.migrate()
    })
    afterAll(async () => {
      await store.close()
      await sql.unsafe(`DROP TABLE IF EXISTS "${store.store.table}"`)
      await sql.end({ timeout: 5 })
    })

    /**
     * An app whose /bad-expiry breaks the cookie's expiry and saves before answering (as a login
     * route does: Passport saves too); every error express reports is recorded.
     */
    function oddApp(sessionStore: session.Store, errors: string[]) {
      const app = createApp()
      app.use(session({ store: sessionStore, secret: 'test secret', resave: false, saveUninitialized: false }))
      app.post('/bad-expiry', (req, res, next) => {
        req.session.user = 'ada'
        req.session.cookie.expires = new Date(NaN)
        req.session.save((error) => (error ? next(error) : res.json({ id: req.sessionID })))
      })
      app.get('/peek', (req, res) => {
        res.json({ user: req.session.user ?? null })
      })
      // express-session reports a cookie it cannot write while the response goes out: recorded, nothing more to send.
      app.use((error: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
        errors.push(`${error.name}: ${error.message}`)
        if (res.headersSent) return
        res.status(500).json({ error: error.message })
      })
      return app
    }

    /** Runs a scenario on a MemoryStore and on PostgresSessionStore: what each reported, and the statuses. */
    async function sideBySide(scenario: (app: express.Express, sessionStore: session.Store) => Promise<number[]>) {
      const outcome = async (sessionStore: session.Store) => {
        const errors: string[] = []
        const statuses = await scenario(oddApp(sessionStore, errors) as express.Express, sessionStore)
        await sleep(50) // an error express-session defers arrives after the response
        return { statuses, errors }
      }
      return { memory: await outcome(new session.MemoryStore()), postgres: await outcome(store) }
    }

    it('an Invalid Date cookie.expires: the application sees express-session\'s "option expires is invalid"', async () => {
      const { memory, postgres } = await sideBySide(async (app) => [
        (await request(app).post('/bad-expiry')).status,
      ])
      expect(memory.errors).toEqual([expect.stringMatching(/option expires is invalid/)])
      expect(postgres).toEqual(memory)
    })

    it('a stored session without a cookie reaches express-session, which answers as it does with MemoryStore', async () => {
      const { memory, postgres } = await sideBySide(async (app, sessionStore) => {
        const sid = `no-cookie-${Math.random()}`
        await new Promise<void>((resolve, reject) =>
          sessionStore.set(sid, { user: 'ada' } as never, (error) => (error ? reject(error) : resolve())))
        const signature = createHmac('sha256', 'test secret').update(sid).digest('base64').replace(/=+$/, '')
        const signed = encodeURIComponent(`s:${sid}.${signature}`)
        return [(await request(app).get('/peek').set('Cookie', `connect.sid=${signed}`)).status]
      })
      expect(postgres).toEqual(memory)
    })
  })
})
