#!/usr/bin/env node
// The command line for jobs outside the app: print or apply the schema, and
// prune expired sessions from cron or serverless platforms where the store's
// cleanup timer never runs. Every failure is one line on stderr, never a
// stack trace, and never the connection string's password.
import { parseArgs } from 'node:util'
import postgres, { type Sql } from 'postgres'
import { PostgresStore } from './postgres-store.js'
import { schemaFor } from './schema.js'
import { parseTableName } from './table.js'

const USAGE = `Usage: express-session-postgres <command> [--url URL] [--table NAME]

Commands:
  schema   print the SQL that creates the sessions table
  migrate  create the table and its index when missing (safe to repeat)
  prune    delete expired sessions and print how many went
  stats    print the number of active and expired sessions

Options:
  --url URL     connection string (default: the DATABASE_URL variable)
  --table NAME  table name, "table" or "schema.table" (default: sessions)
  -h, --help    print this help

Exit status: 0 on success, 1 when the database fails, 2 on a usage error.`

// Long enough for a server across a network, short enough for a cron log to
// say "unreachable" rather than hang.
const CONNECT_TIMEOUT_SECONDS = 5

/** A mistake in the command line: exit status 2. */
class UsageError extends Error {}

interface Options {
  url?: string
  table: string
}

const commands: Record<string, (options: Options) => Promise<void>> = {
  schema: printSchema,
  migrate: (options) => withStore(options, migrate),
  prune: (options) => withStore(options, prune),
  stats: (options) => withStore(options, printStats),
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

/** Runs one command on a store over its own connection, closed afterwards so the process exits. */
async function withStore({ url, table }: Options, command: (store: PostgresStore) => Promise<void>): Promise<void> {
  if (!url) throw new UsageError('no database: set DATABASE_URL or pass --url')
  const sql = connect(url)
  try {
    await answersWithin(sql, CONNECT_TIMEOUT_SECONDS)
    await command(new PostgresStore(sql, { table, cleanupInterval: 0 }))
  } finally {
    await sql.end({ timeout: 1 })
  }
}

// prepare: false, because a one-shot job gains nothing from prepared statements,
// and behind PgBouncer in transaction mode they can vanish between two statements.
function connect(url: string): Sql {
  try {
    return postgres(url, { max: 1, prepare: false, connect_timeout: CONNECT_TIMEOUT_SECONDS, onnotice: () => {} })
  } catch (error) {
    if ((error as { code?: string }).code === 'ERR_INVALID_URL') throw new UsageError('the connection string is not a valid URL')
    throw error
  }
}

// connect_timeout covers the TCP connection only: a port that accepts and then
// stays silent (a proxy, another service) would otherwise hang the job forever.
async function answersWithin(sql: Sql, seconds: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const silence = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the database did not answer within ${seconds} s`)), seconds * 1000)
  })
  try {
    await Promise.race([sql`SELECT 1`.execute(), silence])
  } finally {
    clearTimeout(timer)
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
        help: { type: 'boolean', short: 'h', default: false },
      },
    })
    if (positionals.length > 1) throw new Error(`expected one command, got ${positionals.length}`)
    parseTableName(values.table)
    const url = values.url ?? process.env.DATABASE_URL
    return { command: positionals[0], help: values.help, options: { url, table: values.table } }
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
