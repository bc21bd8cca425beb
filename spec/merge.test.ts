// The merge rule for concurrent changes of one session (lib/merge.ts), checked
// on random JSON sessions: examples state the rule, properties check that it
// holds for every session fast-check can think of.
import fc from 'fast-check'
import { changesTopLevel, equal, merge, mergeSessions } from '../lib/merge'

type Session = Record<string, any>

const key = fc.constantFrom('a', 'b', 'c', 'd', 'e', '__proto__')
const { json } = fc.letrec((tie) => ({
  json: fc.oneof(
    { depthSize: 'small' },
    fc.integer({ min: -1000, max: 1000 }),
    fc.string({ maxLength: 4 }),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('json'), { maxLength: 3 }),
    fc.dictionary(key, tie('json'), { maxKeys: 4 }),
  ),
}))
const session = fc.dictionary(key, json, { maxKeys: 5 })

const absent = Symbol('absent')
const at = (object: Session, name: string) => (Object.hasOwn(object, name) ? object[name] : absent)
const keysOf = (...objects: Session[]) => new Set(objects.flatMap((object) => Object.keys(object)))

describe('merge: the rule by example', () => {
  const base = { user: 'ada', theme: 'dark', cart: { apple: 1, pear: 2 }, tags: ['a'] }

  it('takes a key only one side changed from that side', () => {
    expect(merge(base, { ...base, theme: 'light' }, { ...base, user: 'bob' })).toEqual({ ...base, theme: 'light', user: 'bob' })
  })

  it('takes ours for a key both sides changed', () => {
    expect(merge(base, { ...base, theme: 'light' }, { ...base, theme: 'blue' })).toEqual({ ...base, theme: 'light' })
  })

  it('keeps a deletion beside an unrelated change', () => {
    const { theme: _, ...withoutTheme } = base
    expect(merge(base, withoutTheme, { ...base, user: 'bob' })).toEqual({ ...withoutTheme, user: 'bob' })
  })

  it('lets a change beat a deletion of the same key, on either side', () => {
    const { theme: _, ...withoutTheme } = base
    expect(merge(base, withoutTheme, { ...base, theme: 'blue' })).toEqual({ ...base, theme: 'blue' })
    expect(merge(base, { ...base, theme: 'blue' }, withoutTheme)).toEqual({ ...base, theme: 'blue' })
  })

  it('merges nested plain objects key by key, also when both sides created the object', () => {
    const ours = { ...base, cart: { apple: 1, pear: 3 }, files: { x: { size: 1 } } }
    const theirs = { ...base, cart: { apple: 1, pear: 2, plum: 1 }, files: { y: { size: 2 } } }
    expect(merge(base, ours, theirs)).toEqual({ ...base, cart: { apple: 1, pear: 3, plum: 1 }, files: { x: { size: 1 }, y: { size: 2 } } })
  })

  it('takes arrays whole', () => {
    expect(merge(base, { ...base, tags: ['a', 'b'] }, { ...base, tags: ['a', 'c'] })).toEqual({ ...base, tags: ['a', 'b'] })
  })

  it('takes the cookie from ours, whatever theirs holds', () => {
    const cookie = (expires: string) => ({ expires, path: '/' })
    const merged = mergeSessions({ ...base, cookie: cookie('1') }, { ...base, cookie: cookie('2') }, { ...base, user: 'bob', cookie: cookie('3') })
    expect(merged).toEqual({ ...base, user: 'bob', cookie: cookie('2') })
  })

  it('leaves the cookie out when ours has none (a cookie-less session)', () => {
    expect(mergeSessions(base, { ...base, theme: 'light' }, { ...base, cookie: { path: '/' } })).toEqual({ ...base, theme: 'light' })
  })

  it('takes ours whole when theirs is not a plain object (a custom serializer value)', () => {
    const ours = { ...base, cookie: {} }
    expect(mergeSessions(base, ours, new Map())).toEqual(ours)
  })

  it('keeps a "__proto__" key a key', () => {
    const parse = (text: string) => JSON.parse(text) as Session
    const merged = merge(parse('{"a":1}'), parse('{"a":1,"__proto__":{"x":1}}'), parse('{"a":2}')) as Session
    expect(Object.getPrototypeOf(merged)).toBe(Object.prototype)
    expect(JSON.stringify(merged)).toBe('{"a":2,"__proto__":{"x":1}}')
  })
})

describe('equal', () => {
  it('compares JSON-like values deeply, ignoring key order', () => {
    expect(equal({ a: [1, { b: 2 }], c: null }, { c: null, a: [1, { b: 2 }] })).toBe(true)
    expect(equal({ a: [1, { b: 2 }] }, { a: [1, { b: 3 }] })).toBe(false)
    expect(equal({ a: 1 }, { a: 1, b: undefined })).toBe(false)
    expect(equal([1], { 0: 1 })).toBe(false)
    expect(equal(new Date(5), new Date(5))).toBe(true)
  })

  it('holds for a value and its JSON round trip, and is symmetric', () => {
    fc.assert(fc.property(session, session, (a, b) => {
      expect(equal(a, JSON.parse(JSON.stringify(a)))).toBe(true)
      expect(equal(a, b)).toBe(equal(b, a))
    }))
  })
})

describe('merge: properties', () => {
  it('gives theirs when ours did not change, ours when theirs did not, and ours when both agree', () => {
    fc.assert(fc.property(session, session, (base, other) => {
      expect(equal(merge(base, base, other), other)).toBe(true)
      expect(equal(merge(base, other, base), other)).toBe(true)
      expect(equal(merge(base, other, other), other)).toBe(true)
    }))
  })

  it('keeps every key only one side changed, as that side left it', () => {
    fc.assert(fc.property(session, session, session, (base, ours, theirs) => {
      const merged = merge(base, ours, theirs) as Session
      for (const name of keysOf(base, ours, theirs)) {
        if (equal(at(theirs, name), at(base, name))) expect(equal(at(merged, name), at(ours, name))).toBe(true)
        if (equal(at(ours, name), at(base, name))) expect(equal(at(merged, name), at(theirs, name))).toBe(true)
      }
    }))
  })

  it('takes ours for a key both changed, unless ours deleted it or both hold objects', () => {
    fc.assert(fc.property(session, session, session, (base, ours, theirs) => {
      const merged = merge(base, ours, theirs) as Session
      for (const name of keysOf(base, ours, theirs)) {
        const [b, o, t] = [at(base, name), at(ours, name), at(theirs, name)]
        if (equal(o, b) || equal(t, b)) continue
        const bothObjects = [o, t].every((value) => typeof value === 'object' && value !== null && !Array.isArray(value))
        if (o === absent) expect(equal(at(merged, name), t)).toBe(true)
        else if (!bothObjects) expect(equal(at(merged, name), o)).toBe(true)
      }
    }))
  })

  it('does not change its arguments', () => {
    fc.assert(fc.property(session, session, session, (base, ours, theirs) => {
      const before = JSON.stringify([base, ours, theirs])
      merge(base, ours, theirs)
      expect(JSON.stringify([base, ours, theirs])).toBe(before)
    }))
  })
})

// The protocol the adapter runs, against a model of the table: a request reads
// the session and its version, changes it, and writes only if the version is
// unchanged; otherwise it merges with what is stored and tries again.
describe('merge: random interleavings of requests of one session', () => {
  type Op = { path: [string] | [string, string]; value: number | null } // null: delete
  const path = fc.oneof(
    fc.tuple(fc.constantFrom('a', 'b', 'c', 'd')),
    fc.tuple(fc.constantFrom('files', 'cart'), fc.constantFrom('p', 'q', 'r')),
  ) as fc.Arbitrary<Op['path']>
  const op = fc.record({ path, value: fc.option(fc.integer({ min: 0, max: 999 }), { freq: 4 }) })
  const request = fc.record({
    ops: fc.array(op, { minLength: 1, maxLength: 4 }),
    readAt: fc.nat(100),
    takes: fc.nat(100),
  })
  const baseSession = fc.record(
    { a: json, b: json, c: json, d: json, files: fc.dictionary(fc.constantFrom('p', 'q', 'r'), json), cart: fc.dictionary(fc.constantFrom('p', 'q'), json) },
    { requiredKeys: [] },
  )

  // Values a request writes are unique to it, so the final session says whose write survived.
  const written = (requestIndex: number, opIndex: number, value: number) => 1_000_000 + requestIndex * 10_000 + opIndex * 1000 + value

  function apply(session: Session, ops: Op[], requestIndex: number): void {
    ops.forEach(({ path: [first, second], value }, opIndex) => {
      if (second === undefined) {
        if (value === null) delete session[first]
        else session[first] = written(requestIndex, opIndex, value)
      } else if (value === null) {
        if (session[first]) delete session[first][second]
      } else {
        session[first] ??= {}
        session[first][second] = written(requestIndex, opIndex, value)
      }
    })
  }

  function read(session: Session, [first, second]: Op['path']): unknown {
    const parent = at(session, first)
    if (second === undefined) return parent
    return typeof parent === 'object' && parent !== null ? at(parent, second) : absent
  }

  type Request = { ops: Op[]; readAt: number; takes: number }

  /** Runs the requests against one stored session; gives what is stored in the end. */
  function simulate(initial: Session, requests: Request[]): Session {
    let stored = { data: structuredClone(initial), version: 0 }
    const events = requests.flatMap((r, i) => [
      { at: r.readAt, request: i, kind: 'read' },
      { at: r.readAt + r.takes + 0.5, request: i, kind: 'write' },
    ])
    events.sort((x, y) => x.at - y.at || x.request - y.request)
    const state = requests.map(() => ({ base: {} as Session, ours: {} as Session, version: 0 }))
    for (const { request: i, kind } of events) {
      const mine = state[i]
      if (kind === 'read') {
        Object.assign(mine, { base: structuredClone(stored.data), ours: structuredClone(stored.data), version: stored.version })
        apply(mine.ours, requests[i].ops, i)
        continue
      }
      while (stored.version !== mine.version) {
        Object.assign(mine, { ours: merge(mine.base, mine.ours, stored.data), base: stored.data, version: stored.version })
      }
      stored = { data: structuredClone(mine.ours), version: mine.version + 1 }
    }
    return stored.data
  }

  it('never loses a change that no other request overwrote', () => {
    fc.assert(fc.property(baseSession, fc.array(request, { minLength: 1, maxLength: 5 }), (initial, requests) => {
      const stored = simulate(initial, requests)
      const touchedBy = new Map<string, number[]>()
      requests.forEach(({ ops }, i) => {
        for (const { path } of ops) touchedBy.set(JSON.stringify(path), [...(touchedBy.get(JSON.stringify(path)) ?? []), i])
      })
      for (const [name, who] of touchedBy) {
        const p = JSON.parse(name) as Op['path']
        const requestIndex = who[0]
        if (new Set(who).size !== 1) continue
        // The request's own last word on this path.
        const alone = structuredClone(initial) as Session
        apply(alone, requests[requestIndex].ops, requestIndex)
        expect(read(stored, p)).toEqual(read(alone, p))
      }
      // Paths nobody touched keep their first value.
      for (const name of ['a', 'b', 'c', 'd']) {
        if (!touchedBy.has(JSON.stringify([name]))) expect(at(stored, name)).toEqual(at(initial, name))
      }
    }), { numRuns: 500 })
  })
})

describe('changesTopLevel: a change seen without decoding', () => {
  it('sees a primitive replaced, or an object replaced by a primitive, outside the cookie', () => {
    expect(changesTopLevel({ views: 1, cookie: { a: 1 } }, { views: 2, cookie: { a: 1 } })).toBe(true)
    expect(changesTopLevel({ cart: { apple: 1 } }, { cart: null })).toBe(true)
    expect(changesTopLevel({ user: null }, { user: 'ada' })).toBe(true)
  })

  it('says nothing about the cookie, keys only one side has, or objects it would have to compare', () => {
    expect(changesTopLevel({ cookie: 1 }, { cookie: 2 })).toBe(false)
    expect(changesTopLevel({ a: 1 }, { a: 1, b: 2 })).toBe(false)
    expect(changesTopLevel({ a: 1, b: 2 }, { a: 1 })).toBe(false)
    expect(changesTopLevel({ cart: { apple: 1 } }, { cart: { apple: 2 } })).toBe(false)
  })

  // What it says must hold: a session it calls changed never equals the one it came from.
  it('never calls two equal sessions changed', () => {
    fc.assert(fc.property(session, session, (before, after) => {
      const copy = JSON.parse(JSON.stringify(before))
      expect(changesTopLevel(before, copy)).toBe(false)
      if (changesTopLevel(before, after)) expect(equal({ ...before, cookie: null }, { ...after, cookie: null })).toBe(false)
    }), { numRuns: 500 })
  })
})
