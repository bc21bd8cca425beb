// The report's part for issue 11 (no lost updates): what merging costs a write
// that meets no conflict, how many keys a session keeps when N requests of it
// run at once, and the statements an unchanged session costs per request.
// Each renders "not measured in this run" for a latest.json without its section.
import type { StatementCell } from './fastify-statements.js'
import type { HttpSample } from './http-bench.js'
import { int, ms, name, table, unmeasured, x, type Group, type Target } from './report-format.js'
import type { BurstSample, KeptSample, Variant } from './shared-session.js'
import { median, pairedRatio, roundRatios } from './stats.js'
import type { StoreName } from './stores.js'

type Measured<T> = T & { mode: string; measuredAt: string; commit: string; config: Record<string, any> }

export interface LostUpdateResults {
  stores: Partial<Record<StoreName, string>>
  config: { httpConnections: number[] }
  httpSamples: HttpSample[]
  sharedSession?: Measured<{ keptSamples: KeptSample[]; burstSamples: BurstSample[] }>
  fastifyStatements?: Measured<{ cells: StatementCell[] }>
}

const SUBJECTS: StoreName[] = ['adapter', 'adapter-pg']
/** Merging may cost a write that meets no conflict at most 5% of merge: false's throughput. */
const MERGE_COST_FLOOR = 0.95
const VARIANT_LABELS: Record<Variant, string> = { keys: "req.session['k' + i] = i", files: 'req.session.files[uuid] = {...}' }

// --- targets ---------------------------------------------------------------

export function lostUpdateTargets(r: LostUpdateResults): Target[] {
  return [...mergeCostTargets(r), ...keptTargets(r), ...statementTargets(r)]
}

const writeCell = (r: LostUpdateResults, n: number) => r.httpSamples.filter((s) => s.route === 'write' && s.connections === n)
const hasMergeOff = (r: LostUpdateResults) => r.httpSamples.some((s) => s.store === 'merge-off')

function mergeCostTargets(r: LostUpdateResults): Target[] {
  const goal = `target >= ${MERGE_COST_FLOOR}x`
  if (!hasMergeOff(r)) return [unmeasured('merge', 'merge cost <= 5% on HTTP /write (adapter vs merge: false)', goal)]
  return r.config.httpConnections.map((n) => {
    const ratios = roundRatios(writeCell(r, n), (s) => s.reqPerSec, 'adapter', 'merge-off')
    const ratio = ratios.length > 0 ? median(ratios) : NaN
    const range = ratios.length > 1 ? ` (rounds ${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)})` : ''
    const met = ratio >= MERGE_COST_FLOOR
    return {
      group: 'merge' as Group, goal, met, short: met ? 0 : Number.isFinite(ratio) ? 1 - ratio / MERGE_COST_FLOOR : 1,
      claim: `merge cost, HTTP /write without conflicts, ${n} connections: ${name(r, 'adapter')} = ${x(ratio)}${range} ${name(r, 'merge-off')}`,
    }
  })
}

function keptTargets(r: LostUpdateResults): Target[] {
  const shared = r.sharedSession
  const goal = 'target N of N in every round'
  if (!shared) return [unmeasured('shared', 'adapter keeps N of N at N=2, 8, 32', goal)]
  const targets: Target[] = []
  for (const store of SUBJECTS.filter((s) => shared.keptSamples.some((k) => k.store === s))) {
    for (const variant of ['keys', 'files'] as const) {
      const samples = shared.keptSamples.filter((k) => k.store === store && k.variant === variant)
      const counts = [...new Set(samples.map((k) => k.n))]
      if (counts.length === 0) continue
      const least = counts.map((n) => Math.min(...samples.filter((k) => k.n === n).map((k) => k.kept)))
      const worst = Math.min(...counts.map((n, i) => least[i] / n))
      targets.push({
        group: 'shared', goal, met: worst === 1, short: 1 - worst,
        claim: `${name(r, store)}, N requests of one session at once (${variant}): fewest kept ` +
          `${counts.map((n, i) => `${least[i]} of ${n}`).join(', ')} over ${shared.config.rounds} rounds each`,
      })
    }
  }
  return targets
}

function statementTargets(r: LostUpdateResults): Target[] {
  const cells = r.fastifyStatements?.cells.filter((c) => c.setup === 'fastify')
  const goal = 'target 1 statement/request, 0 writes'
  if (!cells) return [unmeasured('statements', 'fastify unchanged session: 1 statement/request, 0 writes', goal)]
  return SUBJECTS.flatMap((store) => {
    const mine = cells.filter((c) => c.store === store)
    if (mine.length === 0) return []
    const statements = Math.max(...mine.map((c) => c.statements / c.requests))
    const writes = Math.max(...mine.map((c) => c.writes / c.requests))
    const met = statements <= 1 && writes === 0
    return [{
      group: 'statements' as Group, goal, met, short: met ? 0 : Math.max(statements - 1, writes),
      claim: `@fastify/session (rolling), unchanged session, ${name(r, store)}: ${perRequest(statements)} statements and ` +
        `${perRequest(writes)} writes per request (worst of one session and ${Math.max(...mine.map((c) => c.cookies))} sessions)`,
    }]
  })
}

export const LOST_UPDATE_WHY: Record<'merge' | 'shared' | 'statements', (r: LostUpdateResults) => string> = {
  merge: () => '**Merge cost.** With no conflict the adapter\'s write is the conditional upsert (one statement, ' +
    'as merge: false sends one) plus, in Node, the bookkeeping of what get read (and a decode and comparison ' +
    'when neither the expiry nor a top-level value already shows a change). The cost section\'s /write rows ' +
    '(adapter against merge-off) say where it goes: statements and server CPU per request, or the Express ' +
    'process\'s CPU. A miss by a few percent on this shared machine is within the per-round range shown.',
  shared: () => '**Keys kept.** A round that kept fewer than N keys either lost a race the adapter should have ' +
    'merged, or a save failed (see the errors column of the raw results: a SessionConflictError after ' +
    'MAX_SAVE_ATTEMPTS lost races answers 500).',
  statements: () => '**Statements per request.** An unchanged session under @fastify/session is saved on every ' +
    'request (rolling); the adapter skips the write only when it knows what that request read ' +
    '(lib/read-context.ts) and the expiry moves by less than touchAfter.',
}

// --- sections --------------------------------------------------------------

export function mergeCostSection(r: LostUpdateResults): string {
  if (!hasMergeOff(r)) return 'Not measured in this run (the HTTP write route ran without `merge-off`).'
  const rows = r.config.httpConnections.map((n) => {
    const rate = (store: StoreName) => int(median(writeCell(r, n).filter((s) => s.store === store).map((s) => s.reqPerSec)))
    const ratios = roundRatios(writeCell(r, n), (s) => s.reqPerSec, 'adapter', 'merge-off')
    const range = ratios.length > 1 ? `${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)}` : 'n/a'
    return [String(n), rate('adapter'), rate('merge-off'), x(pairedRatio(writeCell(r, n), (s) => s.reqPerSec, 'adapter', 'merge-off')), range]
  })
  return `The HTTP \`/write\` route above (get, one more view, set), with this store as shipped (merge on)
and with \`merge: false\` (last save wins), each in its own server process with its own table
and pool, in the same rounds as the other stores (the order rotating). Each request carries the
cookie of a random one of the preloaded sessions, so two requests of one session are rarely in
flight together: this is the cost of merging when nothing conflicts, which is a conditional
write (the version the request read) instead of a plain upsert, plus remembering what each
request read (the comparison of what was read with what is saved is skipped here: the view
count plainly changed). Per request, the cost section's /write rows for \`adapter\` and
\`merge-off\` show the statements, server CPU and Express process CPU of both. The ratio is taken within each round; the target is at least ${MERGE_COST_FLOOR}x.
\`cd bench && npx tsx merge-cost.ts [rounds] [seconds]\` runs only this pair, longer.

${table(['connections', 'merge on req/s', 'merge: false req/s', 'paired ratio (median)', 'rounds'], rows)}`
}

export function sharedSessionSection(r: LostUpdateResults): string {
  const shared = r.sharedSession
  if (!shared) return `${sharedMethod()}\n\nNot measured in this run (\`cd bench && npm run bench -- --shared-session\`).`
  const { config } = shared
  const stores = config.stores as StoreName[]
  return `${sharedMethod(config.maxDelayMs, config.burst.inFlight)}

This section: a **${shared.mode}** run of ${shared.measuredAt} (commit ${shared.commit}), ${config.rounds} rounds per N for
keys kept, ${config.burst.rounds} burst round(s) of ${config.burst.seconds} s per store and N with about ${config.burst.inFlight} requests in flight.

### Keys kept, out of N

Per cell: the median over rounds of the keys the session kept, [fewest-most], and in how many
rounds it kept all N.

${(['keys', 'files'] as const).map((variant) => keptTable(r, shared.keptSamples, stores, variant)).join('\n\n')}

### Throughput

Requests per second of the burst phase (median over burst rounds), in brackets against
connect-pg-simple in the same round; then how many of the burst's sessions read back kept all N.
The last row is what the delays alone allow: the sessions in flight times N over the expected
longest of N delays (${config.maxDelayMs} ms x N/(N+1)); a store near it is limited by the scenario, not by itself.

${burstTable(r, shared.burstSamples, stores, config)}

Keeping every key has a price under contention: in one process the saves of one session go one
at a time (lib/session-store.ts), and a save that lost the race reads the row it lost to, merges
and writes again, so a round of N costs up to N-1 extra round trips, one after another. The
stores that keep one key skip that work; \`merge: false\` is this store without it.

Median time of one round (first request sent to last answer), from the keys-kept rounds, in ms:

${roundTimeTable(r, shared.keptSamples, stores)}`
}

const sharedMethod = (maxDelayMs = 30, inFlight = 64) => `Issue 11's scenario: Express 5, express-session 1.19 with \`resave: false\`, one server process per
store (bench/express-app.ts, as the HTTP level runs them). N requests go out at once with the
cookie of one preloaded session; each waits its delay (0-${maxDelayMs} ms, drawn from a generator seeded by
the variant, N and round, so every store gets the same delays in the same round) after
express-session read the session, then sets a key of its own: \`req.session['k' + i] = i\`, or, in
the nested variant, adds \`req.session.files[randomUUID()] = { name, size }\`. Once all N answered,
one more request reads the session back (\`/keys\`) and counts the keys of the N that it holds.
Every round uses a session no other round touched. The stores: MemoryStore, connect-redis 9 and
connect-pg-simple 10 (which write the whole session, so the last save wins), this store as
shipped on postgres.js and on pg.Pool (merging), and this store with \`merge: false\`.
Throughput comes from a separate burst phase: about ${inFlight} requests in flight, as ${inFlight}/N sessions at a
time each receiving its N requests at once (with the same kind of delays), a session's place
taken by a fresh one when all its N answered, for a fixed time; requests/s counts every answered
request over the time until the last one answered. Afterwards the first 50 sessions of the
burst are read back, out of the timing.`

function keptTable(r: LostUpdateResults, samples: KeptSample[], stores: StoreName[], variant: Variant): string {
  const counts = [...new Set(samples.filter((s) => s.variant === variant).map((s) => s.n))]
  if (counts.length === 0) return ''
  const rows = stores.map((store) => [
    name(r, store),
    ...counts.map((n) => {
      const kept = samples.filter((s) => s.store === store && s.variant === variant && s.n === n).map((s) => s.kept)
      if (kept.length === 0) return 'n/a'
      const all = kept.filter((k) => k === n).length
      return `${median(kept)} [${Math.min(...kept)}-${Math.max(...kept)}], all ${all}/${kept.length}`
    }),
  ])
  return `\`${VARIANT_LABELS[variant]}\`:\n\n${table(['store', ...counts.map((n) => `N=${n}`)], rows)}`
}

function burstTable(r: LostUpdateResults, samples: BurstSample[], stores: StoreName[], config: Record<string, any>): string {
  const counts = [...new Set(samples.map((s) => s.n))]
  const rows = stores.map((store) => [
    name(r, store),
    ...counts.flatMap((n) => {
      const cell = samples.filter((s) => s.n === n)
      const mine = cell.filter((s) => s.store === store)
      const sum = (f: (s: BurstSample) => number) => mine.reduce((total, s) => total + f(s), 0)
      return [
        `${int(median(mine.map((s) => s.reqPerSec)))} (${x(pairedRatio(cell, (s) => s.reqPerSec, store, 'cps'))})`,
        `${sum((s) => s.allKept)}/${sum((s) => s.checked)}`,
      ]
    }),
  ])
  const ceiling = (n: number) => (Math.max(1, Math.round(config.burst.inFlight / n)) * n) / ((config.maxDelayMs * n) / (n + 1) / 1000)
  rows.push(['delay ceiling', ...counts.flatMap((n) => [int(ceiling(n)), ''])])
  return table(['store', ...counts.flatMap((n) => [`N=${n} req/s`, 'all kept'])], rows)
}

function roundTimeTable(r: LostUpdateResults, samples: KeptSample[], stores: StoreName[]): string {
  const cells = [...new Set(samples.map((s) => `${s.variant}:${s.n}`))]
  const rows = stores.map((store) => [
    name(r, store),
    ...cells.map((cell) => ms(median(samples.filter((s) => s.store === store && `${s.variant}:${s.n}` === cell).map((s) => s.roundMs)))),
  ])
  return table(['store', ...cells.map((cell) => cell.replace(':', ' N='))], rows)
}

export function statementsSection(r: LostUpdateResults): string {
  const result = r.fastifyStatements
  if (!result) return `${STATEMENTS_METHOD}\n\nNot measured in this run (\`cd bench && npm run bench -- --fastify\`).`
  const setups = [...new Set(result.cells.map((c) => c.setup))]
  const stores = [...new Set(result.cells.map((c) => c.store))]
  const many = Math.max(...result.cells.map((c) => c.cookies))
  const rows = setups.flatMap((setup) => stores.map((store) => {
    const cell = (cookies: number) => result.cells.find((c) => c.setup === setup && c.store === store && c.cookies === cookies)
    const per = (c: StatementCell | undefined) => (c ? [perRequest(c.statements / c.requests), perRequest(c.writes / c.requests)] : ['n/a', 'n/a'])
    return [setup, name(r, store), ...per(cell(1)), ...per(cell(many))]
  }))
  return `${STATEMENTS_METHOD}

This section: a **${result.mode}** run of ${result.measuredAt} (commit ${result.commit}), ${int(result.config.requests)} requests per cell.

${table(['app', 'store', 'one session: statements/request', 'writes/request', `${many} sessions: statements/request`, 'writes/request'], rows)}`
}

const STATEMENTS_METHOD = `What one request costs the database when it reads its session and changes nothing. Under
Fastify 5 with @fastify/session 11 and @fastify/cookie (bench/fastify-app.ts; the plugin's defaults,
\`rolling: true\` and \`saveUninitialized: true\`, cookie maxAge one day), the plugin calls the store's
set at the end of every such request; under express-session 1.19 (the HTTP level's app) the read
route calls get and then touch with \`resave: false\`, get and then set with \`resave: true\`. Each
store gets its own table and pool; the sessions are created first (Fastify: a login request each;
Express: preloaded), each read once to warm up, then the requests go one at a time (so coalescing
never merges two requests' statements), first all to one session, then to every session in turn.
Statements are counted at the client as they go out (the postgres.js \`debug\` hook; \`pool.query\`
for pg.Pool and connect-pg-simple); a write is any statement that is not a SELECT. Fastify is driven
through \`app.inject\` (every hook runs, without a socket); Express over HTTP on 127.0.0.1.`

const perRequest = (n: number) => (Number.isFinite(n) ? n.toFixed(3) : 'n/a')
