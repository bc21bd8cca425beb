// The driver for porsager's postgres.js: each statement through sql.unsafe,
// prepared per connection (postgres.js keeps the statement cache), cursors
// and transactions as postgres.js offers them. postgres.js parses bytea into
// Buffer and timestamptz into Date, as the core expects.
import type { Sql } from 'postgres'
import type { Driver, DriverOptions, PostgresJsSql, Queryable, Rows } from './driver.js'

/** A postgres.js instance: a tagged-template function with methods. */
export function isPostgresJs(client: unknown): client is PostgresJsSql {
  return typeof client === 'function' && typeof (client as Partial<Sql>).unsafe === 'function'
}

type Unsafe = Pick<Sql<any>, 'unsafe'>

export class PostgresJsDriver implements Driver {
  constructor(
    private readonly sql: Sql<any>,
    private readonly options: DriverOptions,
  ) {}

  query<Row extends object>(text: string, params?: readonly unknown[]): Promise<Rows<Row>> {
    return run<Row>(this.sql, text, params, this.options.prepare)
  }

  transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T> {
    return this.sql.begin((tx) => work({ query: (text, params) => run(tx, text, params, this.options.prepare) })) as Promise<T>
  }

  cursor<Row extends object>(text: string, params: readonly unknown[], batchSize: number): AsyncIterable<Row[]> {
    return this.sql.unsafe<Row[]>(text, params as any[], { prepare: this.options.prepare }).cursor(batchSize)
  }
}

// unsafe() with no parameters uses the simple protocol: several statements
// may go in one string, and nothing is prepared. An instance created with
// prepare: false (behind PgBouncer) never prepares, whatever a statement
// asks: postgres.js takes the stricter of the two.
function run<Row extends object>(sql: Unsafe, text: string, params: readonly unknown[] | undefined, prepare: boolean) {
  const rows = params === undefined ? sql.unsafe<Row[]>(text) : sql.unsafe<Row[]>(text, params as any[], { prepare })
  return rows as unknown as Promise<Rows<Row>>
}
