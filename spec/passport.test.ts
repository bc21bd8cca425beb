// End to end: Passport 0.7 with passport-local on Express 5 and express-session,
// sessions in PostgresSessionStore, driven over HTTP by supertest, on real PostgreSQL.
// Passport regenerates the session on login and on logout, and saves it before calling back.
import express from 'express'
import session from 'express-session'
import passport, { Passport } from 'passport'
import { Strategy as LocalStrategy } from 'passport-local'
import request from 'supertest'
import { PostgresSessionStore } from '../lib/session-store'
import { connectForSuite, describeEachBackend, realBackends, uniqueTable } from './support/backends'
import { Gate } from './support/gate'

const PASSWORDS: Record<string, string> = { ada: 'lovelace', bob: 'builder' }

interface User {
  name: string
}

/** What a save callback saw: how often it came, and what the store held when it did. */
interface SaveRecord {
  calls: number
  storedThen: unknown[]
}

/**
 * An app as the passport-local guide builds it: POST /login with a form, POST /logout,
 * /me tells who is logged in; /slow reads the session, waits at the gate, then changes it;
 * /note saves explicitly and records what its callback saw.
 */
function buildApp(store: PostgresSessionStore, gate: Gate, saves: SaveRecord) {
  const auth = new Passport() as typeof passport
  auth.use(new LocalStrategy((username, password, done) => {
    done(null, PASSWORDS[username] === password ? { name: username } : false)
  }))
  auth.serializeUser((user, done) => done(null, (user as User).name))
  auth.deserializeUser((name: string, done) => done(null, name in PASSWORDS ? { name } : false))

  const app = express()
  app.use(express.urlencoded({ extended: false }))
  app.use(session({ store, secret: 'passport test secret', resave: false, saveUninitialized: false }))
  app.use(auth.session())

  const me = (req: express.Request) => ({ id: req.sessionID, user: (req.user as User | undefined)?.name ?? null })
  app.post('/login', (req, res, next) => {
    auth.authenticate('local', (error: unknown, user: User | false) => {
      if (error) return next(error)
      if (!user) return res.status(401).json({ error: 'wrong name or password' })
      req.login(user, (loginError) => {
        if (loginError) return next(loginError)
        // Passport saved the session before calling back: the store already has the login.
        store.get(req.sessionID).then((stored) => res.json({ ...me(req), stored }), next)
      })
    })(req, res, next)
  })
  app.post('/logout', (req, res, next) => {
    req.logout((error) => (error ? next(error) : res.json(me(req))))
  })
  app.get('/me', (req, res) => {
    res.json(me(req))
  })
  app.get('/slow', (req, res) => {
    void gate.pass().then(() => {
      ;(req.session as unknown as { visits: number }).visits = 1
      res.json(me(req))
    })
  })
  app.post('/note', (req, res, next) => {
    ;(req.session as unknown as { note: string }).note = 'saved'
    req.session.save((error) => {
      saves.calls++
      if (error) return next(error)
      void store.get(req.sessionID).then((stored) => {
        saves.storedThen.push(stored)
        // Long enough for a second callback, should one come.
        setTimeout(() => res.json(me(req)), 50)
      }, next)
    })
  })
  return app
}

/** The session cookie of a response, as a browser would send it back. */
function sessionCookie(response: request.Response): string {
  const cookies = ([] as string[]).concat(response.headers['set-cookie'] ?? [])
  const cookie = cookies.find((each) => each.startsWith('connect.sid='))
  if (!cookie) throw new Error('the response set no session cookie')
  return cookie.split(';')[0]
}

describeEachBackend('Passport 0.7 + passport-local on Express 5', (backend) => {
  const db = connectForSuite(backend)
  let store: PostgresSessionStore
  let gate: Gate
  let saves: SaveRecord
  let app: express.Express

  beforeEach(async () => {
    store = new PostgresSessionStore({ ...db().source, ...backend.storeOptions, table: uniqueTable('passport'), cleanupInterval: 0 })
    await store.migrate()
    gate = new Gate()
    saves = { calls: 0, storedThen: [] }
    app = buildApp(store, gate, saves)
  })
  afterEach(async () => {
    await store.close()
    await db().sql.unsafe(`DROP TABLE IF EXISTS "${store.store.table}"`)
  })

  /** Logs ada in from a visitor session (one with data, so it is stored): the cookies before and after. */
  async function logIn() {
    const visit = await request(app).post('/note')
    const visitorCookie = sessionCookie(visit)
    const login = await request(app).post('/login').set('Cookie', visitorCookie)
      .type('form').send({ username: 'ada', password: 'lovelace' }).expect(200)
    return { visitorId: visit.body.id as string, visitorCookie, login, cookie: sessionCookie(login) }
  }

  it('login regenerates the session id; the pre-login cookie neither authenticates nor finds a session', async () => {
    const { visitorId, visitorCookie, login, cookie } = await logIn()
    expect(login.body.user).toBe('ada')
    expect(login.body.id).not.toBe(visitorId)
    // Passport's save came before its callback: the row held the login already.
    expect(login.body.stored).toMatchObject({ passport: { user: 'ada' } })
    expect((await request(app).get('/me').set('Cookie', cookie)).body).toEqual({ id: login.body.id, user: 'ada' })

    expect(await store.get(visitorId)).toBeNull()
    expect(await store.length()).toBe(1)
    const planted = await request(app).get('/me').set('Cookie', visitorCookie)
    expect(planted.body.user).toBeNull()
    expect(planted.body.id).not.toBe(visitorId)
  })

  it('a wrong password does not log in and leaves the visitor session as it was', async () => {
    const visit = await request(app).post('/note')
    await request(app).post('/login').set('Cookie', sessionCookie(visit))
      .type('form').send({ username: 'ada', password: 'wrong' }).expect(401)
    expect(await store.get(visit.body.id)).toMatchObject({ note: 'saved' })
    expect(await store.get(visit.body.id)).not.toHaveProperty('passport.user')
  })

  it('logout regenerates the session id; the pre-logout cookie neither authenticates nor finds a session', async () => {
    const { login, cookie } = await logIn()
    const logout = await request(app).post('/logout').set('Cookie', cookie).expect(200)
    expect(logout.body.user).toBeNull()
    expect(logout.body.id).not.toBe(login.body.id)

    expect(await store.get(login.body.id)).toBeNull()
    const replay = await request(app).get('/me').set('Cookie', cookie)
    expect(replay.body.user).toBeNull()
    expect(replay.body.id).not.toBe(login.body.id)
    // Nothing stored anywhere still names ada.
    expect(Object.values(await store.all())).not.toContainEqual(expect.objectContaining({ passport: { user: 'ada' } }))
  })

  it('a slow request that read the session before the logout does not log the user back in', async () => {
    const { login, cookie } = await logIn()
    const slow = request(app).get('/slow').set('Cookie', cookie).then((response) => response)
    await gate.entered
    await request(app).post('/logout').set('Cookie', cookie).expect(200)
    gate.release()
    // The slow request ran as ada (it had read her session), and then tried to save it back.
    expect((await slow).body).toEqual({ id: login.body.id, user: 'ada' })

    expect(await store.get(login.body.id)).toBeNull()
    expect((await request(app).get('/me').set('Cookie', cookie)).body.user).toBeNull()
    expect(Object.values(await store.all())).not.toContainEqual(expect.objectContaining({ passport: { user: 'ada' } }))
  })

  it('req.session.save calls back once, after the data is stored', async () => {
    const { cookie } = await logIn()
    saves.calls = 0
    saves.storedThen = []
    const noted = await request(app).post('/note').set('Cookie', cookie).expect(200)
    expect(saves.calls).toBe(1)
    expect(saves.storedThen).toEqual([expect.objectContaining({ note: 'saved', passport: { user: 'ada' } })])
    expect(await store.get(noted.body.id)).toMatchObject({ note: 'saved' })
  })

  it('keeps users apart when they log in and out at once', async () => {
    const logins = await Promise.all(Object.entries(PASSWORDS).map(([username, password]) =>
      request(app).post('/login').type('form').send({ username, password }).expect(200)))
    const cookies = logins.map(sessionCookie)
    const who = await Promise.all(cookies.map((cookie) => request(app).get('/me').set('Cookie', cookie)))
    expect(who.map((response) => response.body.user)).toEqual(Object.keys(PASSWORDS))
    await request(app).post('/logout').set('Cookie', cookies[0]).expect(200)
    expect((await request(app).get('/me').set('Cookie', cookies[0])).body.user).toBeNull()
    expect((await request(app).get('/me').set('Cookie', cookies[1])).body.user).toBe('bob')
  })
}, realBackends)
