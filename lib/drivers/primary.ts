// Keeps a postgres.js pool on the primary. With a multi-host URL, postgres.js
// is meant to pick the primary itself (target_session_attrs), but on
// PostgreSQL 14+ `read-write` accepts a hot standby, and after a fault
// `primary` may skip its check (porsager/postgres#1223, #1215). A connection
// on a standby serves stale reads (a logout not replicated yet) and fails
// every write with 25006. So the store checks the pool itself, after any
// fault and whenever a connection has closed (its replacement may land
// anywhere): one check per connection, sent all at once so that each lands
// on a different idle or new connection. On a standby the check ends its own
// connection, and postgres.js reconnects it to the next host on next use.
// (Not sql.reserve(): in postgres.js 3.4.9 a reserve whose connection
// attempt fails stays queued, and later swallows a healthy connection.)
import type { Sql } from 'postgres'
import { withTimeout } from '../query-timeout.js'

// Connection handling, not the store's SQL: asks the server whether it is a
// standby, and if so terminates this very connection (57P01 to the caller).
const CHECK_AND_DROP_IF_STANDBY =
  'SELECT pg_is_in_recovery() AS standby, CASE WHEN pg_is_in_recovery() THEN pg_terminate_backend(pg_backend_pid()) END AS dropped'

// A check round waits at most this long: a connection that does not answer
// is left unchecked (and checked again before the next statement) rather
// than holding up every statement until its deadline.
const CHECK_TIMEOUT_MS = 2000

/** Where the pool stood when a statement went out; see PrimaryGuard.settled. */
export interface Mark {
  closes: number
  standbys: number
}

export class PrimaryGuard {
  // Set when a connection closed since the last clean check: its replacement is unchecked.
  private unchecked = true
  private checking: Promise<void> | null = null
  // Connections closed, and checks that found a standby (or got no answer), so far.
  private closes = 0
  private standbys = 0

  constructor(private readonly sql: Sql<any>) {
    // postgres.js reads options.onclose at each close, so wrapping it here
    // sees every close while keeping the application's own handler.
    const options = sql.options as { onclose?: (id: number) => void }
    const own = options.onclose
    options.onclose = (id) => {
      this.unchecked = true
      this.closes++
      own?.(id)
    }
  }

  /** Checks the pool first if a connection may have changed server since the last check. Never rejects. */
  ensurePrimary(deadline: number): Promise<void> {
    if (!this.unchecked) return Promise.resolve()
    this.checking ??= this.checkAll(deadline).finally(() => (this.checking = null))
    return this.checking
  }

  /** A statement failed as a standby's or a lost server's would: check the pool before the next. */
  suspect(): void {
    this.unchecked = true
  }

  mark(): Mark {
    return { closes: this.closes, standbys: this.standbys }
  }

  /**
   * Resolves to whether a statement sent at mark can be trusted to have run
   * on the primary. postgres.js sends a queued statement on a reopened
   * connection before anyone can check it: when a connection closed since
   * mark, the pool is checked now, and a standby found means the answer may
   * have come from it (a stale read): the caller sends the statement again.
   */
  async settled(mark: Mark, deadline: number): Promise<boolean> {
    if (this.closes === mark.closes && this.standbys === mark.standbys) return true
    await this.ensurePrimary(deadline)
    return this.standbys === mark.standbys
  }

  // Clean when every check answered from a primary; otherwise the pool stays
  // unchecked, and the next call checks again.
  private async checkAll(deadline: number): Promise<void> {
    this.unchecked = false
    const left = Math.max(1, Math.min(CHECK_TIMEOUT_MS, deadline - Date.now()))
    const checks = Array.from({ length: this.sql.options.max }, async () => {
      try {
        const [row] = await withTimeout(this.sql.unsafe<{ standby: boolean }[]>(CHECK_AND_DROP_IF_STANDBY), left)
        return row !== undefined && !row.standby
      } catch {
        return false
      }
    })
    const clean = (await Promise.all(checks)).every(Boolean)
    if (!clean) {
      this.unchecked = true
      this.standbys++
    }
  }
}
