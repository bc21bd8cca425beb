// Cost per operation: what each call and each HTTP request costs the database
// (server CPU of the store's own backends, WAL of its own relations,
// transactions) and the client (statements, CPU), and what a churn of mixed
// operations leaves behind (HOT updates, dead tuples, table and index size).
// Every store works in a database of its own making, so the database-wide
// transaction counter counts nobody else; bench/cost-meter.ts says how each
// number is attributed.
import type { ChildProcess } from 'node:child_process'
import postgres, { type Sql } from 'postgres'
import { churnSlots, runChurn } from './churn.js'
import { CostMeter, cpuNsOf, type Usage } from './cost-meter.js'
import { checkServer, drive, serverReady, spawnServer, stopServer, type Route } from './http-bench.js'
import { seededSid, sessionCookie } from './http-sessions.js'
import { changed, newSession, newSid } from './sessions.js'
import { rotation } from './stats.js'
import { measureUntil } from './store-bench.js'
import { applicationName, DATABASE_URL, openStore, type BenchStore, type StoreName } from './stores.js'

export const COST_STORES: StoreName[] = ['cps', 'floor', 'core', 'adapter', 'adapter-pg']
export const COST_HTTP_STORES: StoreName[] = ['cps', 'adapter', 'merge-off', 'adapter-pg']
export const COST_OPS = ['get', 'set', 'touch', 'destroy'] as const
export type CostOp = (typeof COST_OPS)[number]

export interface CostOptions {
  sessions: number
  concurrencies: number[]
  repetitions: number
  /** A cell ends after this many calls or this long, whichever comes first. */
  cellCalls: number
  cellMs: number
  http: { connections: number[]; seconds: number; sessionCount: number }
  churn: { operations: number; sessions: number; concurrency: number }
  log: (line: string) => void
}

export interface CostCell extends Usage {
  store: StoreName
  level: 'store' | 'http'
  op: CostOp | Route
  /** Concurrent callers (store level) or connections (HTTP). */
  concurrency: number
  repetition: number
  calls: number
  seconds: number
  statements: number
  /** Store level: this process's CPU (driver included); HTTP: the Express server process's CPU. */
  clientCpuNs: number
}

export interface ChurnResult extends Usage {
  store: StoreName
  operations: number
  sessions: number
  concurrency: number
  seconds: number
  statements: number
  clientCpuNs: number
  updates: number
  hotUpdates: number
  deadTuples: number
  rows: number
  tableBytes: number
  indexBytes: number
}

export interface CostResult {
  database: string
  walUnavailable: string | null
  cells: CostCell[]
  churn: ChurnResult[]
}

export async function runCostBench(options: CostOptions): Promise<CostResult> {
  const { log } = options
  const monitor = postgres(DATABASE_URL, { max: 1, onnotice: () => {}, connection: { application_name: 'esp-bench cost monitor' } })
  const database = `esp_bench_cost_${process.pid}`
  const url = new URL(DATABASE_URL)
  url.pathname = `/${database}`
  await monitor.unsafe(`CREATE DATABASE "${database}"`)
  const local = postgres(url.href, { max: 1, onnotice: () => {} })
  try {
    const meter = await CostMeter.open(monitor, database)
    if (meter.walUnavailable) log(`WAL not measured: ${meter.walUnavailable}`)
    const cells = await storeCells(meter, local, url.href, options)
    cells.push(...(await httpCells(meter, local, url.href, options)))
    const churn: ChurnResult[] = []
    for (const name of COST_STORES) churn.push(await churnRun(meter, local, url.href, name, options))
    return { database, walUnavailable: meter.walUnavailable, cells, churn }
  } finally {
    await local.end({ timeout: 5 })
    await monitor.unsafe(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`)
    await monitor.end({ timeout: 5 })
  }
}

/** A store's work between two flushes of its statistics. */
async function measured<T>(meter: CostMeter, store: BenchStore, relfilenodes: Set<number>, work: () => Promise<T>) {
  await store.flushStats!()
  const start = await meter.snapshot(store.applicationName!)
  const statements = store.statements!()
  const cpu = process.cpuUsage()
  const result = await work()
  const clientCpu = process.cpuUsage(cpu)
  const statementsSent = store.statements!() - statements
  const usage = await meter.usageSince(start, store.applicationName!, relfilenodes)
  const flushTransactions = await store.flushStats!()
  const transactions = (await meter.transactions()) - start.transactions - flushTransactions
  return { result, usage: { ...usage, transactions }, statements: statementsSent, clientCpuNs: (clientCpu.user + clientCpu.system) * 1000 }
}

async function storeCells(meter: CostMeter, local: Sql, url: string, options: CostOptions): Promise<CostCell[]> {
  const { sessions, concurrencies, repetitions, cellCalls, cellMs, log } = options
  const stores: BenchStore[] = []
  try {
    for (const name of COST_STORES) stores.push(await openStore(name, url))
    const sids = Array.from({ length: sessions }, newSid)
    const saved = sids.map((_, i) => newSession(i))
    const relfilenodes = new Map<StoreName, Set<number>>()
    for (const store of stores) {
      await store.preload(sids.map((sid, i) => [sid, saved[i]] as const))
      relfilenodes.set(store.name, await CostMeter.relfilenodes(local, store.table!))
    }
    const pick = () => Math.floor(Math.random() * sids.length)
    const call = (store: BenchStore, op: Exclude<CostOp, 'destroy'>) => () => {
      const i = pick()
      return op === 'get' ? store.get(sids[i]) : store[op](sids[i], changed(saved[i]))
    }
    const cell = async (store: BenchStore, op: CostOp, concurrency: number, calls: number, ms: number) => {
      let fn: () => Promise<unknown>
      if (op === 'destroy') {
        const doomed = Array.from({ length: calls }, newSid)
        await store.preload(doomed.map((sid) => [sid, saved[0]] as const))
        let next = 0
        fn = () => store.destroy(doomed[next++])
      } else {
        fn = call(store, op)
      }
      let started = 0
      const deadline = performance.now() + ms
      return measured(meter, store, relfilenodes.get(store.name)!, () =>
        measureUntil(() => started++ >= calls || performance.now() >= deadline, fn, concurrency))
    }
    log('cost: warming up')
    for (const store of stores) for (const op of COST_OPS) await cell(store, op, 16, 300, 300)

    const cells: CostCell[] = []
    for (let repetition = 0; repetition < repetitions; repetition++) {
      for (const op of COST_OPS) {
        for (const concurrency of concurrencies) {
          for (const store of rotation(stores, repetition)) {
            const { result, usage, statements, clientCpuNs } = await cell(store, op, concurrency, cellCalls, cellMs)
            cells.push({
              store: store.name, level: 'store', op, concurrency, repetition,
              calls: result.ops, seconds: result.seconds, statements, clientCpuNs, ...usage,
            })
          }
        }
      }
      log(`cost: store level, repetition ${repetition + 1}/${repetitions} done`)
    }
    return cells
  } finally {
    for (const store of stores) await store.close()
  }
}

interface CostServer {
  store: StoreName
  port: number
  child: ChildProcess
  /** The server's own process (tsx runs it as a child of the one spawned). */
  pid: number
  relfilenodes: Set<number>
}

const COST_PORT = 24000 + (process.pid % 1000) * 10

async function httpCells(meter: CostMeter, local: Sql, url: string, options: CostOptions): Promise<CostCell[]> {
  const { connections, seconds, sessionCount } = options.http
  const seed = `${process.pid}-${Date.now()}`
  const cookies = Array.from({ length: sessionCount }, (_, i) => sessionCookie(seededSid(seed, i)))
  const servers: CostServer[] = []
  try {
    for (const [i, store] of COST_HTTP_STORES.entries()) {
      const port = COST_PORT + i
      const child = spawnServer(store, port, seed, sessionCount, { ...process.env, BENCH_DATABASE_URL: url })
      servers.push({ store, port, child, pid: 0, relfilenodes: new Set() })
      await serverReady(store, child)
      await checkServer(store, port, cookies[0])
      const { table, pid } = await costOf(port)
      servers[i].pid = pid
      servers[i].relfilenodes = await CostMeter.relfilenodes(local, table)
    }
    for (const server of servers) for (const route of ['read', 'write'] as const) await drive(server.port, route, 10, 1, cookies)
    const cells: CostCell[] = []
    for (let repetition = 0; repetition < options.repetitions; repetition++) {
      for (const route of ['read', 'write'] as const) {
        for (const conns of connections) {
          for (const server of rotation(servers, repetition)) {
            const app = applicationName(server.store, server.pid)
            const before = await costOf(server.port)
            const start = await meter.snapshot(app)
            const cpu = cpuNsOf(server.pid)!
            const result = await drive(server.port, route, conns, seconds, cookies)
            const clientCpuNs = cpuNsOf(server.pid)! - cpu
            const usage = await meter.usageSince(start, app, server.relfilenodes)
            const after = await costOf(server.port)
            const transactions = (await meter.transactions()) - start.transactions - after.flushTransactions
            cells.push({
              store: server.store, level: 'http', op: route, concurrency: conns, repetition,
              calls: result.requests, seconds, statements: after.statements - before.statements - before.flushTransactions,
              clientCpuNs, ...usage, transactions,
            })
          }
        }
      }
      options.log(`cost: HTTP, repetition ${repetition + 1}/${options.repetitions} done`)
    }
    return cells
  } finally {
    for (const { child } of servers) await stopServer(child)
  }
}

interface ServerCost {
  table: string
  pid: number
  statements: number
  flushTransactions: number
}

async function costOf(port: number): Promise<ServerCost> {
  const response = await fetch(`http://127.0.0.1:${port}/__cost`)
  if (!response.ok) throw new Error(`/__cost answered ${response.status}`)
  return (await response.json()) as ServerCost
}

async function churnRun(meter: CostMeter, local: Sql, url: string, name: StoreName, options: CostOptions): Promise<ChurnResult> {
  const { operations, sessions, concurrency } = options.churn
  const store = await openStore(name, url)
  try {
    const slots = churnSlots(sessions)
    await store.preload(slots.sids.map((sid, i) => [sid, slots.sessions[i]] as const))
    const table = store.table!
    const relfilenodes = await CostMeter.relfilenodes(local, table)
    await store.flushStats!()
    const before = await tableStats(local, table)
    const { result, usage, statements, clientCpuNs } = await measured(meter, store, relfilenodes, () =>
      runChurn(store, slots, operations, concurrency))
    const after = await tableStats(local, table)
    options.log(`cost: churn of ${name} done (${Math.round(result.seconds)} s)`)
    return {
      store: name, operations: result.ops, sessions, concurrency, seconds: result.seconds, statements, clientCpuNs, ...usage,
      updates: after.updates - before.updates, hotUpdates: after.hotUpdates - before.hotUpdates,
      deadTuples: after.deadTuples, rows: after.rows, tableBytes: after.tableBytes, indexBytes: after.indexBytes,
    }
  } finally {
    await store.close()
  }
}

/** Counters of pg_stat_user_tables (as published) and the table's size now. */
export async function tableStats(sql: Sql, table: string) {
  const [row] = await sql<{ updates: string; hot: string; dead: string; rows: string; table_bytes: string; index_bytes: string }[]>`
    SELECT n_tup_upd AS updates, n_tup_hot_upd AS hot, n_dead_tup AS dead,
      (SELECT count(*) FROM ${sql(table)}) AS rows,
      pg_table_size(relid) AS table_bytes, pg_indexes_size(relid) AS index_bytes
    FROM pg_stat_user_tables WHERE relid = ${table}::regclass`
  return {
    updates: Number(row.updates), hotUpdates: Number(row.hot), deadTuples: Number(row.dead), rows: Number(row.rows),
    tableBytes: Number(row.table_bytes), indexBytes: Number(row.index_bytes),
  }
}
