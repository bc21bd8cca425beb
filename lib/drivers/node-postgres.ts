// The driver for node-postgres (`pg`), given as a pg.Pool. Statements are
// named, so pg prepares each once per connection; transactions and cursors
// hold one client from the pool. pg parses bytea into Buffer and timestamptz
// into Date, as the core expects (counts come back as text, which the core
// converts). The only statements here control a transaction or a cursor
// (BEGIN, COMMIT, DECLARE, FETCH); the store's statements come from the core.
import { createHash } from 'node:crypto'
import type { Driver, DriverOptions, Queryable, Rows } from './driver.js'

// The parts of pg's API this driver uses, declared here so that neither pg
// nor @types/pg is needed to load or type-check the package.
export interface PgQueryConfig {
  text: string
  values?: unknown[]
  /** Prepared once per connection under this name. */
  name?: string
  /** pg fails the statement after this many ms, and the pool then closes the connection. */
  query_timeout?: number
}

export interface PgResult {
  rows: any[]
  rowCount: number | null
}

interface PgQueryable {
  query(config: PgQueryConfig): Promise<PgResult | PgResult[]>
}

export interface PgPoolClient extends PgQueryable {
  /** Back to the pool; with an error, the connection is closed instead. */
  release(error?: Error | boolean): void
  on(event: 'error', listener: (error: Error) => void): unknown
  removeListener(event: 'error', listener: (error: Error) => void): unknown
}

/** A node-postgres pool: `new pg.Pool(...)`, or anything with its connect() and query(). */
export interface PgPool extends PgQueryable {
  connect(): Promise<PgPoolClient>
}

/** An object with a pool's connect() and query(), and not a single pg.Client (which has a processID). */
export function isPgPool(client: unknown): client is PgPool {
  if (typeof client !== 'object' || client === null) return false
  const { connect, query } = client as Partial<PgPool>
  return typeof connect === 'function' && typeof query === 'function' && !('processID' in client)
}

const CURSOR = 'express_session_postgres_cursor'

export class NodePostgresDriver implements Driver {
  // The statement name for each text: a hash, so a name always means one text.
  private readonly names = new Map<string, string>()

  constructor(
    private readonly pool: PgPool,
    private readonly options: DriverOptions,
  ) {
    // pg connects to one address: what is behind it is the application's
    // choice (a virtual IP, a DNS name or PgBouncer that follows the primary).
    if (options.primaryOnly) {
      throw new TypeError('primaryOnly needs a postgres.js instance with several hosts; give node-postgres an address that always leads to the primary')
    }
  }

  query<Row extends object>(text: string, params?: readonly unknown[]): Promise<Rows<Row>> {
    return this.run<Row>(this.pool, text, params)
  }

  async transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T> {
    return this.withClient(async (client) => {
      await this.run(client, 'BEGIN')
      const result = await work({ query: (text, params) => this.run(client, text, params) })
      await this.run(client, 'COMMIT')
      return result
    })
  }

  async *cursor<Row extends object>(text: string, params: readonly unknown[], batchSize: number): AsyncIterable<Row[]> {
    const client = await this.checkOut()
    let closed = false
    try {
      // A cursor lives in a transaction: behind PgBouncer the connection stays ours until COMMIT.
      await this.run(client, 'BEGIN')
      await this.run(client, `DECLARE ${CURSOR} NO SCROLL CURSOR FOR ${text}`, params.length > 0 ? params : undefined)
      for (;;) {
        const rows = await this.run<Row>(client, `FETCH ${Number(batchSize)} FROM ${CURSOR}`)
        if (rows.length > 0) yield rows
        if (rows.length < batchSize) break
      }
      await this.run(client, 'COMMIT')
      closed = true
    } finally {
      // An error, or a loop that stopped early: closing the connection ends the transaction and its cursor.
      this.checkIn(client, closed ? undefined : new Error('cursor not read to the end'))
    }
  }

  // Any failure closes the connection rather than rolling back on it: the
  // server rolls back a transaction whose connection ends, and a connection
  // whose statement timed out may still be busy with it.
  private async withClient<T>(work: (client: PgPoolClient) => Promise<T>): Promise<T> {
    const client = await this.checkOut()
    try {
      const result = await work(client)
      this.checkIn(client)
      return result
    } catch (error) {
      this.checkIn(client, error instanceof Error ? error : new Error(String(error)))
      throw error
    }
  }

  private async checkOut(): Promise<PgPoolClient> {
    const client = await this.pool.connect()
    // A checked-out client whose connection drops between statements emits
    // 'error'; unheard, that would end the process. The next statement fails instead.
    client.on('error', ignore)
    return client
  }

  private checkIn(client: PgPoolClient, error?: Error): void {
    client.removeListener('error', ignore)
    client.release(error)
  }

  private async run<Row extends object>(on: PgQueryable, text: string, params?: readonly unknown[]): Promise<Rows<Row>> {
    const config: PgQueryConfig = { text }
    if (params !== undefined) {
      config.values = [...params]
      if (this.options.prepare) config.name = this.nameOf(text)
    }
    if (this.options.queryTimeout > 0) config.query_timeout = this.options.queryTimeout
    const result = await on.query(config)
    // Text without params may hold several statements: pg answers with one result each.
    const last = Array.isArray(result) ? result[result.length - 1] : result
    return Object.assign(last.rows as Row[], { count: last.rowCount ?? 0 })
  }

  private nameOf(text: string): string {
    let name = this.names.get(text)
    if (name === undefined) {
      name = 'esp_' + createHash('sha256').update(text).digest('hex').slice(0, 32)
      this.names.set(text, name)
    }
    return name
  }
}

function ignore(): void {}
