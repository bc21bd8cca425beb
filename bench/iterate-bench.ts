// Iteration: how much memory reading every session costs, with the cursor of
// iterate() against all(), which holds the whole result at once. Each reader
// runs in a fresh process (iterate-reader.ts), so neither inherits the other's
// heap, and reports its memory before reading and at its peak while reading.
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import postgres from 'postgres'
import { PostgresStore } from '../lib/postgres-store.js'
import { newSession } from './sessions.js'
import { DATABASE_URL } from './stores.js'

export interface ReaderResult {
  mode: 'iterate' | 'all'
  rows: number
  seconds: number
  before: Memory
  peak: Memory
}

export interface Memory {
  rssMB: number
  heapUsedMB: number
  /** Buffers and other memory outside the JS heap. */
  externalMB: number
}

export type Attempt = ReaderResult | { failed: string }

export interface IterationResult {
  tableRows: number
  batchSize: number
  iterate: ReaderResult
  /** When allRows < tableRows: iterate() stopped after allRows rows, which shows whether memory grows with rows. */
  iterateFirst?: Attempt
  /** When allRows < tableRows: all() tried on the whole table, as a user would. */
  allWhole?: Attempt
  /** all() on a table of allRows rows. */
  all: Attempt
  allRows: number
}

export interface IterationOptions {
  rows: number
  /** all() is measured on a table of this many rows (and only tried on the whole table when fewer). */
  allRows: number
  batchSize: number
  timeoutMs: number
  log: (line: string) => void
}

export async function runIterationBench(options: IterationOptions): Promise<IterationResult> {
  const { rows, allRows, batchSize, timeoutMs, log } = options
  const sql = postgres(DATABASE_URL, { max: 1, onnotice: () => {} })
  const table = `bench_iterate_${process.pid}_${Date.now().toString(36)}`
  const smallTable = `${table}_small`
  try {
    log(`iteration: inserting ${rows.toLocaleString('en-US')} live sessions`)
    await insertLive(sql, table, rows)
    const iterate = await read({ mode: 'iterate', table, rows, batchSize }, timeoutMs)
    log(`iteration: iterate() grew RSS by ${growth(iterate)} MB in ${iterate.seconds.toFixed(1)} s`)
    const attempt = (reader: Reader) => read(reader, timeoutMs).catch((error: Error) => ({ failed: error.message }))
    let iterateFirst: Attempt | undefined
    let allWhole: Attempt | undefined
    let allTable = table
    if (allRows < rows) {
      iterateFirst = await attempt({ mode: 'iterate', table, rows: allRows, batchSize, stopAfter: allRows })
      allWhole = await attempt({ mode: 'all', table, rows, batchSize })
      log(`iteration: all() on ${rows.toLocaleString('en-US')} rows: ${'failed' in allWhole ? allWhole.failed : `grew RSS by ${growth(allWhole)} MB`}`)
      allTable = smallTable
      await insertLive(sql, allTable, allRows)
    }
    const all = await attempt({ mode: 'all', table: allTable, rows: allRows, batchSize })
    if ('rows' in all) log(`iteration: all() on ${allRows.toLocaleString('en-US')} rows grew RSS by ${growth(all)} MB`)
    return { tableRows: rows, batchSize, iterate, iterateFirst, allWhole, all, allRows }
  } finally {
    await sql.unsafe(`DROP TABLE IF EXISTS "${table}"`).catch(() => {})
    await sql.unsafe(`DROP TABLE IF EXISTS "${smallTable}"`).catch(() => {})
    await sql.end({ timeout: 5 })
  }
}

async function insertLive(sql: postgres.Sql, table: string, rows: number): Promise<void> {
  await new PostgresStore(sql, { table, cleanupInterval: 0 }).migrate()
  const data = Buffer.from(JSON.stringify(newSession(1)))
  await sql.unsafe(
    `INSERT INTO "${table}" (token, data, expiry) ` +
      `SELECT md5('live' || n), $1::bytea, now() + interval '1 day' FROM generate_series(1, $2::int) AS n`,
    [data, rows],
  )
  await sql.unsafe(`VACUUM ANALYZE "${table}"`)
}

const growth = (reader: ReaderResult) => (reader.peak.rssMB - reader.before.rssMB).toFixed(0)

interface Reader {
  mode: ReaderResult['mode']
  table: string
  /** Rows the reader must see. */
  rows: number
  batchSize: number
  stopAfter?: number
}

function read(reader: Reader, timeoutMs: number): Promise<ReaderResult> {
  const { mode, table, rows, batchSize, stopAfter = 0 } = reader
  const child = spawn(
    process.execPath,
    ['--expose-gc', '--max-old-space-size=6144', '--import', 'tsx', join(__dirname, 'iterate-reader.ts'), mode, table, String(batchSize), String(stopAfter)],
    { cwd: __dirname, stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs },
  )
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk) => (stdout += chunk))
  child.stderr.on('data', (chunk) => (stderr += chunk))
  return new Promise((resolve, reject) => {
    child.on('error', reject)
    child.on('exit', (code, signal) => {
      if (signal) return reject(new Error(`the ${mode} reader was stopped (${signal}) after ${timeoutMs} ms`))
      if (code !== 0) return reject(new Error(stderr.trim().split('\n').pop() || `the ${mode} reader ended with code ${code}`))
      const result: ReaderResult = JSON.parse(stdout)
      if (result.rows !== rows) return reject(new Error(`the ${mode} reader saw ${result.rows} rows, not ${rows}`))
      resolve(result)
    })
  })
}
