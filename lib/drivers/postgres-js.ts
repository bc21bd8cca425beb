// The driver for porsager's postgres.js: each statement through sql.unsafe,
// prepared per connection (postgres.js keeps the statement cache), cursors
// and transactions as postgres.js offers them. postgres.js parses bytea into
// Buffer and timestamptz into Date, as the core expects.
import type { Sql } from 'postgres'
import { deadlineAfter } from '../query-timeout.js'
import { retryReason } from '../retry.js'
import type { Driver, DriverOptions, PostgresJsSql, Queryable, Rows } from './driver.js'
import { PrimaryGuard } from './primary.js'

/** A postgres.js instance: a tagged-template function with methods. */
export function isPostgresJs(client: unknown): client is PostgresJsSql {
  return typeof client === 'function' && typeof (client as Partial<Sql>).unsafe === 'function'
}

type Unsafe = Pick<Sql<any>, 'unsafe'>

export class PostgresJsDriver implements Driver {
  // Keeps the pool on the primary (lib/drivers/primary.ts); null when primaryOnly is off.
  private readonly primary: PrimaryGuard | null

  constructor(
    private readonly sql: Sql<any>,
    private readonly options: DriverOptions,
  ) {
    const { primaryOnly = namesSeveralServers(sql) } = options
    this.primary = primaryOnly ? new PrimaryGuard(sql) : null
  }

  // With primaryOnly: checked before, and sent again when its answer may have
  // come from a standby (every statement of the core is safe to send twice).
  async query<Row extends object>(text: string, params?: readonly unknown[]): Promise<Rows<Row>> {
    const primary = this.primary
    if (primary === null) return run<Row>(this.sql, text, params, this.options.prepare)
    const deadline = this.deadline()
    for (;;) {
      await primary.ensurePrimary(deadline)
      const mark = primary.mark()
      const rows = await this.suspectingStandby(run<Row>(this.sql, text, params, this.options.prepare))
      if ((await primary.settled(mark, deadline)) || Date.now() >= deadline) return rows
    }
  }

  transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T> {
    const begin = () => {
      const transaction = this.sql.begin((tx) => work({ query: (text, params) => run(tx, text, params, this.options.prepare) }))
      return this.suspectingStandby(transaction as Promise<T>)
    }
    // Without primaryOnly, BEGIN goes out at once, as postgres.js would send it.
    return this.primary === null ? begin() : this.primary.ensurePrimary(this.deadline()).then(begin)
  }

  // A statement that failed as it would on a standby, or on a server that
  // went away: the pool is checked before the next statement (the store's retry).
  private async suspectingStandby<T>(statement: PromiseLike<T>): Promise<T> {
    try {
      return await statement
    } catch (error) {
      if (retryReason(error) === 'unavailable') this.primary?.suspect()
      throw error
    }
  }

  private deadline(): number {
    return deadlineAfter(this.options.queryTimeout)
  }

  cursor<Row extends object>(text: string, params: readonly unknown[], batchSize: number): AsyncIterable<Row[]> {
    return this.sql.unsafe<Row[]>(text, params as any[], { prepare: this.options.prepare }).cursor(batchSize)
  }
}

// A multi-host URL, or a target_session_attrs: the application expects
// postgres.js to find the primary among several servers.
function namesSeveralServers(sql: Sql<any>): boolean {
  const options = sql.options as { host?: unknown[]; target_session_attrs?: string } | undefined
  return (options?.host?.length ?? 0) > 1 || Boolean(options?.target_session_attrs)
}

// unsafe() with no parameters uses the simple protocol: several statements
// may go in one string, and nothing is prepared. An instance created with
// prepare: false (behind PgBouncer) never prepares, whatever a statement
// asks: postgres.js takes the stricter of the two.
function run<Row extends object>(sql: Unsafe, text: string, params: readonly unknown[] | undefined, prepare: boolean) {
  const rows = params === undefined ? sql.unsafe<Row[]>(text) : sql.unsafe<Row[]>(text, params as any[], { prepare })
  return rows as unknown as Promise<Rows<Row>>
}
