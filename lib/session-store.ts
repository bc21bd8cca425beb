// PostgresSessionStore: express-session's Store on top of PostgresStore.
// The rules of express-session (cookie expiry, ttl, serialization, callbacks)
// live here; every SQL statement lives in the core, so this file has none.
import { Store, type SessionData } from 'express-session'
import type { Sql } from 'postgres'
import { logError, reportSafely } from './cleanup.js'
import type { PostgresJsSql } from './drivers/driver.js'
import { isPgPool, type PgPool } from './drivers/node-postgres.js'
import { isPostgresJs } from './drivers/postgres-js.js'
import { changesTopLevel, equal, mergeSessions } from './merge.js'
import { PostgresStore, type PostgresStoreOptions } from './postgres-store.js'
import { currentRead, needsReadContext, runWithRead } from './read-context.js'
import { assertToken, MAX_EXPIRY, typeOf } from './validate.js'

/** Turns a session into text and back. Default: JSON. The text is stored as UTF-8. */
export interface Serializer {
  stringify(session: SessionData): string
  parse(text: string): SessionData
}

/** Seconds a session lives when its cookie has no expiry: a number, or computed per session. */
export type Ttl = number | ((session: SessionData) => number)

interface CommonOptions {
  /** Seconds a session without `cookie.expires` is kept. Default one day. */
  ttl?: Ttl
  /** How sessions become bytes. Default JSON as UTF-8. */
  serializer?: Serializer
  /** When true, touch does nothing (the expiry then only moves when a session is saved). */
  disableTouch?: boolean
  /**
   * Seconds: a touch that would move the stored expiry by less is not written.
   * Never more than a tenth of the session's lifetime; 0 writes every touch. Default one hour.
   */
  touchAfter?: number
  /** Receives errors nobody else sees: unreadable rows, cleanup failures. Default: one line on stderr. */
  onError?: (error: Error) => void
  /** Who a session belongs to (e.g. its user id), or undefined; enables destroyByOwner and listByOwner. */
  owner?: Owner
  /**
   * true: a request's save merges with what other requests of the session saved
   * since it read it (README "Concurrent requests"), and an unchanged session is not written. false: the last save wins. Default true.
   */
  merge?: boolean
}

/** Settings for the PostgresStore the adapter creates (not allowed with `store`): see PostgresStoreOptions. */
type CoreOptions = Omit<PostgresStoreOptions, 'onError'>

const CORE_OPTION_NAMES = [
  'table', 'cleanupInterval', 'tombstones', 'absoluteTimeout', 'hashTokens', 'secret', 'queryTimeout', 'coalesce', 'prepare',
  'primaryOnly',
] as const satisfies readonly (keyof CoreOptions)[]

/** Settings for the pool the adapter opens itself. */
interface OwnPoolOptions {
  /**
   * false: the pool commits with synchronous_commit = off, trading the last
   * fraction of a second of session writes on a database crash for faster writes. Default true.
   */
  synchronousCommit?: boolean
}

/** Exactly one way to reach PostgreSQL. */
export type PostgresSessionStoreOptions = CommonOptions &
  (
    | (CoreOptions & { sql: PostgresJsSql; pool?: never; store?: never; connectionString?: never; synchronousCommit?: never })
    | (CoreOptions & { pool: PgPool; sql?: never; store?: never; connectionString?: never; synchronousCommit?: never })
    | (CoreOptions & OwnPoolOptions & { connectionString: string; sql?: never; pool?: never; store?: never })
    | ({ store: PostgresStore; sql?: never; pool?: never; connectionString?: never; synchronousCommit?: never } & {
        [name in keyof CoreOptions]?: never
      })
  )

/** The owner of a session (a user id, say), or undefined for a session nobody owns. */
export type Owner = (session: SessionData) => string | undefined

/** One of an owner's active sessions, as listByOwner gives it. */
export interface OwnedSession {
  /** The session id, or its SHA-256 hex with hashTokens. */
  id: string
  expiry: Date
  created: Date
  session: SessionData
}

/** express-session's callback: an error, or null and a value. */
export type Callback<T> = (error: any, value?: T) => void

export const DEFAULT_TTL_SECONDS = 24 * 60 * 60
export const DEFAULT_TOUCH_AFTER_SECONDS = 60 * 60

/** Writes a save may try before it gives up with a SessionConflictError: the first, then one per merge. */
export const MAX_SAVE_ATTEMPTS = 5

/** set gave up: other requests of the session saved it each time this one merged and tried again. Nothing of this save was written. */
export class SessionConflictError extends Error {
  constructor(attempts: number) {
    super(`the session was not saved: other requests saved it first ${attempts} times in a row`)
    this.name = 'SessionConflictError'
  }
}

/** What one request read by get: the stored bytes, expiry and version, for merging and touchAfter. */
interface Read {
  readonly adapter: PostgresSessionStore
  readonly sid: string
  data: Buffer
  expiry: Date
  version: string
  /** The session object get handed out, for a cheap first look at what a save changed. */
  returned?: SessionData
}

const OPTION_NAMES = new Set([
  'sql', 'pool', 'store', 'connectionString', 'synchronousCommit', ...CORE_OPTION_NAMES, 'ttl', 'serializer', 'disableTouch', 'touchAfter', 'onError', 'owner',
  'merge',
])

// fatal: bytes that are not UTF-8 must fail to decode, not turn into U+FFFD.
const utf8 = new TextDecoder('utf-8', { fatal: true })

export class PostgresSessionStore extends Store {
  /** The core this adapter stores through: token -> bytes with an expiry. */
  readonly store: PostgresStore
  private readonly ttl: Ttl
  private readonly serializer: Serializer
  private readonly disableTouch: boolean
  private readonly touchAfterMs: number
  // What get read for each session it returned, and for the req.session
  // express-session builds from it (createSession): set merges against it,
  // touch tells how far the expiry would move. A WeakMap: it lives exactly as long as the request.
  private readonly reads = new WeakMap<object, Read>()
  // Saves of one session in this process go one at a time: each then loses
  // at most once to the others, instead of all of them retrying together.
  private readonly saving = new Map<string, Promise<void>>()
  private readonly merge: boolean
  private readonly onError: (error: Error) => void
  private readonly owner: Owner | undefined
  private readonly ownsStore: boolean
  private readonly ownSql: Sql | undefined

  constructor(options: PostgresSessionStoreOptions) {
    super()
    checkOptions(options)
    const {
      ttl = DEFAULT_TTL_SECONDS, serializer = JSON, disableTouch = false, touchAfter = DEFAULT_TOUCH_AFTER_SECONDS,
      onError = logError,
    } = options
    this.ttl = ttl
    this.serializer = serializer
    this.disableTouch = disableTouch
    this.touchAfterMs = touchAfter * 1000
    this.onError = onError
    this.owner = options.owner
    this.merge = options.merge ?? true
    needsReadContext(this, this.merge)
    this.ownsStore = options.store === undefined
    this.ownSql = options.connectionString === undefined ? undefined : ownPool(options.connectionString, options)
    this.store = options.store ?? new PostgresStore((options.sql ?? options.pool ?? this.ownSql)!, coreOptionsOf(options))
  }

  /**
   * Calls back with the session stored under sid, a valid cookie.expires set to the stored expiry (any other
   * session as stored), or null when it is missing, expired, destroyed or unreadable (reported to onError; a row that decrypts but does not decode is removed).
   */
  get(sid: string): Promise<SessionData | null>
  get(sid: string, callback: Callback<SessionData | null>): void
  get(sid: string, callback?: Callback<SessionData | null>): Promise<SessionData | null> | void {
    return settle(() => this.read(sid), typeof callback === 'function' ? this.carryingRead(callback) : callback)
  }

  /**
   * Stores session under sid until cookie.expires, or for ttl seconds when it has no cookie or no valid
   * expires, under owner(session); an expiry already past removes the session instead, and a destroyed one stays destroyed. A session
   * that is not an object, or that the serializer or owner cannot handle, is a TypeError, and nothing is written. A session get
   * returned is merged with saves made since (unchanged, it is not written); after MAX_SAVE_ATTEMPTS lost races, a SessionConflictError.
   */
  set(sid: string, session: SessionData): Promise<void>
  set(sid: string, session: SessionData, callback: Callback<void>): void
  set(sid: string, session: SessionData, callback?: Callback<void>): Promise<void> | void {
    return settle(() => this.write(sid, session), callback)
  }

  /**
   * Ends the session stored under sid: with tombstones (the default) a request
   * that read it earlier cannot write it back. Calls back without an error whether or not it existed.
   */
  destroy(sid: string): Promise<void>
  destroy(sid: string, callback: Callback<void>): void
  destroy(sid: string, callback?: Callback<void>): Promise<void> | void {
    return settle(() => this.erase(sid), callback)
  }

  /**
   * Moves the expiry of an active session as set would, without rewriting its
   * data, never beyond absoluteTimeout. A missing, expired or destroyed session stays missing; with disableTouch nothing happens.
   */
  touch(sid: string, session: SessionData): Promise<void>
  touch(sid: string, session: SessionData, callback: Callback<void>): void
  touch(sid: string, session: SessionData, callback?: Callback<void>): Promise<void> | void {
    return settle(() => this.extend(sid, session), callback)
  }

  /**
   * Calls back with every active session, keyed by session id (its SHA-256 hex
   * with hashTokens). Expired and destroyed rows are left out; unreadable rows are left out and reported to onError.
   */
  all(): Promise<Record<string, SessionData>>
  all(callback: Callback<Record<string, SessionData>>): void
  all(callback?: Callback<Record<string, SessionData>>): Promise<Record<string, SessionData>> | void {
    return settle(() => this.readAll(), callback)
  }

  /**
   * Calls back with the number of active sessions. Expired rows the sweep has
   * not removed yet are not counted.
   */
  length(): Promise<number>
  length(callback: Callback<number>): void
  length(callback?: Callback<number>): Promise<number> | void {
    return settle(() => this.store.count(), callback)
  }

  /**
   * Removes every session of the table, active or expired. The table itself
   * stays; other tables are untouched.
   */
  clear(): Promise<void>
  clear(callback: Callback<void>): void
  clear(callback?: Callback<void>): Promise<void> | void {
    return settle(async () => void (await this.store.clear()), callback)
  }

  /**
   * Ends every active session of owner, on every device, and calls back with
   * how many. An owner with none gives 0; an owner that is not a non-empty string is a TypeError.
   */
  destroyByOwner(owner: string): Promise<number>
  destroyByOwner(owner: string, callback: Callback<number>): void
  destroyByOwner(owner: string, callback?: Callback<number>): Promise<number> | void {
    return settle(() => this.store.destroyByOwner(owner), callback)
  }

  /**
   * Calls back with owner's active sessions, oldest first, as { id, expiry,
   * created, session }; an owner with none gives []. Unreadable rows are left out and reported to onError, as all() does.
   */
  listByOwner(owner: string): Promise<OwnedSession[]>
  listByOwner(owner: string, callback: Callback<OwnedSession[]>): void
  listByOwner(owner: string, callback?: Callback<OwnedSession[]>): Promise<OwnedSession[]> | void {
    return settle(() => this.readOwned(owner), callback)
  }

  /**
   * Creates the table, or upgrades an older one in place without losing a
   * session, as the core's migrate() does. Safe at every start-up; a table already current is left alone.
   */
  migrate(): Promise<void>
  migrate(callback: Callback<void>): void
  migrate(callback?: Callback<void>): Promise<void> | void {
    return settle(() => this.store.migrate(), callback)
  }

  /**
   * Stops the cleanup timer of the core this adapter created and ends the pool
   * it opened for connectionString. A caller's sql, pool or store is left running; calling close again does nothing.
   */
  close(): Promise<void>
  close(callback: Callback<void>): void
  close(callback?: Callback<void>): Promise<void> | void {
    return settle(async () => {
      needsReadContext(this, false)
      if (this.ownsStore) this.store.stopCleanup()
      await this.ownSql?.end({ timeout: 5 })
    }, callback)
  }

  private async read(sid: string): Promise<SessionData | null> {
    assertToken(sid, 'sid')
    const entry = await this.store.findEntry(sid)
    if (entry === null) return null
    const session = this.decode(entry.data)
    if (session instanceof Error) {
      await this.discard(sid, session)
      return null
    }
    this.reads.set(session, { adapter: this, sid, ...entry, returned: session })
    return withStoredExpiry(session, entry.expiry)
  }

  // callback, run so that what the request does next knows what this get
  // read, for a framework that builds its own session object (lib/read-context.ts).
  private carryingRead(callback: Callback<SessionData | null>): Callback<SessionData | null> {
    return (error, session) => {
      const read = session ? this.reads.get(session) : undefined
      if (read === undefined) callback(error, session)
      else runWithRead(this, read, callback, error, session)
    }
  }

  private async write(sid: string, session: SessionData): Promise<void> {
    assertToken(sid, 'sid')
    assertSession(session)
    const expiry = this.expiryOf(session)
    const data = this.encode(session)
    const owner = this.ownerOf(session)
    if (expiry.getTime() <= Date.now()) return this.store.delete(sid)
    const read = this.merge ? this.readOf(sid, session) : undefined
    if (read === undefined) return this.store.commit(sid, data, expiry, owner)
    // Cheapest first: a session is decoded and compared only when neither its
    // expiry nor a top-level value already shows that it must be written.
    if (this.movesLittle(read, expiry) && !plainlyChanged(read, session) && this.isUnchanged(read.data, data)) return
    this.reads.set(session, read)
    const base = read.data
    await this.oneAtATime(sid, () => this.commitMerging(sid, read, base, data, expiry, owner))
  }

  /** What the request saving session under sid read, if get read it. */
  private readOf(sid: string, session: SessionData): Read | undefined {
    const read = this.reads.get(session) ?? (currentRead() as Read | undefined)
    return read?.adapter === this && read.sid === sid ? read : undefined
  }

  // The cookie is left out: express-session and @fastify/session rebuild it on
  // every request, and its expiry is judged by touchAfter instead.
  private isUnchanged(baseData: Buffer, data: Buffer): boolean {
    const [base, ours] = [this.decode(baseData), this.decode(data)]
    if (base instanceof Error || ours instanceof Error) return false
    return equal({ ...base, cookie: null }, { ...ours, cookie: null })
  }

  // Writes ours (data) if nobody saved the session since read; else merges
  // with what they saved and tries again, against the version it merged with.
  // Sessions are decoded only then: base (the bytes ours came from), ours,
  // theirs. read is moved on to what was written, for a second save by the same request.
  private async commitMerging(
    sid: string, read: Read, base: Buffer, data: Buffer, expiry: Date, owner: string | undefined,
  ): Promise<void> {
    let version: string | null = read.version
    for (let attempt = 1; ; attempt++) {
      if (version === null) return this.store.commit(sid, data, expiry, owner)
      const result = await this.store.commitIfVersion(sid, data, expiry, owner, version)
      if (result.outcome === 'destroyed') return
      // What get handed out no longer tells what a later save changes: that save compares with data.
      if (result.outcome === 'written') return void Object.assign(read, { data, expiry, version: result.version, returned: undefined })
      if (attempt >= MAX_SAVE_ATTEMPTS) throw new SessionConflictError(attempt)
      const ours = this.decode(data)
      const theirs = result.current === null ? null : this.decode(result.current.data)
      // Nothing readable to merge with (gone, expired, undecodable): ours is written whole.
      if (theirs === null || theirs instanceof Error || ours instanceof Error) {
        version = null
        continue
      }
      const baseSession = this.decode(base)
      const merged = mergeSessions(baseSession instanceof Error ? {} : baseSession, ours as {} as Record<string, unknown>, theirs) as unknown as SessionData
      ;[base, version, data, owner] = [result.current!.data, result.current!.version, this.encode(merged), this.ownerOf(merged)]
    }
  }

  /** Runs work after every earlier oneAtATime of sid in this adapter has settled. */
  private async oneAtATime(sid: string, work: () => Promise<void>): Promise<void> {
    const earlier = this.saving.get(sid)
    const mine = earlier === undefined ? work() : earlier.then(work)
    const settled = mine.catch(() => {})
    this.saving.set(sid, settled)
    try {
      await mine
    } finally {
      if (this.saving.get(sid) === settled) this.saving.delete(sid)
    }
  }

  private async erase(sid: string): Promise<void> {
    assertToken(sid, 'sid')
    await this.store.delete(sid)
  }

  private async extend(sid: string, session: SessionData): Promise<void> {
    assertToken(sid, 'sid')
    assertSession(session)
    if (this.disableTouch) return
    const expiry = this.expiryOf(session)
    const read = this.reads.get(session)
    if (read !== undefined && this.movesLittle(read, expiry)) return
    await this.store.touch(sid, expiry)
  }

  /**
   * express-session builds req.session from what get returned; the adapter
   * remembers the expiry that session was stored with, for touchAfter.
   */
  createSession(req: Parameters<Store['createSession']>[0], data: SessionData): ReturnType<Store['createSession']> {
    // express-session: req.session is known by the WeakMap, no context needed.
    needsReadContext(this, false)
    const read = this.reads.get(data)
    const session = super.createSession(req, data)
    if (read !== undefined) this.reads.set(session, read)
    return session
  }

  // True when writing expiry would move the stored one forward by less than
  // touchAfter, or than a tenth of the session's lifetime: a short session
  // stays exact, and an active one is rewritten long before it could expire.
  private movesLittle(read: Read, expiry: Date): boolean {
    const moved = expiry.getTime() - read.expiry.getTime()
    const lifetime = expiry.getTime() - Date.now()
    return moved >= 0 && moved < Math.min(this.touchAfterMs, lifetime / 10)
  }

  private async readAll(): Promise<Record<string, SessionData>> {
    // No prototype: a session id such as "__proto__" is just a key.
    const sessions: Record<string, SessionData> = Object.create(null)
    for (const [sid, { data, expiry }] of await this.store.allEntries()) {
      const session = this.readable(data)
      if (session !== null) sessions[sid] = withStoredExpiry(session, expiry)
    }
    return sessions
  }

  private async readOwned(owner: string): Promise<OwnedSession[]> {
    const owned: OwnedSession[] = []
    for (const { token, data, expiry, created } of await this.store.listByOwner(owner)) {
      const session = this.readable(data)
      if (session !== null) owned.push({ id: token, expiry, created, session: withStoredExpiry(session, expiry) })
    }
    return owned
  }

  /** owner(session), checked: a string, or undefined for a session nobody owns. */
  private ownerOf(session: SessionData): string | undefined {
    if (this.owner === undefined) return undefined
    const owner = callOnSession('owner', this.owner, session)
    if (owner === undefined) return undefined
    if (typeof owner !== 'string') throw new TypeError(`owner() must return a string or undefined, got ${typeOf(owner)}`)
    assertToken(owner, 'owner()')
    return owner
  }

  private expiryOf(session: SessionData): Date {
    return cookieExpiry(session) ?? new Date(Date.now() + this.ttlSeconds(session) * 1000)
  }

  private ttlSeconds(session: SessionData): number {
    if (typeof this.ttl === 'number') return this.ttl
    const seconds = callOnSession('ttl', this.ttl, session)
    if (!isPositiveSeconds(seconds)) throw new RangeError('ttl() must return a positive, finite number of seconds')
    return seconds
  }

  private encode(session: SessionData): Buffer {
    let text: unknown
    try {
      text = this.serializer.stringify(session)
    } catch (error) {
      // The serializer's message can quote the session (property names, values); keep it out of ours.
      throw new TypeError(`session could not be serialized: the serializer threw ${errorName(error)} ` +
        '(a circular reference or a BigInt?)')
    }
    if (typeof text !== 'string') {
      throw new TypeError(`session could not be serialized: the serializer returned ${typeOf(text)}, not a string`)
    }
    return Buffer.from(text, 'utf8')
  }

  /** The session in data, or the Error saying why it cannot be read. */
  private decode(data: Buffer): SessionData | Error {
    let text: string
    try {
      text = utf8.decode(data)
    } catch {
      return new TypeError('its bytes are not UTF-8')
    }
    let session: unknown
    try {
      session = this.serializer.parse(text)
    } catch (error) {
      return new TypeError(`the serializer threw ${errorName(error)}`)
    }
    // A session without a cookie is still a session (MemoryStore hands it back too); the framework decides.
    if (!isObject(session)) return new TypeError(`it is ${typeOf(session)}, not an object`)
    return session as unknown as SessionData
  }

  /** The session in data, or null (reported to onError) when it cannot be decoded. */
  // Only reported, not removed: with hashTokens the key in hand is a hash, which
  // delete() would hash again. get removes the row when that session's cookie comes back.
  private readable(data: Buffer): SessionData | null {
    const session = this.decode(data)
    if (!(session instanceof Error)) return session
    reportSafely(this.onError, new Error(`left out a stored session that could not be decoded: ${session.message}`))
    return null
  }

  // express-session starts a new session when get finds none, and the unreadable
  // row would otherwise sit there until it expires.
  private async discard(sid: string, reason: Error): Promise<void> {
    await this.store.delete(sid)
    reportSafely(this.onError, new Error(`removed a stored session that could not be decoded: ${reason.message}`))
  }
}

/**
 * Runs work and calls back once when a callback is given, else hands back the promise. The
 * callback runs on its own tick, outside the promise chain: an exception it
 * throws reaches the process as an uncaught exception, as with any callback
 * API, instead of vanishing into a rejection or causing a second callback.
 */
function settle<T>(work: () => Promise<T>, callback?: Callback<T>): Promise<T> | void {
  // Checked before the work starts, so a bad call writes nothing.
  if (callback !== undefined && typeof callback !== 'function') {
    throw new TypeError(`callback must be a function, got ${typeOf(callback)}`)
  }
  // Inside a promise: a synchronous throw (a bad argument) becomes a rejection too.
  const result = Promise.resolve().then(work)
  if (callback === undefined) return result
  result.then(
    (value) => process.nextTick(callback, null, value),
    (error) => process.nextTick(callback, error),
  )
}

// A touch moves only the row's expiry (and absoluteTimeout can cap it); the cookie
// in the data still has the expiry of the last set. A session cookie (no expires) stays
// one, and a session without a cookie or with an expires that is no date stays as stored.
/** A top-level value of session plainly differs from what get handed out (lib/merge.ts changesTopLevel). */
function plainlyChanged(read: Read, session: SessionData): boolean {
  return read.returned !== undefined && read.returned !== session && changesTopLevel(read.returned, session)
}

function withStoredExpiry(session: SessionData, expiry: Date): SessionData {
  if (cookieExpiry(session) !== undefined) session.cookie.expires = expiry
  return session
}

/**
 * The date in session.cookie.expires (a Date, or the string or number JSON leaves of one),
 * or undefined when there is no cookie, no expires, or nothing that is a date: such a session lives for ttl,
 * and express-session, not the store, reports the unusable expires. A date past the year 9999 is kept until then.
 */
function cookieExpiry(session: SessionData): Date | undefined {
  const cookie: unknown = (session as { cookie?: unknown }).cookie
  if (!isObject(cookie)) return undefined
  const expires = cookie.expires
  if (!(expires instanceof Date) && typeof expires !== 'string' && typeof expires !== 'number') return undefined
  const time = new Date(expires).getTime()
  if (Number.isNaN(time)) return undefined
  return new Date(Math.min(time, MAX_EXPIRY))
}

/** Calls a function of the caller's on a session, naming only the error it throws: its message may quote the session. */
function callOnSession(name: string, fn: (session: SessionData) => unknown, session: SessionData): unknown {
  try {
    return fn(session)
  } catch (error) {
    throw new TypeError(`${name}() threw ${errorName(error)}, so nothing was written`)
  }
}

function coreOptionsOf(options: PostgresSessionStoreOptions): PostgresStoreOptions {
  const core = Object.fromEntries(CORE_OPTION_NAMES.map((name) => [name, options[name]]))
  // Without an onError of the caller's, the core keeps its own cleanup message.
  return { ...core, onError: options.onError }
}

// The pool the adapter opens for connectionString: reconnects within half a
// second once the database is back (postgres.js waits up to 20 s by default).
// postgres.js is loaded only here, so a pg user need not install it.
function ownPool(connectionString: string, { synchronousCommit = true }: OwnPoolOptions): Sql {
  const postgres: typeof import('postgres') = require('postgres')
  return postgres(connectionString, {
    onnotice: () => {},
    connect_timeout: 5,
    backoff: (attempt: number) => Math.min(0.05 * 2 ** attempt, 0.5),
    connection: synchronousCommit ? {} : { synchronous_commit: 'off' },
  })
}

function checkOptions(options: unknown): asserts options is PostgresSessionStoreOptions {
  if (!isObject(options)) {
    throw new TypeError(`PostgresSessionStore needs an options object such as { sql }, got ${typeOf(options)}`)
  }
  for (const name of Object.keys(options)) {
    if (!OPTION_NAMES.has(name)) throw new TypeError(`unknown option "${name}"`)
  }
  const given = (name: string) => options[name] !== undefined
  const sources = ['sql', 'pool', 'store', 'connectionString'].filter(given)
  if (sources.length !== 1) {
    throw new TypeError(`PostgresSessionStore needs exactly one of sql, pool, store or connectionString, got ${sources.length}`)
  }
  if (given('store')) {
    if (!(options.store instanceof PostgresStore)) {
      throw new TypeError(`store must be a PostgresStore, got ${typeOf(options.store)}`)
    }
    for (const name of CORE_OPTION_NAMES.filter(given)) {
      throw new TypeError(`${name} configures the PostgresStore: set it there, not beside store`)
    }
  }
  if (given('sql') && !isPostgresJs(options.sql)) {
    throw new TypeError(`sql must be a postgres.js instance such as postgres(url), got ${typeOf(options.sql)}`)
  }
  if (given('pool') && !isPgPool(options.pool)) {
    throw new TypeError(`pool must be a node-postgres pool such as new pg.Pool(), got ${typeOf(options.pool)}`)
  }
  if (given('connectionString') && (typeof options.connectionString !== 'string' || options.connectionString === '')) {
    throw new TypeError(`connectionString must be a non-empty string, got ${typeOf(options.connectionString)}`)
  }
  checkTtl(options.ttl)
  checkSerializer(options.serializer)
  if (given('synchronousCommit')) {
    if (typeof options.synchronousCommit !== 'boolean') {
      throw new TypeError(`synchronousCommit must be a boolean, got ${typeOf(options.synchronousCommit)}`)
    }
    if (!given('connectionString')) {
      throw new TypeError('synchronousCommit applies to the pool opened for connectionString; ' +
        "for your own sql, set connection: { synchronous_commit: 'off' } in its options")
    }
  }
  if (given('touchAfter') && !isSeconds(options.touchAfter)) {
    throw new (typeof options.touchAfter === 'number' ? RangeError : TypeError)(
      'touchAfter must be a finite number of seconds, 0 or more',
    )
  }
  if (given('disableTouch') && typeof options.disableTouch !== 'boolean') {
    throw new TypeError(`disableTouch must be a boolean, got ${typeOf(options.disableTouch)}`)
  }
  if (given('onError') && typeof options.onError !== 'function') {
    throw new TypeError(`onError must be a function, got ${typeOf(options.onError)}`)
  }
  if (given('merge') && typeof options.merge !== 'boolean') {
    throw new TypeError(`merge must be a boolean, got ${typeOf(options.merge)}`)
  }
  if (given('owner') && typeof options.owner !== 'function') {
    throw new TypeError(`owner must be a function of the session, got ${typeOf(options.owner)}`)
  }
}

function checkTtl(ttl: unknown): void {
  if (ttl === undefined || typeof ttl === 'function') return
  if (typeof ttl !== 'number') throw new TypeError(`ttl must be a number of seconds or a function, got ${typeOf(ttl)}`)
  if (!isPositiveSeconds(ttl)) throw new RangeError('ttl must be a positive, finite number of seconds')
}

function checkSerializer(serializer: unknown): void {
  if (serializer === undefined) return
  if (!isObject(serializer) || typeof serializer.stringify !== 'function' || typeof serializer.parse !== 'function') {
    throw new TypeError('serializer must be an object with stringify and parse functions, such as JSON')
  }
}

// Only the session itself must be an object: without a cookie, or with an unusable one, it lives for ttl.
function assertSession(session: unknown): asserts session is SessionData {
  if (!isObject(session)) throw new TypeError(`session must be an object, got ${typeOf(session)}`)
}

function isPositiveSeconds(value: unknown): value is number {
  return isSeconds(value) && value > 0
}

function isSeconds(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null
}

function errorName(error: unknown): string {
  return error instanceof Error ? error.name : typeOf(error)
}
