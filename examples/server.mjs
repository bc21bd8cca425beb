// A small Express app whose sessions live in PostgreSQL: a visit counter, a
// login, and once logged in "Your devices", the user's own sessions on every
// browser, with "Log out this device" and "Log out everywhere". Run it with `npm start`.
//
// By default it starts an embedded PostgreSQL (PGlite) that keeps its data in
// examples/.data/, so sessions survive a restart. Set DATABASE_URL to use a
// real server instead. Other settings: PORT (default 3000), SESSION_TABLE
// (default sessions), SESSION_DATA_DIR (where PGlite keeps its files),
// SESSION_MAX_AGE_MS (the cookie's maxAge, default one day) and
// SESSION_CLEANUP_MS (how often expired rows are deleted, default the library's).
import { fileURLToPath } from 'node:url'
import express from 'express'
import session from 'express-session'
import postgres from 'postgres'
import { PostgresSessionStore, hashToken } from 'express-session-postgres'
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
const COOKIE = 'connect.sid'

const log = (message) => console.log(`[example] ${message}`)

// 1. A database: the one in DATABASE_URL, or an embedded one on disk.
const embedded = process.env.DATABASE_URL ? null : await startEmbeddedPostgres({ dataDir: DATA_DIR, log })
log(embedded ? 'using the embedded PostgreSQL' : 'using the server in DATABASE_URL')
// onnotice: quiet "relation already exists" from the table creation below.
const sql = postgres(process.env.DATABASE_URL || embedded.url, { onnotice: () => {} })

// 2. The store, and its table (created only when missing). owner: each
// session is filed under its user, for "Your devices" and "Log out everywhere".
// hashTokens: the table holds SHA-256 of each id, never an id a thief could use.
const store = new PostgresSessionStore({
  sql, table: TABLE, cleanupInterval: CLEANUP_INTERVAL, owner: (s) => s.user, hashTokens: true,
})
log(`creating the table "${TABLE}" if it is missing`)
await store.migrate()

// 3. The app. The forms post with a SameSite=Lax cookie, which browsers do not
// send on another site's POST: no cross-site logout.
const app = express()
app.use(express.urlencoded({ extended: false }))
app.use(session({
  store,
  secret: SECRET,
  name: COOKIE,
  resave: false,             // the store keeps unchanged sessions alive through touch()
  saveUninitialized: false,  // no row for a visitor until there is something to keep
  cookie: { maxAge: MAX_AGE, httpOnly: true, sameSite: 'lax' },
}))

// Express 5 passes a rejected promise (say, the database is down) to its error handler.
app.get('/', async (req, res) => {
  // Every stored session has lastSeen: a cookie whose session lacks it names a
  // session that ended (logged out on another device, or expired).
  const sessionEnded = req.session.lastSeen === undefined && hasCookie(req, COOKIE)
  req.session.views = (req.session.views ?? 0) + 1
  req.session.lastSeen = Date.now()
  // Saved now rather than after the response, so "Your devices" includes this
  // visit. touch() first: it moves cookie.expires to now + maxAge, which
  // express-session would do only after this save; saved with the expiry it
  // was loaded with, a session close to expiring would be written as expired.
  req.session.touch()
  await sessionCall(req, 'save')
  const devices = req.session.user ? await store.listByOwner(req.session.user) : []
  res.type('html').send(page(req, devices, notice(Number(req.query.loggedOut), sessionEnded)))
})

app.post('/login', async (req, res) => {
  const name = String(req.body.name ?? '').trim().slice(0, 100)
  if (!name) return res.redirect(303, '/')
  // A new session id on login, so an id planted before it is worth nothing.
  await sessionCall(req, 'regenerate')
  req.session.user = name
  req.session.device = deviceName(req.get('user-agent'))
  req.session.lastSeen = Date.now()
  // Saved before the redirect: express-session would send the 303 before its
  // own save completes, and the browser's next request could miss the login.
  await sessionCall(req, 'save')
  res.redirect(303, '/')
})

app.post('/logout', async (req, res) => {
  await sessionCall(req, 'destroy')
  res.clearCookie(COOKIE).redirect(303, '/')
})

// Every session of this user, on every browser: each one's next request finds no session.
app.post('/logout-everywhere', async (req, res) => {
  const loggedOut = req.session.user ? await store.destroyByOwner(req.session.user) : 0
  await sessionCall(req, 'destroy')
  res.clearCookie(COOKIE).redirect(303, loggedOut ? `/?loggedOut=${loggedOut}` : '/')
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

function hasCookie(req, name) {
  return (req.get('cookie') ?? '').split(/;\s*/).some((pair) => pair.startsWith(`${name}=`))
}

/** req.session's callback methods (save, regenerate, destroy) as a promise. */
function sessionCall(req, method) {
  return new Promise((resolve, reject) => req.session[method]((error) => (error ? reject(error) : resolve())))
}

// ---- the page -------------------------------------------------------------
// Everything printed passes through escapeHtml. No session id is ever shown:
// an id is as good as a password.

function page(req, devices, notice) {
  const { user, views } = req.session
  return `<!doctype html>
<html lang="en">
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>express-session-postgres example</title>
<style>${STYLE}</style>
<main>
  <h1>express-session-postgres</h1>
  <p class="lead">An Express app whose sessions live in PostgreSQL.</p>
  ${notice ? `<p class="notice" role="status">${escapeHtml(notice)}</p>` : ''}
  <section>
    <h2>This session</h2>
    <p>Visits in this session: <strong>${escapeHtml(views)}</strong></p>
    ${user ? `<p>Logged in as <strong>${escapeHtml(user)}</strong></p>` : loginForm()}
  </section>
  ${user ? devicesSection(req, devices) : ''}
</main>
</html>
`
}

/** What the last action did: a count from "Log out everywhere", or a session that ended elsewhere. */
function notice(devicesLoggedOut, sessionEnded) {
  if (devicesLoggedOut > 0) return `Logged out on ${devicesLoggedOut} ${devicesLoggedOut === 1 ? 'device' : 'devices'}.`
  return sessionEnded ? 'Your session has ended. Log in again to continue.' : ''
}

function loginForm() {
  return `<form method="post" action="/login" class="row">
      <label>Name <input name="name" required maxlength="100" autocomplete="username"></label>
      <button>Log in</button>
    </form>
    <p class="hint">No password: any name logs you in. Log in with the same name in a second browser to see two devices.</p>`
}

function devicesSection(req, devices) {
  const thisDevice = hashToken(req.sessionID)
  const rows = devices.map(({ id, created, expiry, session: { device, lastSeen } }) => `
        <tr${id === thisDevice ? ' class="this-device"' : ''}>
          <td>${escapeHtml(device ?? 'Unknown device')}${id === thisDevice ? ' <span class="badge">This device</span>' : ''}</td>
          <td>${timeCell(created)}</td>
          <td>${lastSeen ? timeCell(new Date(lastSeen)) : ''}</td>
          <td>${timeCell(expiry)}</td>
        </tr>`)
  return `<section>
    <h2>Your devices</h2>
    <table>
      <thead><tr><th>Device</th><th>Signed in</th><th>Last active</th><th>Expires</th></tr></thead>
      <tbody>${rows.join('')}
      </tbody>
    </table>
    <div class="row">
      <form method="post" action="/logout"><button class="secondary">Log out this device</button></form>
      <form method="post" action="/logout-everywhere"><button class="danger">Log out everywhere</button></form>
    </div>
  </section>`
}

/** A time as a reader wants it ("5 minutes ago"), with the exact instant in datetime and title. */
function timeCell(date) {
  return `<time datetime="${date.toISOString()}" title="${date.toUTCString()}">${fromNow(date)}</time>`
}

const UNITS = [['day', 86_400_000], ['hour', 3_600_000], ['minute', 60_000]]
const RELATIVE = new Intl.RelativeTimeFormat('en', { numeric: 'auto' })

function fromNow(date) {
  const ms = date.getTime() - Date.now()
  const [unit, size] = UNITS.find(([, size]) => Math.abs(ms) >= size) ?? []
  return unit ? RELATIVE.format(Math.round(ms / size), unit) : 'just now'
}

/** "Chrome on Linux" from a User-Agent header: enough to tell one's devices apart. */
function deviceName(userAgent = '') {
  // Order matters: Edge's header also names Chrome and Safari, an iPhone's names Mac OS X.
  const browser = [['Edg/', 'Edge'], ['Firefox/', 'Firefox'], ['Chrome/', 'Chrome'], ['Safari/', 'Safari']]
    .find(([mark]) => userAgent.includes(mark))?.[1]
  const system = [['iPhone', 'iPhone'], ['iPad', 'iPad'], ['Android', 'Android'], ['Windows', 'Windows'],
    ['Mac OS X', 'macOS'], ['Linux', 'Linux']].find(([mark]) => userAgent.includes(mark))?.[1]
  return browser || system ? `${browser ?? 'A browser'} on ${system ?? 'an unknown system'}` : 'Unknown device'
}

function escapeHtml(value) {
  return String(value).replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`)
}

const STYLE = `
  :root { color-scheme: light; --ink: #1f2937; --muted: #6b7280; --line: #e5e7eb; --accent: #2563eb; --danger: #b91c1c }
  * { box-sizing: border-box }
  body { margin: 0; background: #f3f4f6; color: var(--ink); font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif }
  main { max-width: 46rem; margin: 0 auto; padding: 2rem 1rem }
  h1 { margin: 0; font-size: 1.6rem }
  h2 { margin: 0 0 .75rem; font-size: 1.1rem }
  .lead, .hint { color: var(--muted) }
  .lead { margin-top: .25rem }
  .hint { font-size: .9rem; margin-bottom: 0 }
  section { background: #fff; border: 1px solid var(--line); border-radius: .75rem; padding: 1.25rem 1.5rem; margin-top: 1.25rem }
  section > :last-child { margin-bottom: 0 }
  .notice { background: #eff6ff; border: 1px solid #bfdbfe; color: #1e3a8a; border-radius: .5rem; padding: .6rem 1rem }
  .row { display: flex; flex-wrap: wrap; gap: .75rem; align-items: center }
  input { font: inherit; padding: .4rem .6rem; border: 1px solid #d1d5db; border-radius: .4rem; margin-left: .4rem }
  button { font: inherit; padding: .45rem 1rem; border: 1px solid var(--accent); border-radius: .4rem; background: var(--accent); color: #fff; cursor: pointer }
  button:hover { filter: brightness(1.1) }
  button.secondary { background: #fff; color: var(--ink); border-color: #9ca3af }
  button.danger { background: #fff; color: var(--danger); border-color: var(--danger) }
  table { width: 100%; border-collapse: collapse; margin-bottom: 1rem; font-size: .95rem }
  th, td { text-align: left; padding: .5rem .5rem .5rem 0; border-bottom: 1px solid var(--line) }
  th { color: var(--muted); font-weight: 600; font-size: .85rem }
  .this-device td { font-weight: 600 }
  time { white-space: nowrap }
  .badge { display: inline-block; margin-left: .4rem; padding: 0 .5rem; border-radius: 1rem; background: #dbeafe; color: #1e40af; font-size: .75rem; font-weight: 600 }
  @media (max-width: 600px) {
    section { padding: 1rem }
    th:nth-child(3), td:nth-child(3) { display: none } /* "Last active": the first to go on a phone */
  }
`
