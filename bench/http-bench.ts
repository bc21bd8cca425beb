// HTTP level: the same Express app per store, each in its own process, driven
// by autocannon from this process over 127.0.0.1. Every request carries the
// cookie of a random preloaded session, so every request reads a real session.
import autocannon from 'autocannon'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { seededSid, sessionCookie } from './http-sessions.js'
import { rotation } from './stats.js'
import type { StoreName } from './stores.js'

export const ROUTES = ['read', 'write'] as const
export type Route = (typeof ROUTES)[number]

export interface HttpSample {
  store: StoreName
  route: Route
  connections: number
  round: number
  requests: number
  reqPerSec: number
  p50Ms: number
  p99Ms: number
  errors: number
  non2xx: number
}

export interface HttpBenchOptions {
  /** The stores driven on each route; one server per store. */
  stores: Record<Route, StoreName[]>
  connections: number[]
  rounds: number
  seconds: number
  sessionCount: number
  log: (line: string) => void
}

const FIRST_PORT = 23000 + (process.pid % 1000) * 10

export async function runHttpBench(options: HttpBenchOptions): Promise<HttpSample[]> {
  const { connections, rounds, seconds, sessionCount, log } = options
  const stores = [...new Set(ROUTES.flatMap((route) => options.stores[route]))]
  const seed = `${process.pid}-${Date.now()}`
  const cookies = Array.from({ length: sessionCount }, (_, i) => sessionCookie(seededSid(seed, i)))
  const servers = new Map<StoreName, { port: number; child: ChildProcess }>()
  try {
    log(`starting ${stores.length} servers on ports ${FIRST_PORT}-${FIRST_PORT + stores.length - 1}`)
    await Promise.all(stores.map(async (store, i) => {
      const port = FIRST_PORT + i
      const child = spawnServer(store, port, seed, sessionCount)
      servers.set(store, { port, child }) // registered first, so a failed start still gets stopped
      await serverReady(store, child)
      await checkServer(store, port, cookies[0])
    }))
    for (const route of ROUTES) {
      for (const store of options.stores[route]) await drive(servers.get(store)!.port, route, 10, 1, cookies) // warm-up
    }
    const samples: HttpSample[] = []
    for (let round = 0; round < rounds; round++) {
      for (const route of ROUTES) {
        for (const conns of connections) {
          for (const store of rotation(options.stores[route], round)) {
            const result = await drive(servers.get(store)!.port, route, conns, seconds, cookies)
            samples.push({ store, route, connections: conns, round, ...result })
          }
        }
      }
      log(`HTTP round ${round + 1}/${rounds} done`)
    }
    return samples
  } finally {
    for (const { child } of servers.values()) await stopServer(child)
  }
}

export function spawnServer(store: StoreName, port: number, seed: string, count: number, env = process.env): ChildProcess {
  const tsx = join(__dirname, 'node_modules', 'tsx', 'dist', 'cli.mjs')
  return spawn(process.execPath, [tsx, join(__dirname, 'http-server.ts'), store, String(port), seed, String(count)], {
    stdio: ['pipe', 'pipe', 'inherit'], // stdin closes when this process ends, however it ends
    env,
  })
}

export function serverReady(store: StoreName, child: ChildProcess): Promise<void> {
  const lines = createInterface({ input: child.stdout! })
  return new Promise<void>((resolve, reject) => {
    lines.on('line', (line) => line === 'ready' && resolve())
    child.once('exit', (code) => reject(new Error(`the ${store} server exited with code ${code} before it was ready`)))
  })
}

export async function stopServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return
  const exited = once(child, 'exit')
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
  await exited
  clearTimeout(timer)
}

// A run where no request found its session would measure the wrong thing.
export async function checkServer(store: StoreName, port: number, cookie: string): Promise<void> {
  const response = await fetch(`http://127.0.0.1:${port}/read`, { headers: { cookie } })
  const body = await response.text()
  if (!response.ok || !/^\d+$/.test(body)) throw new Error(`the ${store} server did not find a preloaded session`)
}

export async function drive(port: number, route: Route, connections: number, seconds: number, cookies: string[]) {
  const result = await autocannon({
    url: `http://127.0.0.1:${port}`,
    connections,
    duration: seconds,
    requests: [
      {
        method: 'GET',
        path: `/${route}`,
        setupRequest: (request: any) => {
          request.headers = { ...request.headers, cookie: cookies[Math.floor(Math.random() * cookies.length)] }
          return request
        },
      },
    ],
  })
  return {
    requests: result.requests.total,
    reqPerSec: result.requests.total / seconds,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
  }
}
