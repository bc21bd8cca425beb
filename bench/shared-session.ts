// Many requests of one session at once (issue 11's scenario): N requests in
// flight with one cookie, request i setting its own key after a random delay
// of 0-30 ms (bench/express-app.ts, /key and /file). Measures how many of the
// N keys the session keeps (read back through /keys once all N answered) and
// the requests per second of a burst phase. One Express server per store, in
// its own process, as the HTTP benchmark runs them (bench/http-bench.ts).
import { createHash } from 'node:crypto'
import type { ChildProcess } from 'node:child_process'
import { get } from './http-client.js'
import { checkServer, serverReady, spawnServer, stopServer } from './http-bench.js'
import { seededSid, sessionCookie } from './http-sessions.js'
import { rotation } from './stats.js'
import type { StoreName } from './stores.js'

export const SHARED_STORES: StoreName[] = ['memory', 'redis', 'cps', 'adapter', 'adapter-pg', 'merge-off']
/** keys: `req.session['k' + i] = i`; files: `req.session.files[uuid] = {...}`. */
export type Variant = 'keys' | 'files'

export interface KeptSample {
  store: StoreName
  variant: Variant
  n: number
  round: number
  /** Keys of the N requests the session held after all N answered. */
  kept: number
  /** From the first request sent to the last answer. */
  roundMs: number
  /** Requests answered with anything but 200 (a save that failed). */
  errors: number
}

export interface BurstSample {
  store: StoreName
  n: number
  round: number
  requests: number
  seconds: number
  reqPerSec: number
  /** Sessions that got all N of their requests answered in the burst. */
  sessions: number
  /** Of those, the first few read back, and how many of them kept all N keys. */
  checked: number
  allKept: number
  errors: number
}

export interface SharedSessionOptions {
  stores: StoreName[]
  /** The N of the flat keys, and of the nested variant. */
  counts: number[]
  nestedCounts: number[]
  /** Rounds of N requests per store and N for keys kept (one fresh session each). */
  rounds: number
  /** Burst phase: timed rounds per store and N, each `seconds` long, with about `inFlight` requests in flight. */
  burst: { rounds: number; seconds: number; inFlight: number }
  maxDelayMs: number
  /** Sessions preloaded in each server; every round takes a fresh one. */
  sessionCount: number
  log: (line: string) => void
}

export interface SharedSessionResult {
  keptSamples: KeptSample[]
  burstSamples: BurstSample[]
}

const FIRST_PORT = 25000 + (process.pid % 1000) * 10
/** Burst rounds whose session is read back afterwards: enough to see losses, cheap enough to leave out of the timing. */
const BURST_CHECKED = 50

interface Server {
  store: StoreName
  port: number
  /** The next preloaded session no round has used. */
  nextSession: number
}

export async function runSharedSessionBench(options: SharedSessionOptions): Promise<SharedSessionResult> {
  const { stores, log } = options
  const seed = `${process.pid}-${Date.now()}-shared`
  const servers: Server[] = []
  const children: ChildProcess[] = []
  try {
    log(`shared session: starting ${stores.length} servers on ports ${FIRST_PORT}-${FIRST_PORT + stores.length - 1}`)
    for (const [i, store] of stores.entries()) {
      const child = spawnServer(store, FIRST_PORT + i, seed, options.sessionCount)
      children.push(child) // registered first, so a failed start still gets stopped
      await serverReady(store, child)
      await checkServer(store, FIRST_PORT + i, sessionCookie(seededSid(seed, 0)))
      servers.push({ store, port: FIRST_PORT + i, nextSession: 1 })
    }
    const session = (server: Server) => {
      if (server.nextSession >= options.sessionCount) throw new Error(`the ${server.store} server ran out of fresh sessions; preload more`)
      return sessionCookie(seededSid(seed, server.nextSession++))
    }
    for (const server of servers) await burst(server, session, 8, 0, { ...options.burst, seconds: 0.3 }, options.maxDelayMs) // warm-up
    const keptSamples = await keptRounds(servers, session, options)
    const burstSamples: BurstSample[] = []
    for (let round = 0; round < options.burst.rounds; round++) {
      for (const n of options.counts) {
        for (const server of rotation(servers, round)) burstSamples.push(await burst(server, session, n, round, options.burst, options.maxDelayMs))
      }
      log(`shared session: burst round ${round + 1}/${options.burst.rounds} done`)
    }
    return { keptSamples, burstSamples }
  } finally {
    for (const child of children) await stopServer(child)
  }
}

async function keptRounds(servers: Server[], session: (server: Server) => string, options: SharedSessionOptions): Promise<KeptSample[]> {
  const variants: [Variant, number[]][] = [['keys', options.counts], ['files', options.nestedCounts]]
  const samples: KeptSample[] = []
  for (const [variant, counts] of variants) {
    for (const n of counts) {
      for (let round = 0; round < options.rounds; round++) {
        // Every store gets the same delays in the same round.
        const delays = delaysFor(`${variant}:${n}:${round}`, n, options.maxDelayMs)
        for (const server of rotation(servers, round)) {
          const cookie = session(server)
          const started = performance.now()
          const errors = await sharedRound(server.port, cookie, variant, delays)
          const roundMs = performance.now() - started
          samples.push({ store: server.store, variant, n, round, kept: await keptOf(server.port, cookie, variant), roundMs, errors })
        }
      }
      options.log(`shared session: ${variant} kept at N=${n} done`)
    }
  }
  return samples
}

/**
 * About `inFlight` requests in flight for `seconds`: inFlight/N sessions at a
 * time, each receiving its N requests at once and, when all N answered, the
 * next session taking its place. Requests/s counts every answered request over
 * the time until the last one answered.
 */
async function burst(
  server: Server, session: (server: Server) => string, n: number, round: number,
  config: SharedSessionOptions['burst'], maxDelayMs: number,
): Promise<BurstSample> {
  const lanes = Math.max(1, Math.round(config.inFlight / n))
  const finished: string[] = []
  let errors = 0
  let started = 0
  const start = performance.now()
  const deadline = start + config.seconds * 1000
  await Promise.all(Array.from({ length: lanes }, async () => {
    while (performance.now() < deadline) {
      const cookie = session(server)
      errors += await sharedRound(server.port, cookie, 'keys', delaysFor(`burst:${n}:${round}:${started++}`, n, maxDelayMs))
      finished.push(cookie)
    }
  }))
  const seconds = (performance.now() - start) / 1000
  const checked = finished.slice(0, BURST_CHECKED)
  const kept = await Promise.all(checked.map((cookie) => keptOf(server.port, cookie, 'keys')))
  const requests = finished.length * n
  return {
    store: server.store, n, round, requests, seconds, reqPerSec: requests / seconds,
    sessions: finished.length, checked: checked.length, allKept: kept.filter((k) => k === n).length, errors,
  }
}

/** N requests with one cookie at once, request i waiting delays[i] ms before it sets its key; resolves to the failed ones. */
async function sharedRound(port: number, cookie: string, variant: Variant, delays: number[]): Promise<number> {
  const route = variant === 'keys' ? 'key' : 'file'
  const answers = await Promise.all(delays.map((delay, i) =>
    get(port, `/${route}?i=${i}&delay=${delay}`, cookie).then(({ status }) => status, () => 0)))
  return answers.filter((status) => status !== 200).length
}

/** How many of the round's keys the stored session holds (0 when the session is gone). */
async function keptOf(port: number, cookie: string, variant: Variant): Promise<number> {
  const { status, body } = await get(port, '/keys', cookie)
  if (status !== 200) throw new Error(`/keys answered ${status}`)
  const counts = JSON.parse(body) as { keys: number; files: number }
  return variant === 'keys' ? counts.keys : counts.files
}

/** n delays of 0..maxMs ms, the same for the same label in every run (mulberry32 seeded by the label). */
export function delaysFor(label: string, n: number, maxMs: number): number[] {
  let state = createHash('sha256').update(label).digest().readUInt32LE(0)
  const next = () => {
    state = (state + 0x6d2b79f5) | 0
    let t = Math.imul(state ^ (state >>> 15), 1 | state)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32
  }
  return Array.from({ length: n }, () => Math.floor(next() * (maxMs + 1)))
}
