// Input checks shared by the core and the adapter. They run before any SQL,
// so a bad argument never writes, and their messages never echo the value:
// a session id or session data must not end up in a log line.

// A btree index entry is capped near 2.7 kB; longer tokens could never be stored.
export const MAX_TOKEN_BYTES = 1024

// timestamptz goes far beyond this, but postgres.js sends a Date as an ISO
// string, and years outside 0001-9999 have no ISO form PostgreSQL reads back.
const MIN_EXPIRY = Date.parse('0001-01-01T00:00:00.000Z')
export const MAX_EXPIRY = Date.parse('9999-12-31T23:59:59.999Z')

export function assertToken(token: unknown, name = 'token'): asserts token is string {
  if (typeof token !== 'string') throw new TypeError(`${name} must be a string, got ${typeOf(token)}`)
  if (token.length === 0) throw new TypeError(`${name} must not be empty`)
  if (token.includes('\0')) throw new TypeError(`${name} must not contain NUL characters`)
  if (!token.isWellFormed()) throw new TypeError(`${name} must be well-formed Unicode (it has a lone surrogate)`)
  if (Buffer.byteLength(token) > MAX_TOKEN_BYTES) {
    throw new RangeError(`${name} must be at most ${MAX_TOKEN_BYTES} bytes of UTF-8`)
  }
}

export function assertData(data: unknown): asserts data is Uint8Array {
  if (!(data instanceof Uint8Array)) throw new TypeError(`data must be a Buffer or Uint8Array, got ${typeOf(data)}`)
}

export function assertExpiry(expiry: unknown): asserts expiry is Date {
  if (!(expiry instanceof Date)) throw new TypeError(`expiry must be a Date, got ${typeOf(expiry)}`)
  const time = expiry.getTime()
  if (Number.isNaN(time)) throw new RangeError('expiry must be a valid Date, got an Invalid Date')
  if (time < MIN_EXPIRY || time > MAX_EXPIRY) {
    throw new RangeError('expiry must be between the years 0001 and 9999')
  }
}

export function assertVersion(version: unknown): asserts version is string {
  if (typeof version !== 'string') throw new TypeError(`version must be a string, got ${typeOf(version)}`)
  if (!/^\d{1,19}$/.test(version)) throw new RangeError('version must be a version findEntry gave (a decimal string)')
}

/** Names the type of a bad argument without showing its value. */
export function typeOf(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'object') return `an instance of ${value.constructor?.name ?? 'Object'}`
  return typeof value
}
