// The example server is documentation that runs: these tests start it as a
// user would (`node examples/server.mjs`), use it over HTTP like a browser,
// stop it with SIGTERM and start it again on the same data.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import postgres from 'postgres'

const ROOT = join(__dirname, '..')
const SERVER = join(ROOT, 'examples', 'server.mjs')
// A fresh PGlite starts in ~7 s on an idle 2-core machine; under load it took ~60 s.
const START_TIMEOUT = 120_000
const STOP_TIMEOUT = 5_000
const DAY = 24 * 60 * 60 * 1000

beforeAll(buildLibraryIfStale, 120_000)

describe('example server on the embedded PostgreSQL', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'example-sessions-'))
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }))

  describeExampleUse({ SESSION_DATA_DIR: dataDir })
})

// The real server runs whenever TEST_DATABASE_URL names one (CI always sets it);
// without one there is nothing to run against.
const serverUrl = process.env.TEST_DATABASE_URL
if (serverUrl) {
  describe('example server on the PostgreSQL server in DATABASE_URL', () => {
    // Unique, like support/backends.ts uniqueTable(), which would also load pg-mem.
    const table = `example_sessions_${process.pid}_${Date.now().toString(36)}`
    afterAll(async () => {
      const sql = postgres(serverUrl, { max: 1, onnotice: () => {} })
      await sql`DROP TABLE IF EXISTS ${sql(table)}`
      await sql.end()
    })

    describeExampleUse({ DATABASE_URL: serverUrl, SESSION_TABLE: table })
  })
}

/** One user story, start to restart, against the example started with env. */
function describeExampleUse(env: Record<string, string>): void {
  let app: RunningExample
  let ada: Browser
  let grace: Browser

  beforeAll(async () => {
    ada = new Browser()
    grace = new Browser()
    app = await startExample(env)
  }, START_TIMEOUT)
  afterAll(() => app?.kill())

  it('counts the visits of a session', async () => {
    expect(visits(await ada.get(app.url))).toBe(1)
    expect(visits(await ada.get(app.url))).toBe(2)
    expect(visits(await grace.get(app.url))).toBe(1)
  })

  it('logs in with a name, printed escaped', async () => {
    const page = await ada.login(app.url, 'Ada & <b>Lovelace</b>')
    expect(page).toContain('Logged in as <strong>Ada &#38; &#60;b&#62;Lovelace&#60;/b&#62;</strong>')
    expect(page).not.toContain('<b>Lovelace')
  })

  it('lists the active sessions with their user and expiry, never their ids', async () => {
    await grace.login(app.url, 'Grace')
    const page = await ada.get(app.url)
    expect(activeSessions(page)).toBe(2)
    const rows = sessionRows(page)
    expect(rows.map((row) => row.user).sort()).toEqual(['Ada &#38; &#60;b&#62;Lovelace&#60;/b&#62;', 'Grace'])
    for (const row of rows) {
      expect(row.label).toMatch(/^[0-9a-f]{8}$/)
      expect(Math.abs(Date.parse(row.expires) - (Date.now() + DAY))).toBeLessThan(60_000)
    }
    for (const id of [ada.sessionId(), grace.sessionId()]) expect(page).not.toContain(id)
  })

  it('logs out: the session is gone from the page and from the list', async () => {
    const page = await ada.logout(app.url)
    expect(page).not.toContain('Logged in as')
    expect(page).not.toContain('Lovelace')
    expect(visits(page)).toBe(1) // a new, anonymous session
    expect(sessionRows(page).map((row) => row.user).sort()).toEqual(['(anonymous)', 'Grace'])
  })

  it('stops on SIGTERM with exit code 0, and a restart keeps the sessions', async () => {
    const before = visits(await grace.get(app.url))
    const cookie = grace.cookieHeader()

    expect(await app.stop()).toEqual({ code: 0, signal: null })
    app = await startExample(env)

    const page = await grace.get(app.url)
    expect(grace.cookieHeader()).toBe(cookie)
    expect(visits(page)).toBe(before + 1)
    expect(page).toContain('Logged in as <strong>Grace</strong>')
  }, START_TIMEOUT + STOP_TIMEOUT)

  it('stops on SIGINT (Ctrl-C) with exit code 0 too', async () => {
    expect(await app.stop('SIGINT')).toEqual({ code: 0, signal: null })
  })
}

// ---- the example as a child process -------------------------------------

interface RunningExample {
  readonly url: string
  /** Sends signal, then resolves to the exit code and signal; rejects when it takes over STOP_TIMEOUT. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /** For cleanup after a failure: SIGKILL if it is still running. */
  kill(): void
}

/** Starts the example on a free port and resolves once it prints its URL. */
function startExample(env: Record<string, string>): Promise<RunningExample> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, PORT: '0', ...env }
  if (!env.DATABASE_URL) delete childEnv.DATABASE_URL
  const child = spawn(process.execPath, [SERVER], { cwd: ROOT, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout!.on('data', (chunk) => (output += chunk))
  child.stderr!.on('data', (chunk) => (output += chunk))

  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(`did not print its URL within ${START_TIMEOUT} ms`), START_TIMEOUT)
    const onExit = (code: number | null) => fail(`exited with code ${code} before listening`)
    const onData = () => {
      const url = /listening on (http:\/\/\S+)/.exec(output)?.[1]
      if (!url) return
      cleanUp()
      resolve({ url, stop: (signal = 'SIGTERM') => stopChild(child, signal, () => output), kill: () => killChild(child) })
    }
    function fail(reason: string) {
      cleanUp()
      killChild(child)
      reject(new Error(`examples/server.mjs ${reason}. Its output:\n${output}`))
    }
    function cleanUp() {
      clearTimeout(timer)
      child.stdout!.off('data', onData)
      child.off('exit', onExit)
    }
    child.stdout!.on('data', onData)
    child.on('exit', onExit)
  })
}

function stopChild(child: ChildProcess, signal: NodeJS.Signals, output: () => string) {
  return new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    const timer = setTimeout(() => {
      killChild(child)
      reject(new Error(`examples/server.mjs still ran ${STOP_TIMEOUT} ms after ${signal}. Its output:\n${output()}`))
    }, STOP_TIMEOUT)
    child.once('exit', (code, exitSignal) => {
      clearTimeout(timer)
      resolve({ code, signal: exitSignal })
    })
    child.kill(signal)
  })
}

function killChild(child: ChildProcess): void {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
}

// ---- a browser: fetch with a cookie jar ---------------------------------

class Browser {
  private readonly cookies = new Map<string, string>()

  async get(url: string): Promise<string> {
    return this.request(url)
  }

  /** Submits the login form and follows the redirect, as a browser does. */
  async login(url: string, name: string): Promise<string> {
    await this.request(new URL('/login', url), new URLSearchParams({ name }))
    return this.get(url)
  }

  async logout(url: string): Promise<string> {
    await this.request(new URL('/logout', url), new URLSearchParams())
    return this.get(url)
  }

  cookieHeader(): string {
    return [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; ')
  }

  /** The session id inside the signed cookie `s:<id>.<signature>`. */
  sessionId(): string {
    const signed = decodeURIComponent(this.cookies.get('connect.sid') ?? '')
    return signed.slice(2, signed.lastIndexOf('.'))
  }

  private async request(url: string | URL, form?: URLSearchParams): Promise<string> {
    const response = await fetch(url, {
      method: form ? 'POST' : 'GET',
      body: form,
      headers: { cookie: this.cookieHeader() },
      redirect: 'manual',
    })
    for (const header of response.headers.getSetCookie()) this.store(header)
    const body = await response.text()
    const expected = form ? 303 : 200
    if (response.status !== expected) throw new Error(`${url}: HTTP ${response.status}, expected ${expected}: ${body}`)
    return body
  }

  private store(setCookie: string): void {
    const [pair, ...attributes] = setCookie.split(';')
    const name = pair.slice(0, pair.indexOf('=')).trim()
    const expires = attributes.find((attribute) => /^\s*expires=/i.test(attribute))
    const expired = expires !== undefined && Date.parse(expires.split('=')[1]) <= Date.now()
    if (expired) this.cookies.delete(name)
    else this.cookies.set(name, pair.slice(pair.indexOf('=') + 1).trim())
  }
}

// ---- reading the page ---------------------------------------------------

function visits(page: string): number {
  return Number(match(page, /Visits in this session: <strong>(\d+)<\/strong>/))
}

function activeSessions(page: string): number {
  return Number(match(page, /Active sessions: (\d+)/))
}

function sessionRows(page: string): { label: string; user: string; expires: string }[] {
  const rows = page.matchAll(/<tr[^>]*>\s*<td><code>(.*?)<\/code><\/td>\s*<td>(.*?)<\/td>\s*<td>(.*?)<\/td>/g)
  return [...rows].map(([, label, user, expires]) => ({ label, user, expires }))
}

function match(page: string, pattern: RegExp): string {
  const found = pattern.exec(page)
  if (!found) throw new Error(`the page has no match for ${pattern}:\n${page}`)
  return found[1]
}

// ---- dist/ --------------------------------------------------------------

/** The example imports the built package: build it when lib/ is newer than dist/. */
function buildLibraryIfStale(): void {
  const built = ['index.js', 'index.mjs'].map((file) => modifiedAt(join(ROOT, 'dist', file)))
  const sources = readdirSync(join(ROOT, 'lib')).map((file) => modifiedAt(join(ROOT, 'lib', file)))
  if (Math.min(...built) > Math.max(...sources)) return
  execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', ROOT], { stdio: 'inherit' })
}

function modifiedAt(path: string): number {
  try {
    return statSync(path).mtimeMs
  } catch {
    return 0 // missing: as old as can be
  }
}
