#!/usr/bin/env node
// The command line for jobs outside the app: print or apply the schema,
// prune expired sessions from cron or serverless platforms where the store's
// cleanup timer never runs, and import a connect-pg-simple table. Every
// failure is one line on stderr, never a stack trace, and never the
// connection string's password. It runs on whichever driver is installed.
import { parseArgs } from 'node:util'
import type { Pool } from 'pg'
import type { Sql } from 'postgres'
import type { Client } from './drivers/detect.js'
import { PostgresStore, type PostgresStoreOptions } from './postgres-store.js'
import { QueryTimeoutError } from './query-timeout.js'
import { schemaFor } from './schema.js'
import { parseTableName } from './table.js'

const USAGE = `Usage: express-session-postgres <command> [--url URL] [--table NAME] [--driver postgres|pg]

Commands:
  schema   print the SQL that creates the sessions table
  migrate  create the table and its index when missing (safe to repeat)
  prune    delete expired sessions and print how many went
  stats    print the number of active and expired sessions
  import --from connect-pg-simple [--from-table NAME] [--hash-tokens]
           copy the active sessions of a connect-pg-simple table (default:
           session) into the table; safe to repeat. With the store's secret
           in EXPRESS_SESSION_POSTGRES_SECRET, sessions are copied encrypted

Options:
  --url URL        connection string (default: the DATABASE_URL variable)
  --table NAME     table name, "table" or "schema.table" (default: sessions)
  --driver NAME    postgres (postgres.js) or pg (node-postgres); default: the
                   one installed, postgres first
  -h, --help       print this help

Exit status: 0 on success, 1 when the database fails, 2 on a usage error.`

const SECRET_VARIABLE = 'EXPRESS_SESSION_POSTGRES_SECRET'
// The package names of the drivers, in the order the CLI looks for them.
const DRIVERS = ['postgres', 'pg'] as const
type DriverName = (typeof DRIVERS)[number]
const IMPORT_SOURCES = ['connect-pg-simple']

// Long enough for a server across a network, short enough for a cron log to
// say "unreachable" rather than hang.
const CONNECT_TIMEOUT_SECONDS = 5

/** A mistake in the command line: exit status 2. */
class UsageError extends Error {}

interface Options {
  url?: string
  table: string
  driver?: DriverName
  from?: string
  fromTable: string
  hashTokens: boolean
}

const commands: Record<string, (options: Options) => Promise<void>> = {
  schema: printSchema,
  migrate: (options) => withStore(options, migrate),
  prune: (options) => withStore(options, prune),
  stats: (options) => withStore(options, printStats),
  import: (options) => withStore(checkImport(options), (store) => importSessions(store, options)),
}

async function printSchema({ table }: Options): Promise<void> {
  console.log(schemaFor(parseTableName(table)))
}

async function migrate(store: PostgresStore): Promise<void> {
  await store.migrate()
  console.log(`table ${store.table} is ready`)
}

async function prune(store: PostgresStore): Promise<void> {
  const deleted = await store.deleteExpired()
  console.log(`deleted: ${deleted}`)
}

async function printStats(store: PostgresStore): Promise<void> {
  const { active, expired } = await store.stats()
  console.log(`active: ${active}\nexpired: ${expired}`)
}

function checkImport(options: Options): Options {
  if (options.from === undefined) throw new UsageError('import needs --from connect-pg-simple')
  if (!IMPORT_SOURCES.includes(options.from)) throw new UsageError(`cannot import from "${options.from}" (only connect-pg-simple)`)
  return options
}

async function importSessions(store: PostgresStore, { fromTable }: Options): Promise<void> {
  const { copied, skipped } = await store.importConnectPgSimple(fromTable)
  console.log(`copied: ${copied}\nskipped: ${skipped}`)
}

/** Runs one command on a store over its own connection, closed afterwards so the process exits. */
async function withStore(options: Options, command: (store: PostgresStore) => Promise<void>): Promise<void> {
  const { url, table, hashTokens } = options
  if (!url) throw new UsageError('no database: set DATABASE_URL or pass --url')
  const connection = connect(url, options.driver ?? installedDriver())
  try {
    // The first statement of the command reads the table, so a silent port
    // (a proxy, another service) would hang the job: it must answer first.
    await answersWithin(connection.client, CONNECT_TIMEOUT_SECONDS)
    const secret = process.env[SECRET_VARIABLE] || undefined
    // prepare: false, because a one-shot job gains nothing from prepared statements,
    // and behind PgBouncer in transaction mode they can vanish between two statements.
    const storeOptions: PostgresStoreOptions = { table, cleanupInterval: 0, prepare: false, hashTokens, secret }
    await command(new PostgresStore(connection.client, storeOptions))
  } finally {
    await connection.end()
  }
}

/** postgres.js when it is installed, else node-postgres. */
function installedDriver(): DriverName {
  for (const name of DRIVERS) {
    try {
      require.resolve(name)
      return name
    } catch {
      // not installed: try the next one
    }
  }
  throw new UsageError('no driver: install postgres (postgres.js) or pg (node-postgres)')
}

interface Connection {
  client: Client
  end(): Promise<void>
}

// One connection, through the driver asked for, loaded only now.
function connect(url: string, driver: DriverName): Connection {
  if (driver === 'pg') {
    const pg: typeof import('pg') = require('pg')
    const pool: Pool = new pg.Pool({ connectionString: url, max: 1, connectionTimeoutMillis: CONNECT_TIMEOUT_SECONDS * 1000 })
    pool.on('error', () => {}) // a dropped idle connection: the next statement fails and says why
    return { client: pool, end: () => pool.end() }
  }
  const postgres: typeof import('postgres') = require('postgres')
  try {
    const sql: Sql = postgres(url, { max: 1, connect_timeout: CONNECT_TIMEOUT_SECONDS, onnotice: () => {} })
    return { client: sql, end: () => sql.end({ timeout: 1 }) }
  } catch (error) {
    if ((error as { code?: string }).code === 'ERR_INVALID_URL') throw new UsageError('the connection string is not a valid URL')
    throw error
  }
}

// connect_timeout covers the TCP connection only: a port that accepts and then
// stays silent (a proxy, another service) would otherwise hang the job forever.
// The store retries a refused or dropped connection until its queryTimeout (a
// database restarting gets those seconds), then fails with the driver's own
// error, which says why; a port that never answers ends in a QueryTimeoutError.
async function answersWithin(client: Client, seconds: number): Promise<void> {
  const ping = new PostgresStore(client, { cleanupInterval: 0, prepare: false, queryTimeout: seconds * 1000 })
  try {
    await ping.schemaVersion()
  } catch (error) {
    if (!(error instanceof QueryTimeoutError)) throw error
    // Refused or reset until the end: the driver's error says why better than a timeout.
    throw error.cause ?? new Error(`the database did not answer within ${seconds} s`)
  }
}

function parseCommandLine(args: string[]): { command?: string; help: boolean; options: Options } {
  try {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        url: { type: 'string' },
        table: { type: 'string', default: 'sessions' },
        driver: { type: 'string' },
        from: { type: 'string' },
        'from-table': { type: 'string', default: 'session' },
        'hash-tokens': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    })
    if (positionals.length > 1) throw new Error(`expected one command, got ${positionals.length}`)
    parseTableName(values.table)
    parseTableName(values['from-table'])
    const { driver } = values
    if (driver !== undefined && !(DRIVERS as readonly string[]).includes(driver)) throw new Error(`--driver must be postgres or pg, got "${driver}"`)
    const url = values.url ?? process.env.DATABASE_URL
    const options: Options = {
      url, table: values.table, driver: driver as DriverName | undefined,
      from: values.from, fromTable: values['from-table'], hashTokens: values['hash-tokens'],
    }
    return { command: positionals[0], help: values.help, options }
  } catch (error) {
    // parseArgs appends a long hint about '--' to its first sentence.
    throw new UsageError((error as Error).message.split('. ')[0])
  }
}

async function main(args: string[]): Promise<void> {
  const { command, help, options } = parseCommandLine(args)
  if (help) return console.log(USAGE)
  if (command === undefined) throw new UsageError('no command given (try --help)')
  if (!Object.hasOwn(commands, command)) throw new UsageError(`unknown command "${command}" (try --help)`)
  await commands[command](options)
}

/** The error as one line, with the connection strings and their passwords masked. */
function describe(error: unknown, urls: string[]): string {
  let message = (error instanceof Error ? error.message : String(error)).split(/\r?\n/)[0]
  for (const secret of urls.flatMap(secretsOf)) message = message.split(secret).join('***')
  return message
}

function secretsOf(url: string): string[] {
  let password = ''
  try {
    password = new URL(url).password
  } catch {
    return [url]
  }
  if (!password) return [url]
  try {
    return [url, password, decodeURIComponent(password)]
  } catch {
    return [url, password] // malformed percent-encoding
  }
}

/** Every connection string on the command line or in the environment, found without parseArgs. */
function connectionStrings(args: string[]): string[] {
  const urls = args.flatMap((arg, i) => (arg === '--url' ? [args[i + 1]] : arg.startsWith('--url=') ? [arg.slice(6)] : []))
  return [...urls, process.env.DATABASE_URL].filter((url): url is string => Boolean(url))
}

const args = process.argv.slice(2)
main(args).catch((error: unknown) => {
  process.stderr.write(`express-session-postgres: ${describe(error, connectionStrings(args))}\n`)
  process.exitCode = error instanceof UsageError ? 2 : 1
})
