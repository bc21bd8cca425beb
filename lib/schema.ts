// The table's DDL lives in schema.sql at the package root: the file a DBA
// reads is the file the library runs, with the table name swapped in.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { quoteIdentifier, type TableName } from './table.js'

const SCHEMA_FILE = join(__dirname, '..', 'schema.sql')

let schemaTemplate: string | undefined

/** schema.sql with `sessions` replaced by the configured table. */
export function schemaFor(table: TableName): string {
  schemaTemplate ??= readFileSync(SCHEMA_FILE, 'utf8')
  return schemaTemplate
    .replace(/--.*$/gm, '')
    // Replacer functions, so a `$&` in a table name stays literal.
    .replace(/\bsessions_expiry_idx\b/g, () => quoteIdentifier(`${table.base}_expiry_idx`))
    .replace(/\bsessions\b/g, () => table.quoted)
    .trim()
}
