// Records every call a fault test makes: when it started, when it settled,
// and how. A call that has not settled after giveUpMs is recorded as hung, so
// a hang shows up as a failed assertion rather than as a stuck test run.
import { types } from 'node:util'

export interface Call {
  readonly op: string
  readonly startedAt: number
  readonly endedAt: number
  readonly ok: boolean
  readonly error?: unknown
  readonly hung: boolean
}

export class Traffic {
  readonly calls: Call[] = []

  constructor(private readonly giveUpMs: number) {}

  /** Runs fn, records the outcome and resolves either way (never rejects). */
  async record(op: string, fn: () => Promise<unknown>): Promise<Call> {
    const startedAt = Date.now()
    let timer: NodeJS.Timeout | undefined
    const giveUp = new Promise<'hung'>((resolve) => {
      timer = setTimeout(() => resolve('hung'), this.giveUpMs)
    })
    let call: Call
    try {
      const outcome = await Promise.race([fn(), giveUp])
      const hung = outcome === 'hung'
      call = { op, startedAt, endedAt: Date.now(), ok: !hung, hung }
    } catch (error) {
      call = { op, startedAt, endedAt: Date.now(), ok: false, error, hung: false }
    } finally {
      clearTimeout(timer)
    }
    this.calls.push(call)
    return call
  }

  startedBetween(from: number, to: number): Call[] {
    return this.calls.filter((call) => call.startedAt >= from && call.startedAt < to)
  }
}

export const latency = (call: Call) => call.endedAt - call.startedAt

export const maxLatency = (calls: Call[]) => Math.max(0, ...calls.map(latency))

/** Milliseconds from `from` until the first call that started after it succeeded. */
export function recoveryTime(calls: Call[], from: number): number | undefined {
  const successes = calls.filter((call) => call.startedAt >= from && call.ok).map((call) => call.endedAt)
  return successes.length > 0 ? Math.min(...successes) - from : undefined
}

/** Error codes or names and how often each occurred, e.g. { ECONNRESET: 12 }. */
export function errorKinds(calls: Call[]): Record<string, number> {
  const kinds: Record<string, number> = {}
  for (const call of calls) {
    if (call.ok) continue
    const kind = call.hung ? 'hung' : describeError(call.error)
    kinds[kind] = (kinds[kind] ?? 0) + 1
  }
  return kinds
}

function describeError(error: unknown): string {
  // Not instanceof: errors made outside jest's sandbox fail that test.
  if (!types.isNativeError(error)) return typeof error
  return (error as { code?: string }).code ?? error.name
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
