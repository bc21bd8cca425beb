// Runs once before all test files: starts the embedded PostgreSQL (PGlite)
// and, when TEST_DATABASE_URL names a server, proves that it answers, so a
// configured but unreachable server fails the run instead of skipping it.
import postgres from 'postgres'
import { startEmbeddedPostgres } from '../../examples/embedded-postgres.mjs'

export default async function globalSetup() {
  const pglite = await startEmbeddedPostgres()
  globalThis.__embeddedPostgres = pglite
  process.env.PGLITE_TEST_URL = pglite.url

  const serverUrl = process.env.TEST_DATABASE_URL
  if (serverUrl) await assertReachable(serverUrl)
}

async function assertReachable(url) {
  const sql = postgres(url, { max: 1, connect_timeout: 5, onnotice: () => {} })
  try {
    await sql`SELECT 1`
  } catch (error) {
    throw new Error(`TEST_DATABASE_URL is set but the server does not answer: ${error.message}`)
  } finally {
    await sql.end({ timeout: 1 })
  }
}
