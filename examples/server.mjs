// A small Express app whose sessions live in PostgreSQL: a visit counter, a
// login form and the list of active sessions. Run it with `npm start`.
//
// By default it starts an embedded PostgreSQL (PGlite) that keeps its data in
// examples/.data/, so sessions survive a restart. Set DATABASE_URL to use a
// real server instead. Other settings: PORT (default 3000), SESSION_TABLE
// (default sessions), SESSION_DATA_DIR (where PGlite keeps its files),
// SESSION_MAX_AGE_MS (the cookie's maxAge, default one day) and
// SESSION_CLEANUP_MS (how often expired rows are deleted, default the library's).
import { createHash } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import express from 'express'
import session from 'express-session'
import postgres from 'postgres'
import { PostgresSessionStore } from 'express-session-postgres'
import { startEmbeddedPostgres } from './embedded-postgres.mjs'

const HOST = '127.0.0.1'
const PORT = Number(process.env.PORT ?? 3000)
const TABLE = process.env.SESSION_TABLE || 'sessions'
const DATA_DIR = process.env.SESSION_DATA_DIR || fileURLToPath(new URL('.data/', import.meta.url))
// A real app reads its secret from the environment and never commits it.
const SECRET = process.env.SESSION_SECRET || 'example secret: change me'
const MAX_AGE = Number(process.env.SESSION_MAX_AGE_MS || 24 * 60 * 60 * 1000)
// undefined leaves the library's default in place.
const CLEANUP_INTERVAL = process.env.SESSION_CLEANUP_MS ? Number(process.env.SESSION_CLEANUP_MS) : undefined

const log = (message) => console.log(`[example] ${message}`)

// 1. A database: the one in DATABASE_URL, or an embedded one on disk.
const embedded = process.env.DATABASE_URL ? null : await startEmbeddedPostgres({ dataDir: DATA_DIR, log })
log(embedded ? 'using the embedded PostgreSQL' : 'using the server in DATABASE_URL')
// onnotice: quiet "relation already exists" from the table creation below.
const sql = postgres(process.env.DATABASE_URL || embedded.url, { onnotice: () => {} })

// 2. The store, and its table (created only when missing).
const store = new PostgresSessionStore({ sql, table: TABLE, cleanupInterval: CLEANUP_INTERVAL })
log(`creating the table "${TABLE}" if it is missing`)
await store.migrate()

// 3. The app.
const app = express()
app.use(express.urlencoded({ extended: false }))
app.use(session({
  store,
  secret: SECRET,
  resave: false,             // the store keeps unchanged sessions alive through touch()
  saveUninitialized: false,  // no row for a visitor until there is something to keep
  cookie: { maxAge: MAX_AGE, httpOnly: true, sameSite: 'lax' },
}))

// Express 5 passes a rejected promise (say, the database is down) to its error handler.
app.get('/', async (req, res) => {
  req.session.views = (req.session.views ?? 0) + 1
  // Saved now rather than after the response, so the list below includes this visit.
  await new Promise((resolve, reject) => req.session.save((error) => (error ? reject(error) : resolve())))
  res.type('html').send(page(req, await store.all()))
})

app.post('/login', (req, res, next) => {
  const name = String(req.body.name ?? '').trim().slice(0, 100)
  if (!name) return res.redirect(303, '/')
  // A new session id on login, so an id planted before it is worth nothing.
  req.session.regenerate((error) => {
    if (error) return next(error)
    req.session.user = name
    res.redirect(303, '/')
  })
})

app.post('/logout', (req, res, next) => {
  req.session.destroy((error) => {
    if (error) return next(error)
    res.clearCookie('connect.sid').redirect(303, '/')
  })
})

const server = app.listen(PORT, HOST, () => {
  log(`listening on http://${HOST}:${server.address().port}/`)
})

// 4. A clean stop on Ctrl-C or SIGTERM: no new requests, then the store, the
// connections and the database, after which Node has nothing left and exits.
// once: a second Ctrl-C ends the process at once, should a step hang.
for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => shutDown(signal))

async function shutDown(signal) {
  log(`${signal}: shutting down`)
  await new Promise((resolve) => server.close(resolve))
  await store.close()
  await sql.end({ timeout: 5 })
  await embedded?.stop()
  log('stopped')
}

// The page. Everything printed passes through escapeHtml; session ids are
// shown only as a short hash, since an id is as good as a password.
function page(req, sessions) {
  const user = req.session.user
  const rows = Object.entries(sessions).map(([id, data]) => `
    <tr${id === req.sessionID ? ' class="mine"' : ''}>
      <td><code>${escapeHtml(idLabel(id))}</code></td>
      <td>${escapeHtml(data.user ?? '(anonymous)')}</td>
      <td>${escapeHtml(data.cookie?.expires ? new Date(data.cookie.expires).toISOString() : '(browser session)')}</td>
    </tr>`)
  return `<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>express-session-postgres example</title>
<style>body { font-family: sans-serif; max-width: 40em; margin: 2em auto } .mine { font-weight: bold }</style>
<h1>express-session-postgres</h1>
<p>Visits in this session: <strong>${escapeHtml(req.session.views)}</strong></p>
${user
    ? `<p>Logged in as <strong>${escapeHtml(user)}</strong></p>
<form method="post" action="/logout"><button>Log out</button></form>`
    : `<form method="post" action="/login">
  <label>Name <input name="name" required maxlength="100"></label> <button>Log in</button>
</form>`}
<h2>Active sessions: ${rows.length}</h2>
<table>
  <tr><th>Session</th><th>User</th><th>Expires</th></tr>${rows.join('')}
</table>
</html>
`
}

function idLabel(id) {
  return createHash('sha256').update(id).digest('hex').slice(0, 8)
}

function escapeHtml(value) {
  return String(value).replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`)
}
