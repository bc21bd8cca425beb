// The example server is documentation that runs: these tests start it as a
// user would (`node examples/server.mjs`), use it over HTTP like a browser,
// stop it with SIGTERM and start it again on the same data.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import postgres from 'postgres'
import {
  activeSessions, Browser, buildLibraryIfStale, sessionRows, startExample, visits,
  START_TIMEOUT, STOP_TIMEOUT, type RunningExample,
} from './support/example-server'

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
