// One app instance for spec/many-instances.test.ts: its own postgres.js pool
// and PostgresStore (from the compiled library in LIB_DIR) on a shared table,
// with a fast cleanup timer. It writes sessions, some expiring within a
// second, reads its live ones back, and prints one JSON line of results.
'use strict'
const postgres = require('postgres')
const { PostgresStore } = require(process.env.LIB_DIR + '/postgres-store.js')

const DURATION_MS = Number(process.env.DURATION_MS)
const ID = process.env.INSTANCE_ID
// A session due to expire sooner than this may be gone by the time it is read.
const EXPIRY_MARGIN_MS = 200

async function main() {
  const sql = postgres(process.env.DATABASE_URL, { max: 4, onnotice: () => {} })
  const backgroundErrors = []
  const store = new PostgresStore(sql, {
    table: process.env.TABLE,
    cleanupInterval: Number(process.env.CLEANUP_INTERVAL_MS),
    onError: (error) => backgroundErrors.push(error.message),
  })
  const written = new Map() // token -> { data, expiry }
  const result = { id: ID, writes: 0, reads: 0, lost: [], errors: [], backgroundErrors, sweeps: 0 }
  const countSweeps = store.deleteExpired.bind(store)
  store.deleteExpired = () => (result.sweeps++, countSweeps())

  const stopAt = Date.now() + DURATION_MS
  for (let i = 0; Date.now() < stopAt; i++) {
    try {
      await writeOne(store, written, i)
      result.writes++
      await readLive(store, written, result)
    } catch (error) {
      result.errors.push(error.message)
    }
  }
  // Every session that should still be alive is found, with its data.
  await readLive(store, written, result, Infinity)
  store.stopCleanup()
  await sql.end({ timeout: 5 })
  process.stdout.write(JSON.stringify(result) + '\n')
}

// Half the sessions expire within a second, so the sweeps always have work.
async function writeOne(store, written, i) {
  const token = `instance-${ID}-${i}`
  const lifetime = i % 2 === 0 ? 50 + Math.floor(Math.random() * 950) : 3600_000
  const data = Buffer.from(`${token}:${Math.random()}`)
  const expiry = new Date(Date.now() + lifetime)
  await store.commit(token, data, expiry)
  written.set(token, { data, expiry })
}

async function readLive(store, written, result, sample = 5) {
  const tokens = [...written.keys()]
  const picked = sample === Infinity ? tokens : Array.from({ length: sample }, () => tokens[Math.floor(Math.random() * tokens.length)])
  for (const token of picked) {
    const { data, expiry } = written.get(token)
    if (expiry.getTime() < Date.now() + EXPIRY_MARGIN_MS) continue
    const found = await store.find(token)
    result.reads++
    // A lost session is reported by count and token number only, never its data.
    if (!found || !found.equals(data)) result.lost.push(token)
  }
}

main().catch((error) => {
  process.stdout.write(JSON.stringify({ id: ID, fatal: error.message }) + '\n')
  process.exitCode = 1
})
