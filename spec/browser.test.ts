// The example in a real browser: headless Chromium (Debian's `chromium`),
// driven by playwright-core, clicks through the page as a user does. Two
// browser contexts are two devices of one user: a laptop and a phone.
// Screenshots of each step go to spec/.screenshots/ (gitignored), or to
// SCREENSHOTS_DIR: scripts/screenshots.mjs points it at docs/ for the README.
import { existsSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import postgres from 'postgres'
import { chromium, devices, type Browser, type BrowserContext, type Page } from 'playwright-core'
import { buildLibraryIfStale, startExample, START_TIMEOUT, type RunningExample } from './support/example-server'
import { uniqueTable } from './support/backends'

const CHROMIUM = '/usr/bin/chromium'
// Headless, and nothing that talks to the network on its own.
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
]
const SCREENSHOTS = process.env.SCREENSHOTS_DIR || join(__dirname, '.screenshots')
const ADA = 'Ada Lovelace'

// The server when TEST_DATABASE_URL names one (always in CI), else the
// embedded PGlite that jest's global setup started: the page is the same.
const database = process.env.TEST_DATABASE_URL
  ? { name: 'the PostgreSQL server', url: process.env.TEST_DATABASE_URL }
  : { name: 'the embedded PostgreSQL', url: process.env.PGLITE_TEST_URL! }

// CI installs chromium (.ci/run), so there a missing one fails the run below;
// elsewhere this file is skipped, with the reason in its name.
const haveChromium = existsSync(CHROMIUM) || process.env.CI === 'true'
const describeInChromium = haveChromium ? describe : describe.skip
const title = haveChromium
  ? `the example in Chromium, on ${database.name}`
  : `the example in Chromium (skipped: ${CHROMIUM} is missing; install Debian's chromium package to run it)`

describeInChromium(title, () => {
  const table = uniqueTable('browser_sessions')
  let app: RunningExample
  let browser: Browser
  let laptop: Device
  let phone: Device

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing (CI=true): .ci/run installs it with apt-get install chromium`)
    mkdirSync(SCREENSHOTS, { recursive: true })
    buildLibraryIfStale()
    app = await startExample({ DATABASE_URL: database.url, SESSION_TABLE: table })
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS })
    laptop = await Device.open(browser, app.url, { viewport: { width: 1000, height: 600 } })
    phone = await Device.open(browser, app.url, { ...devices['Pixel 7'], deviceScaleFactor: 2 })
  }, START_TIMEOUT)

  afterAll(async () => {
    await browser?.close()
    app?.kill()
    const sql = postgres(database.url, { max: 1, onnotice: () => {} })
    await sql`DROP TABLE IF EXISTS ${sql(table)}`
    await sql.end()
  })

  it('shows a visitor the visit counter and a login form, and no devices', async () => {
    await laptop.visit()
    expect(await laptop.visits()).toBe(1)
    await laptop.visit()
    expect(await laptop.visits()).toBe(2)
    expect(await laptop.isLoggedOut()).toBe(true)
    expect(await laptop.notice()).toBeUndefined()
    await laptop.screenshot('visitor')
  })

  it('logged in as one user on two devices, each lists both and marks itself, with no session id on the page', async () => {
    await laptop.logIn(ADA)
    await phone.logIn(ADA)
    await laptop.visit()

    expect(await laptop.loggedInAs()).toBe(ADA)
    expect(await laptop.devices()).toEqual([
      { device: 'Chrome on Linux', thisDevice: true },
      { device: 'Chrome on Android', thisDevice: false },
    ])
    expect(await phone.devices()).toEqual([
      { device: 'Chrome on Linux', thisDevice: false },
      { device: 'Chrome on Android', thisDevice: true },
    ])
    for (const device of [laptop, phone]) {
      const html = await device.page.content()
      for (const id of [await laptop.sessionId(), await phone.sessionId()]) expect(html).not.toContain(id)
    }
    await laptop.screenshot('your-devices')
    await phone.screenshot('your-devices-phone')
  })

  it('"Log out everywhere" on the laptop: the phone shows the logged-out page on its next request', async () => {
    await laptop.click('Log out everywhere')
    expect(await laptop.notice()).toBe('Logged out on 2 devices.')
    expect(await laptop.isLoggedOut()).toBe(true)
    await laptop.screenshot('logged-out-everywhere')

    expect(await phone.loggedInAs()).toBe(ADA) // the phone's page is still the old one
    await phone.visit()
    expect(await phone.isLoggedOut()).toBe(true)
    expect(await phone.visits()).toBe(1) // a new session
    expect(await phone.notice()).toBe('Your session has ended. Log in again to continue.')
    await phone.screenshot('logged-out-phone')
  })

  it('"Log out this device" on the phone: the laptop stays logged in and lists one device', async () => {
    await laptop.logIn(ADA)
    await phone.logIn(ADA)
    await phone.click('Log out this device')
    expect(await phone.isLoggedOut()).toBe(true)
    expect(await phone.notice()).toBeUndefined() // its own logout: nothing ended behind its back

    await laptop.visit()
    expect(await laptop.loggedInAs()).toBe(ADA)
    expect(await laptop.devices()).toEqual([{ device: 'Chrome on Linux', thisDevice: true }])
  })
})

/** One browser context (its own cookies) with one tab on the example. */
class Device {
  private constructor(readonly page: Page, private readonly context: BrowserContext, private readonly url: string) {}

  static async open(browser: Browser, url: string, options: Parameters<Browser['newContext']>[0]): Promise<Device> {
    const context = await browser.newContext(options)
    context.setDefaultTimeout(10_000) // a missing button fails with its name, before jest's 30 s
    return new Device(await context.newPage(), context, url)
  }

  async visit(): Promise<void> {
    const response = await this.page.goto(this.url)
    if (response?.status() !== 200) throw new Error(`GET ${this.url}: HTTP ${response?.status()}`)
  }

  async logIn(name: string): Promise<void> {
    await this.visit()
    await this.page.getByLabel('Name').fill(name)
    await this.click('Log in')
  }

  /** Clicks a form's button and waits for the page it leads to. */
  async click(button: string): Promise<void> {
    await Promise.all([this.page.waitForEvent('load'), this.page.getByRole('button', { name: button }).click()])
  }

  async visits(): Promise<number> {
    const text = await this.page.getByText('Visits in this session').innerText()
    return Number(/(\d+)/.exec(text)?.[1])
  }

  async loggedInAs(): Promise<string | undefined> {
    const line = this.page.getByText(/^Logged in as /)
    return (await line.count()) ? (await line.innerText()).replace(/^Logged in as /, '') : undefined
  }

  /** What a logged-out page shows: the login form, and neither a name nor "Your devices". */
  async isLoggedOut(): Promise<boolean> {
    return (await this.page.getByRole('button', { name: 'Log in' }).isVisible()) &&
      (await this.loggedInAs()) === undefined && (await this.page.getByText('Your devices').count()) === 0
  }

  /** The notice at the top of the page, or undefined. */
  async notice(): Promise<string | undefined> {
    const status = this.page.getByRole('status')
    return (await status.count()) ? status.innerText() : undefined
  }

  /** The rows of "Your devices", as shown. */
  async devices(): Promise<{ device: string; thisDevice: boolean }[]> {
    const names = await this.page.locator('tbody tr td:first-child').allInnerTexts()
    return names.map((name) => ({ device: name.replace(/\s*This device$/, ''), thisDevice: name.endsWith('This device') }))
  }

  /** The session id inside the signed cookie `s:<id>.<signature>`. */
  async sessionId(): Promise<string> {
    const cookie = (await this.context.cookies()).find(({ name }) => name === 'connect.sid')
    const signed = decodeURIComponent(cookie?.value ?? '')
    return signed.slice(2, signed.lastIndexOf('.'))
  }

  async screenshot(name: string): Promise<void> {
    await this.page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true })
  }
}
