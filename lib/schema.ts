// The table's DDL lives in schema.sql at the package root: the file a DBA
// reads is the file the library runs, with the table name swapped in.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { quoteIdentifier, type TableName } from './table.js'

const SCHEMA_FILE = join(__dirname, '..', 'schema.sql')

let schemaTemplate: string | undefined

/** The schema version that schema.sql creates, and records in the table's comment. */
export const SCHEMA_VERSION = 4

/** Reads the version out of a table comment; a table without one is pgxstore's, version 1. */
export function versionOf(comment: string | null): number {
  return Number(/express-session-postgres schema (\d+)/.exec(comment ?? '')?.[1] ?? 1)
}

/** schema.sql with `sessions` replaced by the configured table. */
export function schemaFor(table: TableName): string {
  schemaTemplate ??= readFileSync(SCHEMA_FILE, 'utf8')
  return schemaTemplate
    .replace(/--.*$/gm, '')
    // One pass, so a table name that itself contains "sessions" is not
    // replaced again; replacer functions, so a `$&` in it stays literal. CREATE
    // INDEX names an index in its table's schema; DROP INDEX must say which schema.
    .replace(/\b(DROP INDEX IF EXISTS )?sessions(_\w+_idx)?\b/g, (_, drop: string | undefined, index: string | undefined) =>
      index === undefined ? table.quoted : (drop ? drop + table.schemaPrefix : '') + quoteIdentifier(table.base + index))
    .trim()
}
