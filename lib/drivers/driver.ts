// The seam between the core and a PostgreSQL driver. The core writes every
// statement (lib/postgres-store.ts) and sends it through this small
// interface; each driver file only moves statements, parameters and rows.
// Types only: the driver files build on this one, and detect.ts picks one.

/** Rows of a statement, with the number of rows it returned or changed. */
export type Rows<Row> = Row[] & { count: number }

/** Runs statements: on the pool, or inside one transaction. */
export interface Queryable {
  /**
   * Runs one statement with params ($1, $2...), prepared once per connection
   * unless the store was told not to. Without params it is sent as it is,
   * unprepared, and may hold several statements (schema.sql).
   */
  query<Row extends object = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<Rows<Row>>
}

/** What the core needs from a driver. */
export interface Driver extends Queryable {
  /** Runs work in one short transaction on one connection: committed when work resolves, rolled back when it rejects. */
  transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T>
  /** The rows of one statement, batchSize at a time, from a cursor; the cursor closes when the loop ends or breaks. */
  cursor<Row extends object>(text: string, params: readonly unknown[], batchSize: number): AsyncIterable<Row[]>
}

/**
 * A postgres.js instance (what `postgres(url)` returns), as far as the store
 * uses it: declared here, so that a node-postgres user needs no postgres.js types.
 */
export interface PostgresJsSql {
  (...args: any[]): any
  unsafe(query: string, parameters?: any[], options?: { prepare?: boolean }): any
  begin(...args: any[]): Promise<any>
}

export interface DriverOptions {
  /** Prepare each statement once per connection (false behind PgBouncer in transaction mode). */
  prepare: boolean
  /** Milliseconds before a statement is given up; 0 never. A driver that can frees the connection then. */
  queryTimeout: number
  /** Never send a statement through a connection on a standby; undefined: the driver's default. */
  primaryOnly?: boolean
}
