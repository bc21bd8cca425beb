// Coalescing: while one statement of a kind is in flight, further calls of
// that kind queue; when it settles, everything queued goes out as ONE
// statement. A call that arrives alone goes out at once, so nothing waits on
// a timer and a quiet store sees no added latency. Under load, one round trip
// (and, for writes, one WAL flush) then serves many callers: that is how the
// store gets past the one-statement-per-operation ceiling.
//
// Ordering: with one batch in flight (the default), calls of one kind reach
// the database in arrival order. Calls that neither caller awaited (a commit
// and a delete of the same token, or two commits with maxInFlight > 1) may
// reach it in either order, as they may through any pool.

import { typeOf } from './validate.js'

/** Runs one batch: one output per input, in the same order. */
export type RunBatch<Input, Output> = (inputs: readonly Input[]) => Promise<readonly Output[]>

interface Waiting<Input, Output> {
  input: Input
  resolve: (output: Output) => void
  reject: (error: unknown) => void
}

export interface CoalescerOptions {
  /**
   * Batches of this kind allowed in flight at once; default 1. More lets a
   * pool work on several batches at once, at the price of smaller batches.
   */
  maxInFlight?: number
}

export class Coalescer<Input, Output> {
  private queue: Waiting<Input, Output>[] = []
  private inFlight = 0
  private readonly maxInFlight: number

  constructor(private readonly runBatch: RunBatch<Input, Output>, options: CoalescerOptions = {}) {
    if (typeof runBatch !== 'function') throw new TypeError('Coalescer needs a function that runs one batch')
    const { maxInFlight = 1 } = options
    if (typeof maxInFlight !== 'number') throw new TypeError(`maxInFlight must be a number, got ${typeOf(maxInFlight)}`)
    if (!Number.isInteger(maxInFlight) || maxInFlight < 1) throw new RangeError('maxInFlight must be a whole number from 1')
    this.maxInFlight = maxInFlight
  }

  /** Resolves to this input's output, or rejects with the error of the batch it went out in. */
  run(input: Input): Promise<Output> {
    return new Promise<Output>((resolve, reject) => {
      this.queue.push({ input, resolve, reject })
      if (this.inFlight < this.maxInFlight) this.sendQueued()
    })
  }

  private sendQueued(): void {
    if (this.queue.length === 0) return
    const batch = this.queue
    this.queue = []
    this.inFlight++
    this.settle(batch).then(() => {
      this.inFlight--
      this.sendQueued()
    })
  }

  // Never rejects: every caller hears the outcome, then the next batch goes.
  private async settle(batch: Waiting<Input, Output>[]): Promise<void> {
    try {
      const outputs = await this.runBatch(batch.map((waiting) => waiting.input))
      if (outputs.length !== batch.length) {
        throw new Error(`a batch of ${batch.length} calls produced ${outputs.length} results`)
      }
      batch.forEach((waiting, i) => waiting.resolve(outputs[i]))
    } catch (error) {
      for (const waiting of batch) waiting.reject(error)
    }
  }
}

// --- What the core batches, and its SQL -----------------------------------

/** Runs one prepared statement and resolves to its rows and row count: the core's `run`. */
export type RunQuery = <Row extends object>(query: string, params: unknown[]) => Promise<Row[] & { count: number }>

export interface Entry {
  data: Buffer
  expiry: Date
}

export interface CommitInput extends Entry {
  token: string
}

export interface TouchInput {
  token: string
  expiry: Date
}

/** The core's single-row statements (its buildQueries), which a batch of one still uses. */
export interface SingleQueries {
  findEntry: string
  commit: string
  delete: string
  touch: string
}

/**
 * The batched statements, for a table name already quoted. Arrays travel as
 * PostgreSQL array literals (see textArray), so they work whatever the
 * postgres.js instance's type settings (fetch_types: false included).
 */
export function batchedQueries(table: string) {
  return {
    findEntries: `SELECT token, data, expiry FROM ${table} WHERE token = ANY($1::text[]) AND expiry > now()`,
    // One statement cannot update the same row twice: the coalescers dedupe first.
    commitMany:
      `INSERT INTO ${table} (token, data, expiry) ` +
      'SELECT * FROM unnest($1::text[], $2::bytea[], $3::timestamptz[]) ' +
      'ON CONFLICT (token) DO UPDATE SET data = EXCLUDED.data, expiry = EXCLUDED.expiry',
    deleteMany: `DELETE FROM ${table} WHERE token = ANY($1::text[])`,
    touchMany:
      `UPDATE ${table} AS t SET expiry = v.expiry ` +
      'FROM unnest($1::text[], $2::timestamptz[]) AS v(token, expiry) ' +
      'WHERE t.token = v.token AND t.expiry > now() RETURNING t.token',
  }
}

export type BatchedQueries = ReturnType<typeof batchedQueries>

/** Finds: each caller gets its token's data and expiry, or null when missing or expired. */
export function findCoalescer(run: RunQuery, single: SingleQueries, many: BatchedQueries, options: CoalescerOptions = {}) {
  return new Coalescer<string, Entry | null>(async (tokens) => {
    if (tokens.length === 1) {
      const rows = await run<Entry>(single.findEntry, [tokens[0]])
      return [rows.length > 0 ? { data: rows[0].data, expiry: rows[0].expiry } : null]
    }
    const rows = await run<Entry & { token: string }>(many.findEntries, [textArray(unique(tokens))])
    const found = new Map(rows.map((row) => [row.token, row]))
    return tokens.map((token) => {
      const row = found.get(token)
      return row === undefined ? null : { data: row.data, expiry: row.expiry }
    })
  }, options)
}

/** Commits: one upsert for the batch; a token committed twice keeps the later call's values. */
export function commitCoalescer(run: RunQuery, single: SingleQueries, many: BatchedQueries, options: CoalescerOptions = {}) {
  return new Coalescer<CommitInput, void>(async (inputs) => {
    if (inputs.length === 1) {
      const { token, data, expiry } = inputs[0]
      await run(single.commit, [token, data, expiry])
    } else {
      const latest = latestPerToken(inputs)
      await run(many.commitMany, [
        textArray(latest.map((input) => input.token)),
        textArray(latest.map((input) => '\\x' + input.data.toString('hex'))),
        textArray(latest.map((input) => input.expiry.toISOString())),
      ])
    }
    return inputs.map(() => undefined)
  }, options)
}

/** Deletes: one statement for the batch; missing tokens are fine. */
export function deleteCoalescer(run: RunQuery, single: SingleQueries, many: BatchedQueries, options: CoalescerOptions = {}) {
  return new Coalescer<string, void>(async (tokens) => {
    if (tokens.length === 1) await run(single.delete, [tokens[0]])
    else await run(many.deleteMany, [textArray(unique(tokens))])
    return tokens.map(() => undefined)
  }, options)
}

/**
 * Touches: one UPDATE of expiries for the batch; each caller learns whether its
 * token's row was active and moved. A token touched twice gets the later expiry.
 */
export function touchCoalescer(run: RunQuery, single: SingleQueries, many: BatchedQueries, options: CoalescerOptions = {}) {
  return new Coalescer<TouchInput, boolean>(async (inputs) => {
    if (inputs.length === 1) {
      const result = await run(single.touch, [inputs[0].expiry, inputs[0].token])
      return [result.count > 0]
    }
    const latest = latestPerToken(inputs)
    const rows = await run<{ token: string }>(many.touchMany, [
      textArray(latest.map((input) => input.token)),
      textArray(latest.map((input) => input.expiry.toISOString())),
    ])
    const touched = new Set(rows.map((row) => row.token))
    return inputs.map((input) => touched.has(input.token))
  }, options)
}

// Sorted, so two batches upserting overlapping tokens from two processes lock
// rows in the same order and cannot deadlock each other.
function latestPerToken<T extends { token: string }>(inputs: readonly T[]): T[] {
  const byToken = new Map<string, T>()
  for (const input of inputs) byToken.set(input.token, input)
  return [...byToken.values()].sort((a, b) => (a.token < b.token ? -1 : a.token > b.token ? 1 : 0))
}

function unique(values: readonly string[]): string[] {
  return [...new Set(values)]
}

/**
 * A PostgreSQL array literal with every element quoted. Sent as a plain
 * string, it needs no array type support from the driver. Elements must not
 * contain NUL (tokens are checked for it; hex and ISO dates never do).
 */
export function textArray(values: readonly string[]): string {
  return '{' + values.map((value) => '"' + value.replace(/[\\"]/g, '\\$&') + '"').join(',') + '}'
}
