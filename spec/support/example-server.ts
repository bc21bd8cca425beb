// The example server (examples/server.mjs) as a child process, and a
// browser to drive it: fetch with a cookie jar. Shared by example.test.ts
// (one user story), soak.test.ts (a minute of mixed traffic) and
// browser.test.ts (the same page in Chromium).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'

const ROOT = join(__dirname, '..', '..')
const SERVER = join(ROOT, 'examples', 'server.mjs')
// A fresh PGlite starts in ~7 s on an idle 2-core machine; under load it took ~60 s.
export const START_TIMEOUT = 120_000
export const STOP_TIMEOUT = 5_000

// ---- the example as a child process -------------------------------------

export interface RunningExample {
  readonly url: string
  /** The process id, for reading its memory from /proc. */
  readonly pid: number
  /** Sends signal, then resolves to the exit code and signal; rejects when it takes over STOP_TIMEOUT. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /** True until the process exits. */
  running(): boolean
  /** Everything it printed so far, stdout and stderr. */
  output(): string
  /** For cleanup after a failure: SIGKILL if it is still running. */
  kill(): void
}

/** Starts the example on a free port and resolves once it prints its URL. */
export function startExample(env: Record<string, string>): Promise<RunningExample> {
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
      resolve({
        url,
        pid: child.pid!,
        stop: (signal = 'SIGTERM') => stopChild(child, signal, () => output),
        running: () => child.exitCode === null && child.signalCode === null,
        output: () => output,
        kill: () => killChild(child),
      })
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

export class Browser {
  private readonly cookies = new Map<string, string>()

  /** userAgent: the User-Agent header, from which the example names the device. */
  constructor(private readonly userAgent?: string) {}

  async get(url: string | URL): Promise<string> {
    return this.request(url)
  }

  /** Submits the login form and follows the redirect, as a browser does. */
  async login(url: string, name: string): Promise<string> {
    return this.submit(url, '/login', new URLSearchParams({ name }))
  }

  /** "Log out this device". */
  async logout(url: string): Promise<string> {
    return this.submit(url, '/logout')
  }

  async logoutEverywhere(url: string): Promise<string> {
    return this.submit(url, '/logout-everywhere')
  }

  /** Drops every cookie: the next request comes from a new visitor. */
  forget(): void {
    this.cookies.clear()
  }

  cookieHeader(): string {
    return [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; ')
  }

  /** The session id inside the signed cookie `s:<id>.<signature>`. */
  sessionId(): string {
    const signed = decodeURIComponent(this.cookies.get('connect.sid') ?? '')
    return signed.slice(2, signed.lastIndexOf('.'))
  }

  /** POSTs a form, then GETs the page it redirects to. */
  private async submit(url: string, action: string, form = new URLSearchParams()): Promise<string> {
    const response = await this.fetch(new URL(action, url), form)
    await this.expectStatus(response, 303)
    return this.get(new URL(response.headers.get('location')!, url))
  }

  private async request(url: string | URL): Promise<string> {
    return this.expectStatus(await this.fetch(url), 200)
  }

  private async fetch(url: string | URL, form?: URLSearchParams): Promise<Response> {
    const headers: Record<string, string> = { cookie: this.cookieHeader() }
    if (this.userAgent) headers['user-agent'] = this.userAgent
    const response = await fetch(url, { method: form ? 'POST' : 'GET', body: form, headers, redirect: 'manual' })
    for (const header of response.headers.getSetCookie()) this.store(header)
    return response
  }

  private async expectStatus(response: Response, expected: number): Promise<string> {
    const body = await response.text()
    if (response.status !== expected) throw new Error(`${response.url}: HTTP ${response.status}, expected ${expected}: ${body}`)
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

export function visits(page: string): number {
  return Number(match(page, /Visits in this session: <strong>(\d+)<\/strong>/))
}

/** The name after "Logged in as", as printed (escaped), or undefined when logged out. */
export function loggedInAs(page: string): string | undefined {
  return /Logged in as <strong>(.*?)<\/strong>/.exec(page)?.[1]
}

export interface DeviceRow {
  /** As printed, e.g. "Chrome on Linux". */
  device: string
  thisDevice: boolean
  signedIn: Date
  lastActive: Date
  expires: Date
}

/** The rows of "Your devices" (none when the section is absent), with the exact times from their datetime attributes. */
export function devices(page: string): DeviceRow[] {
  const rows = page.matchAll(/<tr( class="this-device")?>\s*<td>(.*?)<\/td>((?:\s*<td>.*?<\/td>){3})/g)
  return [...rows].map(([, mark, device, cells]) => {
    const [signedIn, lastActive, expires] = [...cells.matchAll(/datetime="([^"]+)"/g)].map(([, iso]) => new Date(iso))
    return { device: device.replace(/ <span class="badge">.*<\/span>/, ''), thisDevice: mark !== undefined, signedIn, lastActive, expires }
  })
}

function match(page: string, pattern: RegExp): string {
  const found = pattern.exec(page)
  if (!found) throw new Error(`the page has no match for ${pattern}:\n${page}`)
  return found[1]
}

// ---- dist/ --------------------------------------------------------------

/** The example imports the built package: build it when lib/ is newer than dist/. */
export function buildLibraryIfStale(): void {
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
