// Statements per request for a session the request reads and does not change:
// under @fastify/session (bench/fastify-app.ts), which saves it at the end of
// every request, and under express-session's read route with resave false
// (get, then touch) and true (get, then set). One request at a time, so
// coalescing never merges statements of different requests; the statements
// are counted at the client, as bench/stores.ts counts them, and a write is
// any statement that is not a SELECT.
import type { AddressInfo } from 'node:net'
import { sessionApp } from './express-app.js'
import { fastifySessionApp } from './fastify-app.js'
import { get } from './http-client.js'
import { seededSid, sessionCookie } from './http-sessions.js'
import { newSession } from './sessions.js'
import { openStore, type BenchStore, type StoreName } from './stores.js'

export const STATEMENT_STORES: StoreName[] = ['adapter', 'adapter-pg', 'cps']
export const SETUPS = ['fastify', 'express resave: false', 'express resave: true'] as const
export type Setup = (typeof SETUPS)[number]

export interface StatementCell {
  setup: Setup
  store: StoreName
  /** Sessions the requests went to in turn: one, or many. */
  cookies: number
  requests: number
  statements: number
  writes: number
}

export interface FastifyStatementsOptions {
  /** Requests measured per cell. */
  requests: number
  /** Sessions of the many-cookies cell. */
  cookies: number
  log: (line: string) => void
}

/** Sends one request with a cookie; rejects unless the app found the session. */
type Send = (cookie: string) => Promise<void>

export async function runFastifyStatements(options: FastifyStatementsOptions): Promise<{ cells: StatementCell[] }> {
  const cells: StatementCell[] = []
  for (const store of STATEMENT_STORES) {
    for (const setup of SETUPS) {
      // A store of its own per setup: express-session and @fastify/session hand
      // the adapter what get read in different ways (lib/read-context.ts).
      const bench = await openStore(store)
      try {
        const run = setup === 'fastify' ? fastifyCells : expressCells(setup === 'express resave: true')
        for (const cell of await run(bench, options)) cells.push({ setup, store, ...cell })
      } finally {
        await bench.close()
      }
    }
    options.log(`statements per request: ${store} done`)
  }
  return { cells }
}

type Cell = Omit<StatementCell, 'setup' | 'store'>

async function fastifyCells(store: BenchStore, options: FastifyStatementsOptions): Promise<Cell[]> {
  const app = await fastifySessionApp(store.expressStore!)
  try {
    // Sessions made as users make them: a login, which writes (not measured).
    const cookies: string[] = []
    for (let i = 0; i < options.cookies; i++) {
      const login = await app.inject({ method: 'POST', url: `/login/${100000 + i}` })
      cookies.push(String(login.headers['set-cookie']).split(';')[0])
    }
    const send: Send = async (cookie) => {
      const response = await app.inject({ method: 'GET', url: '/read', headers: { cookie } })
      expectSession(response.statusCode, response.body)
    }
    return await measure(store, cookies, options.requests, send)
  } finally {
    await app.close()
  }
}

function expressCells(resave: boolean) {
  return async (store: BenchStore, options: FastifyStatementsOptions): Promise<Cell[]> => {
    const seed = `${process.pid}-${Date.now()}-statements`
    await store.preload(Array.from({ length: options.cookies }, (_, i) => [seededSid(seed, i), newSession(i)] as const))
    const cookies = Array.from({ length: options.cookies }, (_, i) => sessionCookie(seededSid(seed, i)))
    const server = sessionApp(store.expressStore!, { resave }).listen(0, '127.0.0.1')
    try {
      await new Promise((resolve) => server.once('listening', resolve))
      const { port } = server.address() as AddressInfo
      const send: Send = async (cookie) => {
        const { status, body } = await get(port, '/read', cookie)
        expectSession(status, body)
      }
      return await measure(store, cookies, options.requests, send)
    } finally {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    }
  }
}

// Every session is read once first (warming the pool and the prepared
// statements); then `requests` requests go to one session, then the same
// number to all of them in turn.
async function measure(store: BenchStore, cookies: string[], requests: number, send: Send): Promise<Cell[]> {
  for (const cookie of cookies) await send(cookie)
  const cells: Cell[] = []
  for (const used of [cookies.slice(0, 1), cookies]) {
    const [statements, writes] = [store.statements!(), store.writeStatements!()]
    for (let i = 0; i < requests; i++) await send(used[i % used.length])
    cells.push({ cookies: used.length, requests, statements: store.statements!() - statements, writes: store.writeStatements!() - writes })
  }
  return cells
}

// A request that found no session would count the statements of another path.
function expectSession(status: number, body: string): void {
  if (status !== 200 || !/^\d+$/.test(body)) throw new Error(`the read route answered ${status} without the session`)
}
