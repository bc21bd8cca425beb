// Table names come from configuration, never from requests, but they are
// still quoted everywhere: a name is data, not SQL.

export interface TableName {
  /** The name as configured, e.g. `sessions` or `app.sessions`. */
  readonly name: string
  /** Ready to splice into SQL: `"app"."sessions"`. */
  readonly quoted: string
  /** The unqualified table name, for naming its index. */
  readonly base: string
  /** The schema part, quoted with its dot (`"app".`), or '' for an unqualified name: an index lives in its table's schema. */
  readonly schemaPrefix: string
}

export function parseTableName(name: unknown): TableName {
  if (typeof name !== 'string' || name.length === 0) {
    throw new TypeError('table must be a non-empty string such as "sessions" or "schema.sessions"')
  }
  const parts = name.split('.')
  if (parts.length > 2 || parts.some((part) => part.length === 0 || part.includes('\0'))) {
    throw new TypeError('table must be "table" or "schema.table", each part non-empty and without NUL')
  }
  const quoted = parts.map(quoteIdentifier)
  return { name, quoted: quoted.join('.'), base: parts[parts.length - 1], schemaPrefix: quoted.slice(0, -1).map((part) => part + '.').join('') }
}

export function quoteIdentifier(identifier: string): string {
  return '"' + identifier.replace(/"/g, '""') + '"'
}
