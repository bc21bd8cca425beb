// Which failures the store sends a statement again for, and within what time.
import { QueryTimeoutError } from '../lib/query-timeout'
import { retryReason, withRetries } from '../lib/retry'

const failure = (code: string) => Object.assign(new Error(`failed with ${code}`), { code })

describe('retryReason', () => {
  test.each([
    ['25006', 'a read-only server: a standby, or a primary about to hand over'],
    ['57P01', 'the server is shutting down (or this connection was terminated)'],
    ['57P02', 'the server crashed'],
    ['57P03', 'the server is starting up'],
    ['08006', 'a connection failure the server reported'],
    ['ECONNREFUSED', 'nothing listens'],
    ['ECONNRESET', 'the connection was cut'],
    ['CONNECTION_CLOSED', 'postgres.js: the connection closed under a query'],
    ['CONNECT_TIMEOUT', 'postgres.js: no connection in time'],
    ['CONNECTION_DESTROYED', 'postgres.js: a new connection dropped for being on a standby'],
  ])('%s is retried: %s', (code) => {
    expect(retryReason(failure(code))).toBe('unavailable')
  })

  test('a deadlock is retried as one', () => {
    expect(retryReason(failure('40P01'))).toBe('deadlock')
  })

  test.each([
    ['CONNECTION_ENDED', 'the application ended the pool'],
    ['23505', 'a unique violation'],
    ['42P01', 'a missing table'],
    ['QUERY_TIMEOUT', 'the caller\'s deadline is up'],
  ])('%s is not retried: %s', (code) => {
    expect(retryReason(failure(code))).toBeNull()
  })

  test('errors without a code, and non-errors, are not retried', () => {
    expect(retryReason(new Error('boom'))).toBeNull()
    expect(retryReason(null)).toBeNull()
    expect(retryReason('25006')).toBeNull()
  })
})

describe('withRetries', () => {
  test('a timeout that ends the retries names what was being retried as its cause', async () => {
    let attempts = 0
    const outcome = withRetries(async () => {
      if (++attempts === 1) throw failure('ECONNREFUSED')
      throw new QueryTimeoutError(100)
    }, { deadline: Date.now() + 5000 })
    const error = await outcome.catch((caught: unknown) => caught)
    expect(error).toBeInstanceOf(QueryTimeoutError)
    expect((error as Error).cause).toMatchObject({ code: 'ECONNREFUSED' })
  })

  test('a timeout with nothing retried before it has no cause', async () => {
    const error = await withRetries(async () => {
      throw new QueryTimeoutError(100)
    }, { deadline: Date.now() + 5000 }).catch((caught: unknown) => caught)
    expect((error as Error).cause).toBeUndefined()
  })

  test('an unavailable server is tried again until the statement succeeds', async () => {
    let attempts = 0
    const result = await withRetries(async () => {
      if (++attempts < 4) throw failure('25006')
      return 'written'
    }, { deadline: Date.now() + 5000 })
    expect(result).toBe('written')
    expect(attempts).toBe(4)
  })

  test('at the deadline, the last error is the caller\'s', async () => {
    const started = Date.now()
    let attempts = 0
    const outcome = withRetries(async () => {
      attempts++
      throw failure('57P03')
    }, { deadline: started + 300 })
    await expect(outcome).rejects.toMatchObject({ code: '57P03' })
    expect(Date.now() - started).toBeLessThan(300 + 100)
    expect(attempts).toBeGreaterThan(1)
  })

  test('an error that is not retryable is thrown at once', async () => {
    let attempts = 0
    const outcome = withRetries(async () => {
      attempts++
      throw failure('23505')
    }, { deadline: Date.now() + 5000 })
    await expect(outcome).rejects.toMatchObject({ code: '23505' })
    expect(attempts).toBe(1)
  })

  test('a deadlock is tried three times, without waiting for the deadline', async () => {
    let attempts = 0
    const outcome = withRetries(async () => {
      attempts++
      throw failure('40P01')
    }, { deadline: Infinity })
    await expect(outcome).rejects.toMatchObject({ code: '40P01' })
    expect(attempts).toBe(3)
  })
})
