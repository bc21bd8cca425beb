// The database goes away while traffic runs, and comes back. A TCP proxy
// between the driver (postgres.js, or a pg.Pool) and PostgreSQL takes it away (the shared server keeps
// running): 'pause' resets every connection and refuses new ones (the server
// is down), 'blackhole' keeps connections open but delivers nothing (the
// network is lost). Core calls and Express requests must fail with an error
// in bounded time, never crash or leave an unhandled rejection, and succeed
// again soon after the database returns, with every session still there.
//
// postgres.js 3.4.9 itself can crash the process here: a write queued on a
// connection that closed throws from setImmediate (porsager/postgres#1154,
// #1208), and the connection then never flushes again. This test found it;
// patches/postgres+3.4.9.patch (applied by `npm ci` through patch-package)
// carries the upstream guard, and the README tells users to do the same.
import type { Server } from 'node:http'
import { types } from 'node:util'
import pg from 'pg'
import postgres, { type Sql } from 'postgres'
import request from 'supertest'
import { PostgresStore, type PostgresStoreOptions } from '../lib/postgres-store'
import { PostgresSessionStore } from '../lib/session-store'
import { uniqueTable, type DriverName } from './support/backends'
import { HOUR, HttpError, sessionApp, watchUnhandledRejections } from './support/session-app'
import { TcpProxy, type Fault } from './support/tcp-proxy'
import { Traffic, errorKinds, latency, maxLatency, recoveryTime, sleep, type Call } from './support/traffic'

const OUTAGE_MS = 3000
const AFTER_OUTAGE_MS = 6000
// postgres.js gives up on a connection attempt after this many seconds.
const CONNECT_TIMEOUT_S = 2
// postgres.js waits before reconnecting, up to 20 s by default after a few
// failures in a row; capped, the pool reconnects soon after the database returns.
const reconnectBackoff = (failures: number) => Math.min(0.05 * 2 ** failures, 0.5)
// The store's deadline per call. postgres.js has none: a query on a
// blackholed connection, or one sent just as a connection is reset, never
// settles (porsager/postgres#1089, #1130).
const QUERY_TIMEOUT_MS = 2000
// No call may take longer than its deadline, give or take a timer's lateness.
const MAX_CALL_MS = QUERY_TIMEOUT_MS + 500
// "Within a few seconds of the database returning, calls succeed again."
const RECOVERY_BOUND_MS = 3000
const GIVE_UP_MS = 30_000

// Real server only. PGlite passes when it runs alone, but it serves every
// connection from one backend: connections reset mid-query leave that backend
// with missing portals (34000) for the other test files using it at the time.
const url = process.env.TEST_DATABASE_URL
const describeOnServer = url ? describe : describe.skip

const unhandled = watchUnhandledRejections()

test('the unhandled rejection listener sees a rejection nobody handles', async () => {
  const rejected = Promise.reject(new Error('nobody handles this one'))
  await sleep(20)
  expect(unhandled).toHaveLength(1)
  // Handled late, so that jest, which watches too, lets this test pass.
  rejected.catch(() => {})
  await sleep(20)
  unhandled.length = 0
})

describeOnServer.each<DriverName>(['postgres.js', 'pg'])('outage [PostgreSQL server, %s]', (driver) => {
  test.each<Fault>(['pause', 'blackhole'])(
    '%s: calls fail in bounded time, nothing crashes, all comes back',
    async (mode) => {
      const world = await World.start(url!, driver)
      try {
        const outcome = await world.runOutage(mode)
        report(mode, outcome)

        const { traffic, outageAt, resumeAt } = outcome
        const beforeOutage = traffic.calls.filter((call) => call.endedAt < outageAt)
        // Caught by the outage: in flight at some moment of it. (Not "started
        // during it": the store retries a lost connection until queryTimeout,
        // so a call started late in the outage may succeed after it.)
        const duringOutage = traffic.calls.filter((call) => call.startedAt < resumeAt && call.endedAt > outageAt)
        const afterRecovery = traffic.startedBetween(resumeAt + RECOVERY_BOUND_MS, Infinity)

        expect(traffic.calls.filter((call) => call.hung)).toEqual([])
        expect(failures(beforeOutage)).toEqual([])
        expect(failures(duringOutage).length).toBeGreaterThan(0)
        // isNativeError: the drivers' errors come from outside jest's sandbox, where instanceof Error fails.
        for (const call of failures(duringOutage)) expect(types.isNativeError(call.error)).toBe(true)
        // express-session answers 500 when the store fails: never a 401 (a lost session) or a new one.
        expect(httpStatuses(failures(traffic.calls))).toEqual(new Set(failures(traffic.calls).some(isHttp) ? [500] : []))
        expect(maxLatency(traffic.calls)).toBeLessThanOrEqual(MAX_CALL_MS)
        expect(recoveryTime(traffic.calls, resumeAt)).toBeLessThanOrEqual(RECOVERY_BOUND_MS)
        expect(afterRecovery.length).toBeGreaterThan(0)
        expect(failures(afterRecovery)).toEqual([])
        expect(outcome.wrongReads).toBe(0)

        // The sweep ran into the outage, said so, and is still sweeping.
        expect(world.backgroundErrors.length).toBeGreaterThan(0)
        await world.expectSweepRemovesExpiredRow()
        await world.expectSessionsWrittenBeforeAreIntact()
        expect(unhandled).toEqual([])
      } finally {
        await world.stop()
      }
    },
    60_000,
  )
})

interface Outcome {
  traffic: Traffic
  outageAt: number
  resumeAt: number
  wrongReads: number
}

/** A store and an Express app reaching PostgreSQL through a proxy, plus a direct line for checks. */
class World {
  private readonly before = new Map<string, Buffer>()
  private readonly users = new Map<string, string>()

  private constructor(
    private readonly proxy: TcpProxy,
    private readonly endClient: () => Promise<void>,
    private readonly direct: Sql,
    readonly store: PostgresStore,
    private readonly server: Server,
    /** What the store reported to onError: the cleanup sweep's failures. */
    readonly backgroundErrors: Error[],
  ) {}

  static async start(url: string, driver: DriverName): Promise<World> {
    const { proxy, url: proxied } = await TcpProxy.forUrl(url)
    const quiet = { onnotice: () => {} }
    const client = driver === 'pg'
      ? new pg.Pool({ connectionString: proxied, max: 4, connectionTimeoutMillis: CONNECT_TIMEOUT_S * 1000 })
      : postgres(proxied, { ...quiet, max: 4, connect_timeout: CONNECT_TIMEOUT_S, backoff: reconnectBackoff })
    // node-postgres reports a dropped idle connection as an 'error' event, which an application must listen to.
    if (client instanceof pg.Pool) client.on('error', () => {})
    const endClient = () => (client instanceof pg.Pool ? client.end() : client.end({ timeout: 1 }))
    const direct = postgres(url, { ...quiet, max: 1 })
    const errors: Error[] = []
    const options: PostgresStoreOptions = {
      table: uniqueTable('outage'),
      cleanupInterval: 200,
      queryTimeout: QUERY_TIMEOUT_MS,
      onError: (error) => errors.push(error),
    }
    const store = new PostgresStore(client, options)
    await store.migrate()
    const server = sessionApp(new PostgresSessionStore({ store })).listen(0, '127.0.0.1')
    const world = new World(proxy, endClient, direct, store, server, errors)
    await world.writeSessions(50)
    await world.logIn(6)
    return world
  }

  async runOutage(mode: Fault): Promise<Outcome> {
    const traffic = new Traffic(GIVE_UP_MS)
    let running = true
    let wrongReads = 0
    const countWrong = () => void wrongReads++
    const workers = [
      ...[0, 1, 2, 3].map((id) => this.coreWorker(id, traffic, () => running, countWrong)),
      ...[0, 1].map(() => this.httpWorker(traffic, () => running, countWrong)),
    ]
    await sleep(500)
    const outageAt = Date.now()
    this.proxy[mode]()
    await sleep(OUTAGE_MS)
    const resumeAt = Date.now()
    this.proxy.resume()
    await sleep(AFTER_OUTAGE_MS)
    running = false
    await Promise.all(workers)
    return { traffic, outageAt, resumeAt, wrongReads }
  }

  /** Commits, reads back, lists and deletes, in turn, with a short pause between calls. */
  private async coreWorker(id: number, traffic: Traffic, running: () => boolean, wrong: () => void) {
    const beforeTokens = [...this.before.keys()]
    for (let i = 0; running(); i++) {
      const token = `worker-${id}-${i}`
      const known = beforeTokens[i % beforeTokens.length]
      await traffic.record('commit', () => this.store.commit(token, Buffer.from(token), new Date(Date.now() + HOUR)))
      await traffic.record('find', async () => {
        const data = await this.store.find(known)
        if (!data?.equals(this.before.get(known)!)) wrong()
      })
      if (i % 5 === 0) await traffic.record('all', () => this.store.all())
      await traffic.record('delete', () => this.store.delete(token))
      await sleep(20)
    }
  }

  /** Logged-in users ask who they are: 200 with their name, or 500 while the store fails. */
  private async httpWorker(traffic: Traffic, running: () => boolean, wrong: () => void) {
    const cookies = [...this.users.keys()]
    for (let i = 0; running(); i++) {
      const cookie = cookies[i % cookies.length]
      await traffic.record('GET /me', async () => {
        const response = await request(this.server).get('/me').set('Cookie', cookie)
        if (response.status !== 200) throw new HttpError(response.status)
        if (response.text !== this.users.get(cookie)) wrong()
      })
      await sleep(20)
    }
  }

  async writeSessions(count: number): Promise<void> {
    for (let i = 0; i < count; i++) {
      const token = `before-${i}`
      const data = Buffer.from([i, 0, 255, i])
      await this.store.commit(token, data, new Date(Date.now() + HOUR))
      this.before.set(token, data)
    }
  }

  async logIn(count: number): Promise<void> {
    for (let i = 0; i < count; i++) {
      const user = `user-${i}`
      const response = await request(this.server).post('/login').query({ user }).expect(200)
      const cookie = response.headers['set-cookie'][0].split(';')[0]
      this.users.set(cookie, user)
    }
  }

  async expectSweepRemovesExpiredRow(): Promise<void> {
    const table = this.store.table
    await this.direct.unsafe(
      `INSERT INTO "${table}" (token, data, expiry) VALUES ('expired-after-outage', '\\x00', now() - interval '1 second')`,
    )
    const gone = async () =>
      (await this.direct.unsafe(`SELECT 1 FROM "${table}" WHERE token = 'expired-after-outage'`)).length === 0
    const deadline = Date.now() + 3000
    while (!(await gone()) && Date.now() < deadline) await sleep(50)
    expect(await gone()).toBe(true)
  }

  async expectSessionsWrittenBeforeAreIntact(): Promise<void> {
    const rows = await this.direct.unsafe<{ token: string; data: Buffer }[]>(
      `SELECT token, data FROM "${this.store.table}" WHERE token LIKE 'before-%'`,
    )
    expect(new Map(rows.map((row) => [row.token, row.data]))).toEqual(this.before)
    for (const [cookie, user] of this.users) {
      await request(this.server).get('/me').set('Cookie', cookie).expect(200, user)
    }
  }

  async stop(): Promise<void> {
    this.store.stopCleanup()
    this.proxy.resume()
    await new Promise((resolve) => this.server.close(resolve))
    await this.endClient()
    await this.proxy.close()
    await this.direct.unsafe(`DROP TABLE IF EXISTS "${this.store.table}"`)
    await this.direct.end({ timeout: 1 })
  }
}

const failures = (calls: Call[]) => calls.filter((call) => !call.ok)
const isHttp = (call: Call) => call.op.startsWith('GET')
const httpStatuses = (calls: Call[]) =>
  new Set(calls.filter(isHttp).map((call) => (call.error instanceof HttpError ? call.error.status : 0)))

function report(mode: Fault, { traffic, outageAt, resumeAt }: Outcome) {
  const during = traffic.startedBetween(outageAt, resumeAt)
  const lines = [
    `outage (${mode}, ${OUTAGE_MS} ms): ${traffic.calls.length} calls in all, ${during.length} started during the outage`,
    `  failed: ${failures(traffic.calls).length} ${JSON.stringify(errorKinds(traffic.calls))}`,
    `  max latency of a call started during the outage: ${maxLatency(during)} ms`,
    `  max latency of a failed call: ${maxLatency(failures(traffic.calls))} ms`,
    `  recovery (resume -> first success): ${recoveryTime(traffic.calls, resumeAt)} ms`,
    `  last failure ended ${Math.max(0, ...failures(traffic.calls).map((c) => c.endedAt)) - resumeAt} ms after resume`,
    `  slowest call overall: ${Math.max(...traffic.calls.map(latency))} ms`,
  ]
  console.log(lines.join('\n'))
}
