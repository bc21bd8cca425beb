// What every part of the report (report.ts, report-lost-updates.ts) shares:
// the target line and the formatting of numbers and tables.
import type { StoreName } from './stores.js'

export type Group =
  | 'c1' | 'get' | 'writes' | 'read-route' | 'relaxed' | 'cleanup' | 'iteration'
  | 'merge' | 'shared' | 'statements' | 'cost'

export interface Target {
  group: Group
  /** The whole claim, e.g. "c=16 set: A = 1.20x B". */
  claim: string
  /** "target >= 2x" and the like. */
  goal: string
  met: boolean
  /** How far from the goal, as a fraction of it; 0 when met. */
  short: number
  /** The run had no section for it (an older latest.json, or a --skip): neither met nor missed. */
  unmeasured?: boolean
}

/** A target the run has no numbers for. */
export function unmeasured(group: Group, claim: string, goal: string): Target {
  return { group, claim: `${claim}: not measured in this run`, goal, met: false, short: 0, unmeasured: true }
}

export function targetLine(t: Target): string {
  if (t.unmeasured) return `n/a   ${t.claim} (${t.goal})`
  const by = t.short < 0.005 ? 'under 1%' : pct(t.short)
  return `${t.met ? 'MET ' : 'MISS'}  ${t.claim} (${t.goal}${t.met ? '' : `; missed by ${by}`})`
}

export const name = (r: { stores: Partial<Record<StoreName, string>> }, store: StoreName) => r.stores[store] ?? store
export const x = (ratio: number) => (Number.isFinite(ratio) ? `${ratio.toFixed(2)}x` : 'n/a')
export const pct = (fraction: number) => `${Math.round(fraction * 100)}%`
export const int = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a')
export const ms = (n: number) => (Number.isFinite(n) ? (n < 10 ? n.toFixed(2) : n.toFixed(1)) : 'n/a')

export function table(header: string[], rows: string[][]): string {
  return [
    `| ${header.join(' | ')} |`,
    `|${header.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`,
    ...rows.map((row) => `| ${row.join(' | ')} |`),
  ].join('\n')
}
