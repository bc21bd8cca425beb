// Coalescing: while one statement of a kind is in flight, further calls of
// that kind queue; when it settles, everything queued goes out as ONE
// statement. A call that arrives alone goes out at once, so nothing waits on
// a timer and a quiet store sees no added latency. Under load, one round trip
// (and, for writes, one WAL flush) then serves many callers: that is how the
// store gets past the one-statement-per-operation ceiling.
//
// Ordering: calls of one kind and one key reach the database in arrival
// order. With one batch in flight (the default) that holds for all calls of a
// kind; with more (the core lets two write batches overlap, so one executes
// while the other waits for its WAL flush), a call whose key is in a batch in
// flight waits for that batch, and other calls go ahead. Calls of different
// kinds that neither caller awaited (a commit and a delete of the same token)
// may reach it in either order, as they may through any pool.

import type { VersionedEntry } from './postgres-store.js'
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
   * Infinity: every call goes out alone, at once (no batching).
   */
  maxInFlight?: number
}

export interface KeyedCoalescerOptions<Input> extends CoalescerOptions {
  /** The key of an input: with several batches in flight, a call waits while its key is in one. */
  keyOf?: (input: Input) => string
}

export class Coalescer<Input, Output> {
  private queue: Waiting<Input, Output>[] = []
  private inFlight = 0
  private readonly maxInFlight: number
  private readonly keyOf: ((input: Input) => string) | undefined
  // Keys in batches in flight, with how many of those batches hold each.
  private readonly busyKeys = new Map<string, number>()

  constructor(private readonly runBatch: RunBatch<Input, Output>, options: KeyedCoalescerOptions<Input> = {}) {
    if (typeof runBatch !== 'function') throw new TypeError('Coalescer needs a function that runs one batch')
    const { maxInFlight = 1, keyOf } = options
    if (typeof maxInFlight !== 'number') throw new TypeError(`maxInFlight must be a number, got ${typeOf(maxInFlight)}`)
    if (!(Number.isInteger(maxInFlight) || maxInFlight === Infinity) || maxInFlight < 1) {
      throw new RangeError('maxInFlight must be a whole number from 1, or Infinity (no batching)')
    }
    this.maxInFlight = maxInFlight
    // Keys matter only while batches overlap: one at a time keeps arrival order
    // by itself, and without batching (Infinity) calls race as through any pool.
    this.keyOf = maxInFlight === 1 || maxInFlight === Infinity ? undefined : keyOf
  }

  /** Resolves to this input's output, or rejects with the error of the batch it went out in. */
  run(input: Input): Promise<Output> {
    return new Promise<Output>((resolve, reject) => {
      this.queue.push({ input, resolve, reject })
      if (this.inFlight < this.maxInFlight) this.sendQueued()
    })
  }

  private sendQueued(): void {
    const batch = this.takeSendable()
    if (batch.length === 0) return
    const keys = this.keyOf === undefined ? [] : batch.map((waiting) => this.keyOf!(waiting.input))
    for (const key of keys) this.busyKeys.set(key, (this.busyKeys.get(key) ?? 0) + 1)
    this.inFlight++
    this.settle(batch).then(() => {
      for (const key of keys) {
        const left = this.busyKeys.get(key)! - 1
        if (left === 0) this.busyKeys.delete(key)
        else this.busyKeys.set(key, left)
      }
      this.inFlight--
      // One batch takes every call that may go; the rest wait for their key's batch.
      this.sendQueued()
    })
  }

  // The queued calls that may go now, in arrival order; those whose key is in
  // a batch in flight stay queued, in order, behind it.
  private takeSendable(): Waiting<Input, Output>[] {
    if (this.busyKeys.size === 0) {
      const all = this.queue
      this.queue = []
      return all
    }
    const ready: Waiting<Input, Output>[] = []
    const held: Waiting<Input, Output>[] = []
    for (const waiting of this.queue) (this.busyKeys.has(this.keyOf!(waiting.input)) ? held : ready).push(waiting)
    this.queue = held
    return ready
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
  return new Coalescer<FindParams, VersionedEntry[]>(async (inputs) => {
    if (inputs.length === 1) return [await run<VersionedEntry>(single, inputs[0])]
    const keys = inputs.map(([key]) => key)
    const rows = await run<VersionedEntry & { token: string }>(many, [textArray(unique(keys))])
    const found = new Map(rows.map(({ token, ...row }) => [token, row]))
    return keys.map((key) => (found.has(key) ? [found.get(key)!] : []))
  }, { ...options, keyOf: ([key]) => key })
}

/** Commits: one upsert for the batch; a key committed twice keeps the later call's values. */
export function commitCoalescer(run: RunQuery, single: string, many: string, options: CoalescerOptions = {}) {
  return new Coalescer<CommitParams, void>(async (inputs) => {
    if (inputs.length === 1) await run(single, inputs[0])
    else await run(many, commitArrays(latestPerKey(inputs, ([key]) => key)))
    return inputs.map(() => undefined)
  }, { ...options, keyOf: ([key]) => key })
}

/** The core's `commitIfVersion` parameters: commit's, and the version the caller read. */
export type ConditionalCommitParams = [...CommitParams, version: string]

/** The row a conditional commit lost to, as stored (data still sealed). */
export interface CurrentRow {
  data: Buffer
  expiry: Date
  version: string
  destroyed: boolean
  /** Not expired, not destroyed. */
  active: boolean
}

/** Written, with the row's new version; or not, with the row that is there (null: none). */
export type ConditionalCommitOutput = { version: string } | { current: CurrentRow | null }

interface ConditionalQueries {
  commitIfVersion: string
  commitIfVersionMany: string
  current: string
  currentMany: string
}

/**
 * Conditional commits: one upsert per batch, and for the calls that lost, one
 * read of the rows they lost to. A statement cannot change one row twice, so
 * the second write of a key in a batch goes in a second statement after the
 * first, and so on: in arrival order, each against the version its caller read.
 */
export function conditionalCommitCoalescer(run: RunQuery, queries: ConditionalQueries, options: CoalescerOptions = {}) {
  const write = async (inputs: ConditionalCommitParams[]): Promise<Map<string, string>> => {
    const rows = inputs.length === 1
      ? await run<{ token: string; version: string }>(queries.commitIfVersion, inputs[0])
      : await run<{ token: string; version: string }>(queries.commitIfVersionMany, [
          ...commitArrays(inputs), textArray(inputs.map(([, , , , , version]) => version)),
        ])
    return new Map(rows.map((row) => [row.token, row.version]))
  }
  const read = async (keys: string[]): Promise<Map<string, CurrentRow>> => {
    if (keys.length === 0) return new Map()
    const rows = keys.length === 1
      ? await run<CurrentRow & { token: string }>(queries.current, keys)
      : await run<CurrentRow & { token: string }>(queries.currentMany, [textArray(keys)])
    return new Map(rows.map(({ token, ...row }) => [token, row]))
  }
  return new Coalescer<ConditionalCommitParams, ConditionalCommitOutput>(async (inputs) => {
    const outputs: ConditionalCommitOutput[] = []
    for (const round of rounds(inputs.map((input, index) => ({ input, index })), ({ input: [key] }) => key)) {
      const written = await write(round.map(({ input }) => input))
      const current = await read(round.map(({ input: [key] }) => key).filter((key) => !written.has(key)))
      for (const { input: [key], index } of round) {
        outputs[index] = written.has(key) ? { version: written.get(key)! } : { current: current.get(key) ?? null }
      }
    }
    return outputs
  }, { ...options, keyOf: ([key]) => key })
}

// The array parameters of a batched commit ($1-$5), one element per input.
function commitArrays(inputs: readonly CommitParams[] | readonly ConditionalCommitParams[]): unknown[] {
  return [
    textArray(inputs.map(([key]) => key)),
    byteaArray(inputs.map(([, data]) => data)),
    textArray(inputs.map(([, , expiry]) => expiry.toISOString())),
    textArray(inputs.map(([, , , owner]) => owner)),
    inputs[0][4],
  ]
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
  }, { ...options, keyOf: ([, key]) => key })
}

/** Deletes (or tombstones): one statement for the batch; missing keys are fine. */
export function deleteCoalescer(run: RunQuery, single: string, many: string, options: CoalescerOptions = {}) {
  return new Coalescer<DeleteParams, void>(async (inputs) => {
    if (inputs.length === 1) await run(single, inputs[0])
    else await run(many, [textArray(unique(inputs.map(([key]) => key)))])
    return inputs.map(() => undefined)
  }, { ...options, keyOf: ([key]) => key })
}

// Sorted, so two batches changing overlapping keys (from two processes) lock
// rows in the same order and cannot deadlock each other.
function latestPerKey<T>(inputs: readonly T[], keyOf: (input: T) => string): T[] {
  const byKey = new Map<string, T>()
  for (const input of inputs) byKey.set(keyOf(input), input)
  return sortedByKey([...byKey.values()], keyOf)
}

// Splits inputs so that no key occurs twice in one part: the k-th input of a
// key goes to part k. Each part sorted by key, for the same reason as latestPerKey.
function rounds<T>(inputs: readonly T[], keyOf: (input: T) => string): T[][] {
  const parts: T[][] = []
  const seen = new Map<string, number>()
  for (const input of inputs) {
    const key = keyOf(input)
    const part = seen.get(key) ?? 0
    seen.set(key, part + 1)
    ;(parts[part] ??= []).push(input)
  }
  return parts.map((part) => sortedByKey(part, keyOf))
}

function sortedByKey<T>(inputs: T[], keyOf: (input: T) => string): T[] {
  return inputs.sort((a, b) => (keyOf(a) < keyOf(b) ? -1 : keyOf(a) > keyOf(b) ? 1 : 0))
}

// Sorted too, for the same reason as latestPerKey.
function unique(values: readonly string[]): string[] {
  return [...new Set(values)].sort()
}

/** A bytea[] parameter, as a textArray of hex escapes. */
export function byteaArray(values: readonly Buffer[]): string {
  return textArray(values.map((value) => '\\x' + value.toString('hex')))
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
