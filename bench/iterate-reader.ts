// One reader of every session, in its own process: `node --expose-gc --import tsx
// iterate-reader.ts <iterate|all> <table> <batchSize> <stopAfter>` (stopAfter:
// iterate() stops after that many rows; 0 reads them all). Prints its memory
// before and at its peak as JSON. Peaks are sampled every 10 ms and after each batch.
import postgres from 'postgres'
import { PostgresStore } from '../lib/postgres-store.js'
import type { Memory, ReaderResult } from './iterate-bench.js'
import { DATABASE_URL } from './stores.js'

const MB = 2 ** 20

function memory(): Memory {
  const m = process.memoryUsage()
  return { rssMB: m.rss / MB, heapUsedMB: m.heapUsed / MB, externalMB: (m.external + m.arrayBuffers) / MB }
}

async function main() {
  const [mode, table, batchSize, stopAfter] = process.argv.slice(2)
  const sql = postgres(DATABASE_URL, { max: 1, onnotice: () => {} })
  const store = new PostgresStore(sql, { table, cleanupInterval: 0 })
  await store.count() // connected, statements and code paths warm
  ;(globalThis as { gc?: () => void }).gc?.()
  const before = memory()
  const peak = { ...before }
  const sample = () => {
    const now = memory()
    peak.rssMB = Math.max(peak.rssMB, now.rssMB)
    peak.heapUsedMB = Math.max(peak.heapUsedMB, now.heapUsedMB)
    peak.externalMB = Math.max(peak.externalMB, now.externalMB)
  }
  const timer = setInterval(sample, 10)
  const begin = performance.now()
  let rows = 0
  if (mode === 'iterate') {
    const size = Number(batchSize)
    for await (const entry of store.iterate(size)) {
      if (entry[1].length > 0) rows++
      if (rows % size === 0) sample()
      if (rows === Number(stopAfter)) break // closes the cursor
    }
  } else {
    const all = await store.all()
    sample() // the whole Map is alive here
    rows = all.size
  }
  const seconds = (performance.now() - begin) / 1000
  clearInterval(timer)
  await sql.end({ timeout: 5 })
  const result: ReaderResult = { mode: mode as ReaderResult['mode'], rows, seconds, before, peak }
  process.stdout.write(JSON.stringify(result) + '\n')
}

main().catch((error) => {
  const reader = process.argv[2] === 'all' ? 'all()' : 'iterate()'
  process.stderr.write(`${reader} failed: ${error?.message}\n`)
  process.exit(1)
})
