// What a stretch of work cost the database, attributed to one store:
// - server CPU: on-CPU time of the store's own backends (found by the pool's
//   application_name), read from /proc/<pid>/schedstat in nanoseconds (the
//   benchmark runs on the database's machine, as a user who may read it);
// - WAL: pg_waldump over the LSN range, summing the records that touch the
//   store's own relations (table, indexes, TOAST) and every record, commits
//   included, of the transactions that wrote them: other work on the server
//   (other databases, other tables) is left out;
// - transactions: xact_commit + xact_rollback of pg_stat_database for a
//   database only the benchmark uses, after the store's backends flushed
//   their statistics (BenchStore.flushStats), less the flush's own statements.
import { execFileSync, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import type { Sql } from 'postgres'

export interface Snapshot {
  lsn: string
  cpuNs: Map<number, number>
  transactions: number
}

export interface Usage {
  serverCpuNs: number
  /** Backends that appeared during the stretch: their whole CPU is counted. */
  newBackends: number
  wal: Wal | null
  transactions: number
}

export interface Wal {
  /** Every byte of the records attributed to the store, full-page images included. */
  bytes: number
  /** Of which full-page images: the first change of a page after a checkpoint; depends on when checkpoints fall. */
  fullPageBytes: number
  records: number
}

/** On-CPU nanoseconds of a process (scheduler statistics), or null when it is gone or unreadable. */
export function cpuNsOf(pid: number): number | null {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0])
  } catch {
    return null
  }
}

export class CostMeter {
  private constructor(
    /** A connection to another database of the same server: its own queries count nowhere. */
    private readonly monitor: Sql,
    private readonly database: string,
    private readonly walDump: { bin: string; dir: string } | null,
    readonly walUnavailable: string | null,
  ) {}

  static async open(monitor: Sql, database: string): Promise<CostMeter> {
    const [{ dir }] = await monitor`SELECT current_setting('data_directory') || '/pg_wal' AS dir`
    try {
      const bin = join(execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim(), 'pg_waldump')
      readFileSync(join(dir, '..', 'PG_VERSION')) // readable WAL directory: same machine, enough rights
      execFileSync(bin, ['--version'])
      return new CostMeter(monitor, database, { bin, dir }, null)
    } catch (error) {
      return new CostMeter(monitor, database, null, `pg_waldump on ${dir} not usable here: ${(error as Error).message.split('\n')[0]}`)
    }
  }

  async snapshot(applicationName: string): Promise<Snapshot> {
    const [{ lsn }] = await this.monitor`SELECT pg_current_wal_lsn()::text AS lsn`
    const backends = await this.monitor<{ pid: number }[]>`
      SELECT pid FROM pg_stat_activity WHERE application_name = ${applicationName} AND datname = ${this.database}`
    const cpuNs = new Map<number, number>()
    for (const { pid } of backends) {
      const ns = cpuNsOf(pid)
      if (ns !== null) cpuNs.set(pid, ns)
    }
    return { lsn, cpuNs, transactions: await this.transactions() }
  }

  /**
   * Commits and rollbacks of the benchmark's database, once published: a
   * backend publishes just after it answers, so a loaded server may still be
   * publishing when the flush statement's answer arrives; the count is read
   * until it holds still for 100 ms.
   */
  async transactions(): Promise<number> {
    let last = await this.publishedTransactions()
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, 100))
      const now = await this.publishedTransactions()
      if (now === last) return now
      last = now
    }
  }

  private async publishedTransactions(): Promise<number> {
    const [row] = await this.monitor<{ n: string }[]>`
      SELECT xact_commit + xact_rollback AS n FROM pg_stat_database WHERE datname = ${this.database}`
    return Number(row.n)
  }

  /** CPU and WAL since `start`; transactions are filled in by the caller after the flush. */
  async usageSince(start: Snapshot, applicationName: string, relfilenodes: Set<number>): Promise<Omit<Usage, 'transactions'>> {
    const end = await this.snapshot(applicationName)
    let serverCpuNs = 0
    let newBackends = 0
    for (const [pid, ns] of end.cpuNs) {
      const before = start.cpuNs.get(pid)
      if (before === undefined) newBackends++
      serverCpuNs += ns - (before ?? 0)
    }
    const wal = this.walDump ? await this.walOf(start.lsn, end.lsn, relfilenodes) : null
    return { serverCpuNs, newBackends, wal }
  }

  /** The relfilenodes of a table, its indexes and its TOAST table and index. */
  static async relfilenodes(sql: Sql, table: string): Promise<Set<number>> {
    const rows = await sql<{ node: number }[]>`
      SELECT pg_relation_filenode(c.oid)::int AS node FROM pg_class c
      WHERE c.oid = ${table}::regclass
         OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = ${table}::regclass)
         OR c.oid = (SELECT reltoastrelid FROM pg_class WHERE oid = ${table}::regclass)
         OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid =
                       (SELECT reltoastrelid FROM pg_class WHERE oid = ${table}::regclass))`
    return new Set(rows.map((row) => row.node).filter((node) => node !== null && node !== 0))
  }

  private async walOf(from: string, to: string, relfilenodes: Set<number>): Promise<Wal> {
    const [{ oid }] = await this.monitor<{ oid: number }[]>`SELECT oid::int FROM pg_database WHERE datname = ${this.database}`
    const ours = new Set<string>([...relfilenodes].map((node) => `/${oid}/${node}`))
    const child = spawn(this.walDump!.bin, ['-p', this.walDump!.dir, '-s', from, '-e', to], { stdio: ['ignore', 'pipe', 'ignore'] })
    const exited = new Promise((resolve) => child.on('close', resolve))
    // Records of other relations are kept per transaction, in case that transaction turns out to be ours.
    const byXid = new Map<number, { bytes: number; fullPageBytes: number; records: number }>()
    const ourXids = new Set<number>()
    const wal: Wal = { bytes: 0, fullPageBytes: 0, records: 0 }
    for await (const line of createInterface({ input: child.stdout })) {
      const match = /len \(rec\/tot\):\s*(\d+)\/\s*(\d+), tx:\s*(\d+)/.exec(line)
      if (!match) continue
      const [rec, tot, xid] = [Number(match[1]), Number(match[2]), Number(match[3])]
      const rels = [...line.matchAll(/rel \d+(\/\d+\/\d+)/g)].map((m) => m[1])
      if (rels.some((rel) => ours.has(rel))) {
        wal.bytes += tot
        wal.fullPageBytes += tot - rec
        wal.records++
        if (xid !== 0) ourXids.add(xid)
      } else if (xid !== 0) {
        const entry = byXid.get(xid) ?? { bytes: 0, fullPageBytes: 0, records: 0 }
        entry.bytes += tot
        entry.fullPageBytes += tot - rec
        entry.records++
        byXid.set(xid, entry)
      }
    }
    await exited
    for (const xid of ourXids) {
      const rest = byXid.get(xid)
      if (!rest) continue
      wal.bytes += rest.bytes
      wal.fullPageBytes += rest.fullPageBytes
      wal.records += rest.records
    }
    return wal
  }
}
