// Store level: each operation at a fixed concurrency for a fixed time, every
// store in turn within a round, rounds rotated so order effects cancel out.
import { performance } from 'node:perf_hooks'
import { changed, newSession, newSid, type BenchSession } from './sessions.js'
import { percentile, rotation } from './stats.js'
import type { BenchStore, StoreName } from './stores.js'

export const OPS = ['get-hit', 'get-miss', 'set', 'touch', 'destroy'] as const
export type Op = (typeof OPS)[number]

export interface StoreSample {
  store: StoreName
  op: Op
  concurrency: number
  round: number
  ops: number
  seconds: number
  opsPerSec: number
  p50Ms: number
  p99Ms: number
}

export interface StoreBenchOptions {
  stores: BenchStore[]
  concurrencies: number[]
  rounds: number
  cellMs: number
  preloadCount: number
  /** Stores measured on some operations only (the durability variants: set and touch). */
  only?: Partial<Record<StoreName, readonly Op[]>>
  log: (line: string) => void
}

// Destroy needs rows to delete: each destroy cell gets a fresh pool sized from
// the store's last rate, and ends early (rate still exact) if it runs dry.
const MIN_DESTROY_POOL = 500
const MAX_DESTROY_POOL = 30_000

export async function runStoreBench(options: StoreBenchOptions): Promise<StoreSample[]> {
  const { stores, concurrencies, rounds, cellMs, preloadCount, log } = options
  const runs = (store: BenchStore, op: Op) => options.only?.[store.name]?.includes(op) ?? true
  const sids = Array.from({ length: preloadCount }, newSid)
  const sessions = sids.map((_, i) => newSession(i))
  const preloaded = sids.map((sid, i) => [sid, sessions[i]] as const)
  for (const store of stores) {
    log(`preloading ${preloadCount} sessions into ${store.name}`)
    await store.preload(preloaded)
  }

  const pick = () => Math.floor(Math.random() * sids.length)
  const work: Record<Exclude<Op, 'destroy'>, (store: BenchStore) => () => Promise<unknown>> = {
    'get-hit': (store) => () => store.get(sids[pick()]),
    'get-miss': (store) => () => store.get(newSid()),
    set: (store) => () => {
      const i = pick()
      return store.set(sids[i], changed(sessions[i]))
    },
    touch: (store) => () => {
      const i = pick()
      return store.touch(sids[i], changed(sessions[i]))
    },
  }

  const lastRate = new Map<string, number>()
  const destroyCell = async (store: BenchStore, concurrency: number) => {
    const estimate = lastRate.get(`${store.name} destroy ${concurrency}`) ?? lastRate.get(`${store.name} set ${concurrency}`) ?? 5000
    const size = clamp(Math.ceil((estimate * cellMs * 1.5) / 1000), MIN_DESTROY_POOL, MAX_DESTROY_POOL)
    const doomed = Array.from({ length: size }, newSid)
    const template = sessions[0]
    await store.preload(doomed.map((sid) => [sid, template] as const))
    let next = 0
    return { op: () => store.destroy(doomed[next++]), limit: size }
  }

  log('warming up (pools, prepared statements, JIT)')
  for (const store of stores) {
    for (const op of ['get-hit', 'get-miss', 'set', 'touch'] as const) {
      if (runs(store, op)) await measure(work[op](store), 16, 200, Infinity)
    }
    if (!runs(store, 'destroy')) continue
    const warm = await destroyCell(store, 16)
    await measure(warm.op, 16, 100, warm.limit)
  }

  const samples: StoreSample[] = []
  for (let round = 0; round < rounds; round++) {
    for (const op of OPS) {
      for (const concurrency of concurrencies) {
        for (const store of rotation(stores, round)) {
          if (!runs(store, op)) continue
          const cell = op === 'destroy' ? await destroyCell(store, concurrency) : { op: work[op](store), limit: Infinity }
          const result = await measure(cell.op, concurrency, cellMs, cell.limit)
          lastRate.set(`${store.name} ${op} ${concurrency}`, result.opsPerSec)
          samples.push({ store: store.name, op, concurrency, round, ...result })
        }
      }
      log(`round ${round + 1}/${rounds}: ${op} done`)
    }
  }
  return samples
}

export interface Measurement {
  ops: number
  seconds: number
  opsPerSec: number
  p50Ms: number
  p99Ms: number
}

/** `concurrency` callers, each starting its next call when the last settles, until time or `limit` calls. */
function measure(op: () => Promise<unknown>, concurrency: number, ms: number, limit: number): Promise<Measurement> {
  let started = 0
  const deadline = performance.now() + ms
  return measureUntil(() => started++ >= limit || performance.now() >= deadline, op, concurrency)
}

/** `concurrency` callers, each starting its next call when the last settles, until `done()` says so. */
export async function measureUntil(done: () => boolean, op: () => Promise<unknown>, concurrency: number): Promise<Measurement> {
  const latencies: number[] = []
  const begin = performance.now()
  const caller = async () => {
    while (!done()) {
      const t0 = performance.now()
      await op()
      latencies.push(performance.now() - t0)
    }
  }
  await Promise.all(Array.from({ length: concurrency }, caller))
  const seconds = (performance.now() - begin) / 1000
  return {
    ops: latencies.length,
    seconds,
    opsPerSec: latencies.length / seconds,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
  }
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value))
}

export type { BenchSession }
