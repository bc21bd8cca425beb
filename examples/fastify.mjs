// A small Fastify 5 app whose sessions (@fastify/session) live in PostgreSQL:
// a visit counter, log in and log out. Run it with `npm run build && node examples/fastify.mjs`.
//
// By default it starts an embedded PostgreSQL (PGlite) that keeps its data in
// examples/.data/, so sessions survive a restart. Set DATABASE_URL to use a
// real server instead. Other settings: PORT (default 3000), SESSION_TABLE
// (default sessions), SESSION_DATA_DIR (where PGlite keeps its files).
//
//   curl -c jar -b jar http://127.0.0.1:3000/
//   curl -c jar -b jar -X POST -H 'content-type: application/json' -d '{"name":"ada"}' http://127.0.0.1:3000/login
//   curl -c jar -b jar -X POST http://127.0.0.1:3000/logout
import { fileURLToPath } from 'node:url'
import Fastify from 'fastify'
import fastifyCookie from '@fastify/cookie'
import fastifySession from '@fastify/session'
import postgres from 'postgres'
import { PostgresSessionStore } from 'express-session-postgres'
import { startEmbeddedPostgres } from './embedded-postgres.mjs'

const HOST = '127.0.0.1'
const PORT = Number(process.env.PORT ?? 3000)
const TABLE = process.env.SESSION_TABLE || 'sessions'
const DATA_DIR = process.env.SESSION_DATA_DIR || fileURLToPath(new URL('.data/', import.meta.url))
// A real app reads its secret (32 characters or more) from the environment and never commits it.
const SECRET = process.env.SESSION_SECRET || 'example secret: change me, 32+ characters'

const log = (message) => console.log(`[example] ${message}`)

// 1. A database: the one in DATABASE_URL, or an embedded one on disk.
const embedded = process.env.DATABASE_URL ? null : await startEmbeddedPostgres({ dataDir: DATA_DIR, log })
log(embedded ? 'using the embedded PostgreSQL' : 'using the server in DATABASE_URL')
const sql = postgres(process.env.DATABASE_URL || embedded.url, { onnotice: () => {} })

// 2. The store, and its table (created only when missing).
const store = new PostgresSessionStore({ sql, table: TABLE })
await store.migrate()

// 3. The app. @fastify/session calls the store's get, set and destroy, as express-session does.
const app = Fastify()
app.register(fastifyCookie)
app.register(fastifySession, {
  store,
  secret: SECRET,
  saveUninitialized: false, // no row for a visitor until there is something to keep
  // secure: 'auto' sends the cookie over plain http too (for this local example); behind TLS use true.
  cookie: { maxAge: 24 * 60 * 60 * 1000, httpOnly: true, sameSite: 'lax', secure: 'auto' },
})

app.get('/', async (request) => {
  request.session.set('views', (request.session.get('views') ?? 0) + 1)
  return { user: request.session.get('user') ?? null, views: request.session.get('views') }
})

app.post('/login', async (request, reply) => {
  const name = String(request.body?.name ?? '').trim().slice(0, 100)
  if (!name) return reply.code(400).send({ error: 'name is required' })
  // A new session id on login, so an id planted before it is worth nothing.
  await request.session.regenerate()
  request.session.set('user', name)
  return { user: name }
})

app.post('/logout', async (request) => {
  await request.session.destroy()
  return { loggedOut: true }
})

await app.listen({ host: HOST, port: PORT })
log(`listening on http://${HOST}:${app.server.address().port}/`)

// 4. A clean stop on Ctrl-C or SIGTERM: no new requests, then the store, the
// connections and the database, after which Node has nothing left and exits.
for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => shutDown(signal))

async function shutDown(signal) {
  log(`${signal}: shutting down`)
  await app.close()
  await store.close()
  await sql.end({ timeout: 5 })
  await embedded?.stop()
  log('stopped')
}
