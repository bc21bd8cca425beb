// The core with coalescing, as a thin subclass local to the benchmark: what
// the lead will wire into lib/postgres-store.ts, measured before it lands.
// The core sends every statement through its private run(query, params); this
// store routes the four batchable statements to their coalescer and leaves
// everything else (keys, sealing, validation, other statements) to the core.
import type { Sql } from 'postgres'
import {
  batchedQueries,
  Coalescer,
  commitCoalescer,
  deleteCoalescer,
  findCoalescer,
  touchCoalescer,
  type RunQuery,
} from '../lib/coalescer.js'
import { PostgresStore, type PostgresStoreOptions } from '../lib/postgres-store.js'
import { quoteIdentifier } from '../lib/table.js'

type Options = PostgresStoreOptions & { table: string; maxInFlight?: number }

export class CoalescingPostgresStore extends PostgresStore {
  constructor(sql: Sql<any>, options: Options) {
    const { maxInFlight, ...coreOptions } = options
    super(sql, coreOptions)
    const single = (this as unknown as { queries: Record<'find' | 'commit' | 'touch' | 'delete', string> }).queries
    for (const name of ['find', 'commit', 'touch', 'delete'] as const) {
      if (typeof single[name] !== 'string') throw new Error(`the core has no ${name} statement any more`)
    }
    const many = batchedQueries(options.table.split('.').map(quoteIdentifier).join('.'), options.tombstones ?? true)
    const exec: RunQuery = (query, params) => sql.unsafe(query, params as any[], { prepare: true }) as any
    const batching = { maxInFlight }
    const coalescers = new Map<string, Coalescer<any, any>>([
      [single.find, findCoalescer(exec, single.find, many.find, batching)],
      [single.commit, commitCoalescer(exec, single.commit, many.commit, batching)],
      [single.touch, touchCoalescer(exec, single.touch, many.touch, batching)],
      [single.delete, deleteCoalescer(exec, single.delete, many.delete, batching)],
    ])
    const run = (query: string, params: unknown[]) => coalescers.get(query)?.run(params) ?? exec(query, params)
    Object.defineProperty(this, 'run', { value: run })
  }
}
