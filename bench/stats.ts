// Small statistics for noisy machines: medians of rounds, percentiles of latencies.

export function median(values: readonly number[]): number {
  return percentile(values, 50)
}

/** Nearest-rank percentile; NaN for no values. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]
}

export function round(value: number, digits = 2): number {
  const factor = 10 ** digits
  return Math.round(value * factor) / factor
}

/** Rounds rotated so no store always goes first (or last) within a round. */
export function rotation<T>(items: readonly T[], round: number): T[] {
  const shift = round % items.length
  const rotated = [...items.slice(shift), ...items.slice(0, shift)]
  return round % 2 === 1 ? rotated.reverse() : rotated
}

type Sample = { store: string; round: number }

/** subject/baseline in each round, each round's pair measured minutes apart at most. */
export function roundRatios<S extends Sample>(samples: S[], value: (s: S) => number, subject: string, baseline: string): number[] {
  const base = new Map(samples.filter((s) => s.store === baseline).map((s) => [s.round, value(s)]))
  return samples
    .filter((s) => s.store === subject && base.has(s.round))
    .map((s) => value(s) / base.get(s.round)!)
    .filter(Number.isFinite)
}

/** The median over rounds of the paired ratio; NaN when no round has both. */
export function pairedRatio<S extends Sample>(samples: S[], value: (s: S) => number, subject: string, baseline: string): number {
  const ratios = roundRatios(samples, value, subject, baseline)
  return ratios.length > 0 ? median(ratios) : NaN
}
