// The core with coalescing, as a thin subclass local to the benchmark: what
// the lead will wire into lib/postgres-store.ts, measured before it lands.
// It reuses the core's own single-row statements (its private `queries`) so a
// batch of one runs exactly what the plain core runs.
import type { Sql } from 'postgres'
import {
  batchedQueries,
  commitCoalescer,
  deleteCoalescer,
  findCoalescer,
  touchCoalescer,
  type RunQuery,
  type SingleQueries,
} from '../lib/coalescer.js'
import { PostgresStore, type PostgresStoreOptions } from '../lib/postgres-store.js'
import { quoteIdentifier } from '../lib/table.js'
import { assertData, assertExpiry, assertToken } from '../lib/validate.js'

export class CoalescingPostgresStore extends PostgresStore {
  private readonly finds
  private readonly commits
  private readonly deletes
  private readonly touches

  constructor(sql: Sql<any>, options: PostgresStoreOptions & { table: string; maxInFlight?: number }) {
    const { maxInFlight, ...coreOptions } = options
    super(sql, coreOptions)
    const single = (this as unknown as { queries: SingleQueries }).queries
    for (const name of ['findEntry', 'commit', 'delete', 'touch'] as const) {
      if (typeof single[name] !== 'string') throw new Error(`the core has no ${name} statement any more`)
    }
    const many = batchedQueries(options.table.split('.').map(quoteIdentifier).join('.'))
    const run: RunQuery = (query, params) => sql.unsafe(query, params as any[], { prepare: true }) as any
    const batching = { maxInFlight }
    this.finds = findCoalescer(run, single, many, batching)
    this.commits = commitCoalescer(run, single, many, batching)
    this.deletes = deleteCoalescer(run, single, many, batching)
    this.touches = touchCoalescer(run, single, many, batching)
  }

  async find(token: string): Promise<Buffer | null> {
    assertToken(token)
    return (await this.finds.run(token))?.data ?? null
  }

  async findEntry(token: string): Promise<{ data: Buffer; expiry: Date } | null> {
    assertToken(token)
    return this.finds.run(token)
  }

  async commit(token: string, data: Uint8Array, expiry: Date): Promise<void> {
    assertToken(token)
    assertData(data)
    assertExpiry(expiry)
    await this.commits.run({ token, data: Buffer.from(data.buffer, data.byteOffset, data.byteLength), expiry })
  }

  async delete(token: string): Promise<void> {
    assertToken(token)
    await this.deletes.run(token)
  }

  async touch(token: string, expiry: Date): Promise<boolean> {
    assertToken(token)
    assertExpiry(expiry)
    return this.touches.run({ token, expiry })
  }
}
