// The example server is documentation that runs: these tests start it as a
// user would (`node examples/server.mjs`), use it over HTTP like a browser,
// stop it with SIGTERM and start it again on the same data.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import postgres from 'postgres'
import { hashToken } from '../lib/tokens'
import {
  Browser, buildLibraryIfStale, devices, loggedInAs, startExample, visits,
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

const LAPTOP = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36'
const PHONE = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1'
const ADA = 'Ada & <b>Lovelace</b>'
const ADA_PRINTED = 'Ada &#38; &#60;b&#62;Lovelace&#60;/b&#62;'

/** One user story, start to restart, against the example started with env. */
function describeExampleUse(env: Record<string, string>): void {
  let app: RunningExample
  let laptop: Browser // Ada's
  let phone: Browser // Ada's too
  let grace: Browser

  beforeAll(async () => {
    laptop = new Browser(LAPTOP)
    phone = new Browser(PHONE)
    grace = new Browser()
    app = await startExample(env)
  }, START_TIMEOUT)
  afterAll(() => app?.kill())

  it('counts the visits of a session, and shows a visitor no devices', async () => {
    expect(visits(await laptop.get(app.url))).toBe(1)
    const page = await laptop.get(app.url)
    expect(visits(page)).toBe(2)
    expect(visits(await grace.get(app.url))).toBe(1)
    expect(loggedInAs(page)).toBeUndefined()
    expect(page).not.toContain('Your devices')
    expect(page).not.toContain('class="notice"')
  })

  it('logs in with a name, printed escaped', async () => {
    const page = await laptop.login(app.url, ADA)
    expect(loggedInAs(page)).toBe(ADA_PRINTED)
    expect(page).not.toContain('<b>Lovelace')
  })

  it("lists the user's own devices, this one marked, with sign-in and expiry times, never an id", async () => {
    await grace.login(app.url, 'Grace')
    await phone.login(app.url, ADA)
    const page = await laptop.get(app.url)
    const rows = devices(page)
    expect(rows.map(({ device, thisDevice }) => ({ device, thisDevice }))).toEqual([
      { device: 'Chrome on Linux', thisDevice: true },
      { device: 'Safari on iPhone', thisDevice: false },
    ])
    for (const { signedIn, lastActive, expires } of rows) {
      expect(Date.now() - signedIn.getTime()).toBeLessThan(60_000)
      expect(lastActive.getTime()).toBeGreaterThanOrEqual(signedIn.getTime())
      expect(Math.abs(expires.getTime() - (signedIn.getTime() + DAY))).toBeLessThan(60_000)
    }
    expect(page).not.toContain('Grace')
    for (const id of [laptop.sessionId(), phone.sessionId(), grace.sessionId()]) {
      expect(page).not.toContain(id)
      expect(page).not.toContain(hashToken(id)) // what the table holds
    }
  })

  it('logs out this device: the other device stays logged in and sees one device', async () => {
    const page = await laptop.logout(app.url)
    expect(loggedInAs(page)).toBeUndefined()
    expect(page).not.toContain('Lovelace')
    expect(visits(page)).toBe(1) // a new, anonymous session
    expect(page).not.toContain('class="notice"') // the cookie was cleared: nothing "ended" to report

    const phonePage = await phone.get(app.url)
    expect(loggedInAs(phonePage)).toBe(ADA_PRINTED)
    expect(devices(phonePage)).toEqual([expect.objectContaining({ device: 'Safari on iPhone', thisDevice: true })])
  })

  it('logs out everywhere: every device of the user is logged out on its next request, other users are not', async () => {
    await laptop.login(app.url, ADA)
    const page = await phone.logoutEverywhere(app.url)
    expect(page).toContain('Logged out on 2 devices.')
    expect(loggedInAs(page)).toBeUndefined()

    const laptopPage = await laptop.get(app.url)
    expect(loggedInAs(laptopPage)).toBeUndefined()
    expect(visits(laptopPage)).toBe(1)
    expect(laptopPage).not.toContain('Your devices')
    expect(laptopPage).toContain('Your session has ended. Log in again to continue.')
    expect(loggedInAs(await grace.get(app.url))).toBe('Grace')
  })

  it('stops on SIGTERM with exit code 0, and a restart keeps the sessions', async () => {
    const before = visits(await grace.get(app.url))
    const cookie = grace.cookieHeader()

    expect(await app.stop()).toEqual({ code: 0, signal: null })
    app = await startExample(env)

    const page = await grace.get(app.url)
    expect(grace.cookieHeader()).toBe(cookie)
    expect(visits(page)).toBe(before + 1)
    expect(loggedInAs(page)).toBe('Grace')
    expect(devices(page)).toEqual([expect.objectContaining({ device: 'Unknown device', thisDevice: true })])
  }, START_TIMEOUT + STOP_TIMEOUT)

  it('stops on SIGINT (Ctrl-C) with exit code 0 too', async () => {
    expect(await app.stop('SIGINT')).toEqual({ code: 0, signal: null })
  })
}
