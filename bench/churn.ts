// The churn mix: many operations over a fixed set of live sessions, as a site
// sees them: 60% get, 25% touch, 10% set, 5% destroy (logout) followed by a
// new session (login) in the same slot. Used by the cost bench and by the
// layout experiments, so both churn the same way.
import { changed, newSession, newSid, type BenchSession } from './sessions.js'
import { measureUntil, type Measurement } from './store-bench.js'

export interface ChurnTarget {
  get(sid: string): Promise<unknown>
  set(sid: string, session: BenchSession): Promise<void>
  touch(sid: string, session: BenchSession): Promise<void>
  destroy(sid: string): Promise<void>
}

export const CHURN_MIX = { get: 0.6, touch: 0.25, set: 0.1, destroy: 0.05 }

export interface ChurnSlots {
  sids: string[]
  sessions: BenchSession[]
}

export function churnSlots(count: number): ChurnSlots {
  return { sids: Array.from({ length: count }, newSid), sessions: Array.from({ length: count }, (_, i) => newSession(i)) }
}

/** Runs `operations` operations of the mix with `concurrency` callers over the slots, which it keeps current. */
export function runChurn(target: ChurnTarget, slots: ChurnSlots, operations: number, concurrency: number): Promise<Measurement> {
  let started = 0
  const { sids, sessions } = slots
  const op = async () => {
    const i = Math.floor(Math.random() * sids.length)
    const r = Math.random()
    if (r < CHURN_MIX.get) return target.get(sids[i])
    if (r < CHURN_MIX.get + CHURN_MIX.touch) return target.touch(sids[i], changed(sessions[i]))
    if (r < 1 - CHURN_MIX.destroy) return target.set(sids[i], (sessions[i] = changed(sessions[i])))
    await target.destroy(sids[i])
    sids[i] = newSid()
    sessions[i] = newSession(i)
    await target.set(sids[i], sessions[i])
  }
  return measureUntil(() => started++ >= operations, op, concurrency)
}
