// The Express 5 app every HTTP benchmark drives: express-session over one
// store, with routes that read the session, change it, or (for the
// shared-session bench) each add a key of their own to it after a delay.
import { randomUUID } from 'node:crypto'
import express, { type Express, type Request } from 'express'
import session from 'express-session'
import { HTTP_SECRET } from './http-sessions.js'
import { SESSION_MAX_AGE_MS } from './sessions.js'

export interface SessionAppOptions {
  /** express-session's resave; false (the benchmarks' setting) unless a bench compares. */
  resave?: boolean
}

type Data = { userId?: number; views?: number; files?: Record<string, { name: string; size: number }> } & Record<string, unknown>
const dataOf = (req: Request) => req.session as unknown as Data
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Routes are added after `before`, which runs outside the session middleware. */
export function sessionApp(store: session.Store, options: SessionAppOptions = {}, before?: (app: Express) => void): Express {
  const app = express()
  before?.(app)
  app.use(session({
    store,
    secret: HTTP_SECRET,
    resave: options.resave ?? false,
    saveUninitialized: false,
    cookie: { maxAge: SESSION_MAX_AGE_MS },
  }))
  // Reads the session only: express-session then calls get, and touch at the end.
  app.get('/read', (req, res) => {
    res.send(String(dataOf(req).userId ?? 'no session'))
  })
  // Changes the session: get, then set at the end.
  app.get('/write', (req, res) => {
    const data = dataOf(req)
    data.views = (data.views ?? 0) + 1
    res.send(String(data.views))
  })
  // The shared-session bench: the session is read when the request arrives,
  // then `delay` ms pass (other requests of the session save meanwhile), then
  // the request sets a key of its own, saved when it answers.
  app.get('/key', async (req, res) => {
    const i = Number(req.query.i)
    await sleep(Number(req.query.delay))
    dataOf(req)[`k${i}`] = i
    res.send('ok')
  })
  // The same with a nested key: an upload adds itself to the session's files.
  app.get('/file', async (req, res) => {
    const i = Number(req.query.i)
    await sleep(Number(req.query.delay))
    const data = dataOf(req)
    data.files = { ...data.files, [randomUUID()]: { name: `upload-${i}.pdf`, size: 1000 + i } }
    res.send('ok')
  })
  // What those requests left: how many of their keys the stored session holds (counts only).
  app.get('/keys', (req, res) => {
    const data = dataOf(req)
    res.json({
      found: data.userId !== undefined,
      keys: Object.keys(data).filter((key) => /^k\d+$/.test(key)).length,
      files: Object.keys(data.files ?? {}).length,
    })
  })
  return app
}
