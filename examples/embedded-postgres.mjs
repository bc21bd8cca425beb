// A real PostgreSQL with nothing to install: PGlite (PostgreSQL compiled to
// WebAssembly) served over TCP by pglite-socket, so postgres.js reaches it
// exactly as it reaches a server. Used by the example server and the tests.
import { PGlite } from '@electric-sql/pglite'
import { PGLiteSocketServer } from '@electric-sql/pglite-socket'

/**
 * Starts PGlite and listens on 127.0.0.1:port (0 picks a free port).
 * dataDir keeps the database on disk between runs; without it, it lives in memory.
 * Resolves to { url, stop }.
 */
export async function startEmbeddedPostgres({ dataDir, port = 0, log = () => {} } = {}) {
  log(dataDir ? `opening PGlite in ${dataDir} (a new database takes ~10 s, an existing one ~2 s)` : 'starting an in-memory PGlite (~5-10 s)')
  const db = await PGlite.create(dataDir ? { dataDir } : {})
  // postgres.js opens a pool; pglite-socket accepts a single connection by default.
  const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: port || await freePort(), maxConnections: 32 })
  await server.start()
  const url = `postgres://postgres@${server.getServerConn()}/postgres`
  log(`PGlite is listening on ${server.getServerConn()}`)
  return {
    url,
    async stop() {
      await server.stop()
      await db.close()
    },
  }
}

async function freePort() {
  const { createServer } = await import('node:net')
  return new Promise((resolve, reject) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address()
      probe.close(() => resolve(port))
    })
    probe.on('error', reject)
  })
}
