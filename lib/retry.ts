// Which failures a statement can be sent again for, and the loop that does
// it. Every statement of the store may be sent twice (see buildQueries): a
// retry changes nothing a first attempt already did. So a call that failed
// because its server stopped taking writes or went away is retried, on a
// fresh connection, until it succeeds or the caller's deadline comes: a
// planned failover then costs a request some latency, not an error.

import { QueryTimeoutError } from './query-timeout.js'

/** Why a failed statement may be tried again, or null when it may not. */
export type RetryReason = 'deadlock' | 'unavailable' | null

// SQLSTATE 40P01: PostgreSQL aborted this statement to break a deadlock.
const DEADLOCK_DETECTED = '40P01'
// A server that cannot take this statement now, though one may soon:
// 25006 read-only (a standby, or a primary in pg_auto_failover's read-only
// window before a planned failover), 57P01-57P03 shutting down, crashed, or
// starting up and not accepting connections yet.
const UNAVAILABLE_SQLSTATES = new Set(['25006', '57P01', '57P02', '57P03'])
// Class 08: connection exceptions reported by the server.
const CONNECTION_EXCEPTION_CLASS = '08'
// The connection itself failed (Node's socket codes and postgres.js's own).
// CONNECTION_DESTROYED too: postgres.js gives it to the query that opened a
// connection it then dropped for being on a standby (target_session_attrs),
// as well as after sql.end(); a retry after sql.end() meets CONNECTION_ENDED,
// which is not retried (the application ended the pool).
const CONNECTION_ERRORS = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH',
  'CONNECTION_CLOSED', 'CONNECTION_DESTROYED', 'CONNECT_TIMEOUT',
])

// A statement that lost a deadlock lost it to another statement, which is
// done soon: a few immediate tries, not a loop.
const DEADLOCK_ATTEMPTS = 3
// Pauses between tries while the database is unavailable: short at first (a
// read-only window lasts about a second), longer if it lasts.
const FIRST_PAUSE_MS = 25
const MAX_PAUSE_MS = 500

/** Classifies an error from a driver or from PostgreSQL. */
export function retryReason(error: unknown): RetryReason {
  const code = (error as { code?: unknown } | null)?.code
  if (typeof code !== 'string') return null
  if (code === DEADLOCK_DETECTED) return 'deadlock'
  if (UNAVAILABLE_SQLSTATES.has(code) || CONNECTION_ERRORS.has(code)) return 'unavailable'
  if (code.length === 5 && code.startsWith(CONNECTION_EXCEPTION_CLASS)) return 'unavailable'
  return null
}

export interface RetryOptions {
  /** Epoch milliseconds after which no attempt starts; Infinity: no deadline. */
  deadline: number
}

/**
 * Resolves as attempt does; rejects with its error when the error is not
 * retryable, or when the deadline leaves no time for another attempt.
 */
export async function withRetries<T>(attempt: () => Promise<T>, { deadline }: RetryOptions): Promise<T> {
  let deadlocks = 0
  let pause = FIRST_PAUSE_MS
  let unavailable: unknown
  for (;;) {
    try {
      return await attempt()
    } catch (error) {
      const reason = retryReason(error)
      if (reason === 'deadlock' && ++deadlocks < DEADLOCK_ATTEMPTS) continue
      if (reason !== 'unavailable') throw withCause(error, unavailable)
      unavailable = error
      // Jittered, so that many callers retrying at once do not arrive together.
      const wait = pause / 2 + Math.random() * (pause / 2)
      if (Date.now() + wait >= deadline) throw error
      await sleep(wait)
      pause = Math.min(pause * 2, MAX_PAUSE_MS)
    }
  }
}

// A timeout after retries says what was being retried (ECONNREFUSED, 25006, ...)
// as its cause, so "did not answer" does not hide why.
function withCause(error: unknown, cause: unknown): unknown {
  if (cause !== undefined && error instanceof QueryTimeoutError && error.cause === undefined) error.cause = cause
  return error
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
