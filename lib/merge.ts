// Merging concurrent changes of one session: a three-way merge of plain
// objects, as parsed from the store. base is what a request read, ours what it
// saves, theirs what another request saved meanwhile. Pure functions: no I/O,
// nothing mutated.
//
// The rule, key by key, recursively through plain objects:
// - a key only one side changed takes that side's value (a deletion too);
// - a key both sides changed takes ours, except that a deletion loses to a
//   change: a key deleted on one side stays deleted unless the other changed it;
// - when both sides hold plain objects under a key, their keys merge by the same rule;
// - arrays and every other value are taken whole.

type Value = unknown
type PlainObject = Record<string, Value>

// A key that is not there, on one side or in the result.
const ABSENT: unique symbol = Symbol('absent')
type Maybe = Value | typeof ABSENT

/** base, ours and theirs merged by the rule above. */
export function merge(base: Value, ours: Value, theirs: Value): Value {
  return mergeValues(base, ours, theirs) as Value
}

/**
 * A session merged by the rule, with the cookie taken from ours: the request
 * that saves decides the cookie (its expiry, its settings), or that there is none.
 */
export function mergeSessions(base: Value, ours: PlainObject, theirs: Value): PlainObject {
  const merged = merge(base, ours, theirs)
  // A theirs that is not an object (a custom serializer's value) is taken whole, by ours.
  if (!isPlainObject(merged)) return ours
  const { cookie: _, ...rest } = merged
  return Object.hasOwn(ours, 'cookie') ? { ...rest, cookie: ours.cookie } : rest
}

function mergeValues(base: Maybe, ours: Maybe, theirs: Maybe): Maybe {
  if (same(ours, base)) return theirs
  if (same(theirs, base) || same(ours, theirs)) return ours
  // Both changed. A deletion yields to the other side's change.
  if (ours === ABSENT) return theirs
  if (theirs === ABSENT) return ours
  if (isPlainObject(ours) && isPlainObject(theirs)) {
    // Both made (or changed) an object here: a missing base is an empty one.
    return mergeObjects(isPlainObject(base) ? base : {}, ours, theirs)
  }
  return ours
}

function mergeObjects(base: PlainObject, ours: PlainObject, theirs: PlainObject): PlainObject {
  const merged: PlainObject = {}
  // Ours first, so the result keeps the key order of the session being saved.
  const keys = new Set([...Object.keys(ours), ...Object.keys(theirs), ...Object.keys(base)])
  for (const key of keys) {
    const value = mergeValues(entry(base, key), entry(ours, key), entry(theirs, key))
    if (value !== ABSENT) define(merged, key, value)
  }
  return merged
}

/**
 * True when a and b hold the same JSON-like value: plain objects with the same
 * keys (in any order) and equal values, equal arrays, equal primitives, Dates
 * of the same time. Other objects are equal only to themselves.
 */
export function equal(a: Value, b: Value): boolean {
  return same(a, b)
}

function same(a: Maybe, b: Maybe): boolean {
  if (Object.is(a, b)) return true
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((value, i) => same(value, b[i]))
  }
  if (a instanceof Date && b instanceof Date) return a.getTime() === b.getTime()
  if (!isPlainObject(a) || !isPlainObject(b)) return false
  const keys = Object.keys(a)
  return keys.length === Object.keys(b).length && keys.every((key) => Object.hasOwn(b, key) && same(a[key], b[key]))
}

/**
 * True when a key other than the cookie holds, in after, a value that plainly
 * differs from before's (not the same, and one of them no object): a change
 * seen without decoding or comparing deeply. False says nothing: keys only one
 * side has, and objects, need equal() on the decoded sessions.
 */
export function changesTopLevel(before: object, after: object): boolean {
  const [was, now] = [before as PlainObject, after as PlainObject]
  for (const key of Object.keys(was)) {
    if (key === 'cookie' || !Object.hasOwn(now, key)) continue
    if (!Object.is(was[key], now[key]) && (!isObjectValue(was[key]) || !isObjectValue(now[key]))) return true
  }
  return false
}

function isObjectValue(value: Value): boolean {
  return typeof value === 'object' && value !== null
}

/**
 * An object made by a literal or JSON.parse (or with no prototype), not an
 * instance of a class. Any realm's Object.prototype counts (structuredClone and vm make such objects).
 */
export function isPlainObject(value: Value): value is PlainObject {
  if (typeof value !== 'object' || value === null) return false
  const prototype = Object.getPrototypeOf(value)
  return prototype === null || Object.getPrototypeOf(prototype) === null
}

function entry(object: PlainObject, key: string): Maybe {
  return Object.hasOwn(object, key) ? object[key] : ABSENT
}

// defineProperty, not assignment: a key named "__proto__" (JSON.parse makes
// such own keys) stays a key instead of replacing the prototype.
function define(object: PlainObject, key: string, value: Value): void {
  Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true })
}
