// What merging costs on the HTTP write route when nothing conflicts:
// `tsx merge-cost.ts [rounds] [seconds]`. The same Express app as the main
// HTTP benchmark (http-server.ts), once with this store as shipped (merge on)
// and once with merge: false, each in its own process with its own table and
// pool; autocannon drives GET /write (get, change, set) with the cookie of a
// random one of 2,000 preloaded sessions, so two requests of one session are
// rarely in flight together. The two servers alternate within each round
// (rotation), and the result is the median over rounds of merge-on/merge-off.
// Nothing is written to results/: this is a focused check, printed.
import { runHttpBench } from './http-bench.js'
import { median, round } from './stats.js'

async function main() {
  const [rounds = 5, seconds = 3] = process.argv.slice(2).map(Number)
  const log = (line: string) => process.stdout.write(`${line}\n`)
  const samples = await runHttpBench({
    stores: { read: [], write: ['adapter', 'merge-off'] }, connections: [10, 50], rounds, seconds, sessionCount: 2_000, log,
  })
  for (const connections of [10, 50]) {
    const ratios = Array.from({ length: rounds }, (_, r) => {
      const rate = (store: string) => samples.find((s) => s.store === store && s.round === r && s.connections === connections)!.reqPerSec
      return rate('adapter') / rate('merge-off')
    })
    const of = (store: string) => median(samples.filter((s) => s.store === store && s.connections === connections).map((s) => s.reqPerSec))
    log(`c=${connections}: merge on ${round(of('adapter'), 0)} req/s, merge: false ${round(of('merge-off'), 0)} req/s; ` +
      `per-round ratio median ${round(median(ratios), 3)} (range ${round(Math.min(...ratios), 3)}-${round(Math.max(...ratios), 3)})`)
  }
}

main().catch((error) => {
  process.stderr.write(`merge-cost failed: ${error?.stack ?? error}\n`)
  process.exit(1)
})
