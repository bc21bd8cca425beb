// Which driver a client belongs to. Neither driver is imported at run time
// here: an application installs the one it uses, and the package loads
// without the other.
import type { Sql } from 'postgres'
import type { Driver, DriverOptions, PostgresJsSql } from './driver.js'
import { NodePostgresDriver, isPgPool, type PgPool } from './node-postgres.js'
import { PostgresJsDriver, isPostgresJs } from './postgres-js.js'

/** A postgres.js instance, or a node-postgres pool (`pg.Pool`, or anything with its connect and query). */
export type Client = PostgresJsSql | PgPool

/** The driver for client, or a TypeError naming what is expected when client is neither kind. */
export function driverFor(client: unknown, options: DriverOptions): Driver {
  if (isPostgresJs(client)) return new PostgresJsDriver(client as Sql<any>, options)
  if (isPgPool(client)) return new NodePostgresDriver(client, options)
  throw new TypeError(
    'PostgresStore needs a postgres.js instance or a node-postgres pool: ' +
      'new PostgresStore(postgres(url)) or new PostgresStore(new pg.Pool({ connectionString }))',
  )
}
