// Carries what a request's get read to the set that request makes later, for
// frameworks that copy what get returned into a session object of their own
// (@fastify/session): that object is new to the store, but the request goes on
// inside get's callback, so an AsyncLocalStorage entered there reaches its set.
//
// On Node 20 an AsyncLocalStorage in use slows every promise of the process
// (an await loop ran 2.4x slower here), so it is in use only while a store
// may need it: from its construction until it sees express-session build
// req.session through createSession (express-session needs no context) or closes.
import { AsyncLocalStorage } from 'node:async_hooks'

const context = new AsyncLocalStorage<unknown>()
const needing = new Set<object>()

/** Marks store as one that may need the context (or not any more). */
export function needsReadContext(store: object, needs: boolean): void {
  if (needs) return void needing.add(store)
  if (needing.delete(store) && needing.size === 0) context.disable()
}

/** Calls callback(...args) with read as the current read, when store needs the context; else just calls it. */
export function runWithRead<Args extends unknown[]>(store: object, read: unknown, callback: (...args: Args) => void, ...args: Args): void {
  if (needing.has(store)) context.run(read, callback, ...args)
  else callback(...args)
}

/** The read of the get whose callback the caller runs in, if any. */
export function currentRead(): unknown {
  return context.getStore()
}

/** True while some store may need the context (for tests). */
export function readContextInUse(): boolean {
  return needing.size > 0
}
