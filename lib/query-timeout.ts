// postgres.js has no query timeout. A query on a connection whose network is
// gone waits forever (porsager/postgres#1089), and so does one sent in the
// instant between a connection's reset and its close (#1130). A session store
// must answer each request, so every statement the store sends gets a deadline.

export class QueryTimeoutError extends Error {
  readonly code = 'QUERY_TIMEOUT'

  constructor(ms: number) {
    super(`the database did not answer within ${ms} ms (queryTimeout)`)
    this.name = 'QueryTimeoutError'
  }
}

/**
 * Settles as query does, or rejects with a QueryTimeoutError after ms (0: no
 * deadline). It does not cancel the query: postgres.js's cancel() opens a connection whose failure, in an outage, rejects unhandled.
 */
export function withTimeout<T>(query: PromiseLike<T>, ms: number): Promise<T> {
  if (ms === 0) return Promise.resolve(query)
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new QueryTimeoutError(ms)), ms)
  })
  return Promise.race([query, deadline]).finally(() => clearTimeout(timer))
}

/** The epoch milliseconds ms from now: Infinity for 0, which waits forever (as queryTimeout: 0 does). */
export function deadlineAfter(ms: number): number {
  return ms === 0 ? Infinity : Date.now() + ms
}
