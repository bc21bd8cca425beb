// What merging costs on the HTTP write route when nothing conflicts, alone and
// longer than in the full run: `tsx merge-cost.ts [rounds] [seconds]`. The
// HTTP benchmark's write route (bench/http-bench.ts) for just the two servers,
// this store as shipped (merge on) and with merge: false, over 2,000 preloaded
// sessions, so two requests of one session are rarely in flight together; the
// full run measures the same pair beside the other stores (BENCHMARKS.md,
// "Merging when nothing conflicts"). Nothing is written to results/: printed only.
import { runHttpBench } from './http-bench.js'
import { median, pairedRatio, round, roundRatios } from './stats.js'

const CONNECTIONS = [10, 50]

async function main() {
  const [rounds = 5, seconds = 3] = process.argv.slice(2).map(Number)
  const log = (line: string) => process.stdout.write(`${line}\n`)
  const samples = await runHttpBench({
    stores: { read: [], write: ['adapter', 'merge-off'] }, connections: CONNECTIONS, rounds, seconds, sessionCount: 2_000, log,
  })
  for (const connections of CONNECTIONS) {
    const cell = samples.filter((s) => s.connections === connections)
    const ratios = roundRatios(cell, (s) => s.reqPerSec, 'adapter', 'merge-off')
    const of = (store: string) => round(median(cell.filter((s) => s.store === store).map((s) => s.reqPerSec)), 0)
    log(`c=${connections}: merge on ${of('adapter')} req/s, merge: false ${of('merge-off')} req/s; ` +
      `per-round ratio median ${round(pairedRatio(cell, (s) => s.reqPerSec, 'adapter', 'merge-off'), 3)} ` +
      `(range ${round(Math.min(...ratios), 3)}-${round(Math.max(...ratios), 3)}; target >= 0.95)`)
  }
}

main().catch((error) => {
  process.stderr.write(`merge-cost failed: ${error?.stack ?? error}\n`)
  process.exit(1)
})
