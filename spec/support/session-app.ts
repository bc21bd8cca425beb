// The small Express app the fault tests send traffic through: log in, ask
// who you are, log out. express-session answers 500 when the store fails.
import express from 'express'
import session from 'express-session'
import type { PostgresSessionStore } from '../../lib/session-store'

export const HOUR = 3600_000

export function sessionApp(store: PostgresSessionStore) {
  const app = express()
  app.use(session({ store, secret: 'fault test', resave: false, saveUninitialized: false, cookie: { maxAge: HOUR } }))
  app.post('/login', (req, res) => {
    ;(req.session as unknown as { user: string }).user = String(req.query.user)
    res.send('ok')
  })
  app.get('/me', (req, res) => {
    const user = (req.session as unknown as { user?: string }).user
    if (user) res.send(user)
    else res.status(401).send('who are you?')
  })
  app.post('/logout', (req, res, next) => {
    req.session.destroy((error) => (error ? next(error) : res.send('bye')))
  })
  // Express's own handler would do the same, but prints each error.
  app.use((_error: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    res.status(500).send('store unavailable')
  })
  return app
}

export class HttpError extends Error {
  /** As errorKinds (spec/support/traffic.ts) reports it: "HTTP 500". */
  readonly code: string

  constructor(readonly status: number) {
    super(`HTTP ${status}`)
    this.name = 'HttpError'
    this.code = `HTTP ${status}`
  }
}

// jest hands each test file a copy of `process` whose listeners never fire.
// The real one is reached through a function made outside jest's sandbox.
const realProcess = Buffer.constructor('return process')() as NodeJS.Process

/** Collects the process's unhandled rejections while the test file runs; the array is the record. */
export function watchUnhandledRejections(): unknown[] {
  const unhandled: unknown[] = []
  const onUnhandled = (reason: unknown) => void unhandled.push(reason)
  beforeAll(() => void realProcess.on('unhandledRejection', onUnhandled))
  afterAll(() => void realProcess.off('unhandledRejection', onUnhandled))
  return unhandled
}
