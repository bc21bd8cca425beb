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

import type { Entry } from './postgres-store.js'
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
    if (!(Number.isInteger(maxInFlight) || maxInFlight === Infinity) || maxInFlight < 1) {
      throw new RangeError('maxInFlight must be a whole number from 1, or Infinity (no batching)')
    }
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

// --- What the core batches ---------------------------------------------------
// Each coalescer takes the parameters of one of the core's single-row
// statements, exactly as the core passes them to `run`, and resolves to what
// the core reads back from `run` for that statement. The SQL, single and
// batched (`findMany`...), lives with the rest in the core's buildQueries.

/** Runs one prepared statement and resolves to its rows and row count: the core's `run`. */
export type RunQuery = <Row extends object>(query: string, params: unknown[]) => Promise<Row[] & { count: number }>


/** The core's `find` parameters: the stored key. */
export type FindParams = [key: string]
/** The core's `commit` parameters. absoluteTimeout is one store setting, the same in every call. */
export type CommitParams = [key: string, data: Buffer, expiry: Date, owner: string | null, absoluteTimeout: number | null]
/** The core's `touch` parameters. */
export type TouchParams = [expiry: Date, key: string, absoluteTimeout: number | null]
/** The core's `delete` parameters. */
export type DeleteParams = [key: string]

/** Finds: each caller gets the rows its single find would give (its row, or none). */
export function findCoalescer(run: RunQuery, single: string, many: string, options: CoalescerOptions = {}) {
  return new Coalescer<FindParams, Entry[]>(async (inputs) => {
    if (inputs.length === 1) return [await run<Entry>(single, inputs[0])]
    const keys = inputs.map(([key]) => key)
    const rows = await run<Entry & { token: string }>(many, [textArray(unique(keys))])
    const found = new Map(rows.map((row) => [row.token, { data: row.data, expiry: row.expiry }]))
    return keys.map((key) => (found.has(key) ? [found.get(key)!] : []))
  }, options)
}

/** Commits: one upsert for the batch; a key committed twice keeps the later call's values. */
export function commitCoalescer(run: RunQuery, single: string, many: string, options: CoalescerOptions = {}) {
  return new Coalescer<CommitParams, void>(async (inputs) => {
    if (inputs.length === 1) {
      await run(single, inputs[0])
    } else {
      const latest = latestPerKey(inputs, ([key]) => key)
      await run(many, [
        textArray(latest.map(([key]) => key)),
        textArray(latest.map(([, data]) => '\\x' + data.toString('hex'))),
        textArray(latest.map(([, , expiry]) => expiry.toISOString())),
        textArray(latest.map(([, , , owner]) => owner)),
        inputs[0][4],
      ])
    }
    return inputs.map(() => undefined)
  }, options)
}

/** Touches: one UPDATE for the batch; each caller gets the count its single touch would (1 or 0). */
export function touchCoalescer(run: RunQuery, single: string, many: string, options: CoalescerOptions = {}) {
  return new Coalescer<TouchParams, { count: number }>(async (inputs) => {
    if (inputs.length === 1) return [{ count: (await run(single, inputs[0])).count }]
    const latest = latestPerKey(inputs, ([, key]) => key)
    const rows = await run<{ token: string }>(many, [
      textArray(latest.map(([, key]) => key)),
      textArray(latest.map(([expiry]) => expiry.toISOString())),
      inputs[0][2],
    ])
    const touched = new Set(rows.map((row) => row.token))
    return inputs.map(([, key]) => ({ count: touched.has(key) ? 1 : 0 }))
  }, options)
}

/** Deletes (or tombstones): one statement for the batch; missing keys are fine. */
export function deleteCoalescer(run: RunQuery, single: string, many: string, options: CoalescerOptions = {}) {
  return new Coalescer<DeleteParams, void>(async (inputs) => {
    if (inputs.length === 1) await run(single, inputs[0])
    else await run(many, [textArray(unique(inputs.map(([key]) => key)))])
    return inputs.map(() => undefined)
  }, options)
}

// Sorted, so two batches changing overlapping keys (from two processes) lock
// rows in the same order and cannot deadlock each other.
function latestPerKey<T>(inputs: readonly T[], keyOf: (input: T) => string): T[] {
  const byKey = new Map<string, T>()
  for (const input of inputs) byKey.set(keyOf(input), input)
  return [...byKey.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, input]) => input)
}

// Sorted too, for the same reason as latestPerKey.
function unique(values: readonly string[]): string[] {
  return [...new Set(values)].sort()
}

/**
 * A PostgreSQL array literal with every element quoted, null as NULL. Sent as
 * a plain string, it needs no array type support from the driver. Elements
 * must not contain NUL (keys are checked for it; hex and ISO dates never do).
 */
export function textArray(values: readonly (string | null)[]): string {
  const element = (value: string | null) => (value === null ? 'NULL' : '"' + value.replace(/[\\"]/g, '\\$&') + '"')
  return '{' + values.map(element).join(',') + '}'
}
