// One Express app per store, in its own process: `tsx http-server.ts <store> <port> <seed> <count>`.
// It preloads <count> sessions whose ids derive from <seed>, so the driver can
// sign the same ids into cookies without asking. Prints "ready" when listening.
import { sessionApp } from './express-app.js'
import { newSession } from './sessions.js'
import { openStore, type StoreName } from './stores.js'
import { seededSid } from './http-sessions.js'

async function main() {
  const [name, port, seed, count] = process.argv.slice(2)
  const store = await openStore(name as StoreName)
  if (!store.expressStore) throw new Error(`${name} has no express-session store`)
  await store.preload(Array.from({ length: Number(count) }, (_, i) => [seededSid(seed, i), newSession(i)] as const))

  const app = sessionApp(store.expressStore, {}, (app) => {
    // For the cost bench (bench/cost-bench.ts), outside the session middleware:
    // the statements the store sent so far, then its backends' statistics flushed.
    app.get('/__cost', async (_req, res) => {
      const statements = store.statements?.() ?? 0
      const flushTransactions = (await store.flushStats?.()) ?? 0
      res.json({ table: store.table ?? null, pid: process.pid, statements, flushTransactions })
    })
  })
  // The driver may be gone (it failed): a closed pipe must not crash the server.
  process.stdout.on('error', () => {})
  const server = app.listen(Number(port), '127.0.0.1', () => process.stdout.write('ready\n'))
  const stop = () => server.close(() => store.close().then(() => process.exit(0), () => process.exit(1)))
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  // The driver holds our stdin open: when it goes, so do we (no orphaned servers).
  process.stdin.on('end', stop)
  process.stdin.resume()
}

main().catch((error) => {
  process.stderr.write(`http-server failed: ${error?.message}\n`)
  process.exit(1)
})
