// Private PostgreSQL clusters for the fault tests (spec/failover.test.ts):
// a plain one to crash and restart, and a pg_auto_failover formation (a
// monitor and two nodes with synchronous replication) to fail over.
// Everything listens on 127.0.0.1 only, on ports nobody else uses, with its
// data under a fresh temporary directory that stop() removes.
// PostgreSQL and pg_autoctl refuse to run as root: when the tests run as
// root, every command runs as the postgres user (runuser).
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { chownSync, closeSync, existsSync, openSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)
const HOST = '127.0.0.1'
// Below Linux's ephemeral range (32768-60999 by default): a port in it can
// be taken at any moment as the local end of an outgoing connection (the
// test's own, to the other node), and a server restarting on it then fails.
const FIRST_PORT = 25432
const asRoot = process.getuid?.() === 0

/** The directory of initdb, postgres and pg_isready, from `pg_config --bindir`. */
async function binDir(): Promise<string> {
  const { stdout } = await run('pg_config', ['--bindir'])
  return stdout.trim()
}

/** Runs a command as the postgres user, with env; rejects with its output when it fails. */
async function runAsPostgres(command: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  const [file, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', command, ...args]] : [command, args]
  try {
    const { stdout } = await run(file, argv, { env: { ...process.env, ...env }, maxBuffer: 16 * 1024 * 1024 })
    return stdout
  } catch (error) {
    const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string }
    throw new Error(`${command} ${args.join(' ')} failed:\n${stdout}${stderr}`.slice(-4000))
  }
}

/** A long-running command as the postgres user, in a process group of its own so it can be killed whole. */
function spawnAsPostgres(command: string, args: string[], env: NodeJS.ProcessEnv, log: string): ChildProcess {
  const [file, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', command, ...args]] : [command, args]
  const out = openSync(log, 'a')
  try {
    return spawn(file, argv, { env: { ...process.env, ...env }, detached: true, stdio: ['ignore', out, out] })
  } finally {
    closeSync(out)
  }
}

async function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen(port, HOST, () => server.close(() => resolve(true)))
  })
}

let nextPort = FIRST_PORT + (process.pid % 50) * 10
/** count consecutive free loopback ports. */
async function freePorts(count: number): Promise<number[]> {
  for (;;) {
    const ports = Array.from({ length: count }, (_, i) => nextPort + i)
    nextPort += count
    if ((await Promise.all(ports.map(isFree))).every(Boolean)) return ports
  }
}

function privateDirectory(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  if (asRoot) chownSync(dir, uidOf('postgres'), gidOf('postgres'))
  return dir
}

function uidOf(user: string): number {
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith(user + ':'))
  if (!line) throw new Error(`no ${user} user on this machine`)
  return Number(line.split(':')[2])
}

function gidOf(user: string): number {
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith(user + ':'))!
  return Number(line.split(':')[3])
}

/** The postmaster's process id, from its data directory, or null when it is not running. */
export function postmasterPid(pgdata: string): number | null {
  const file = join(pgdata, 'postmaster.pid')
  if (!existsSync(file)) return null
  const pid = Number(readFileSync(file, 'utf8').split('\n')[0])
  return isAlive(pid) ? pid : null
}

// As PostgreSQL's own check of a lock file sees it: a zombie not yet reaped
// counts as alive (so servers are started as children that get reaped).
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** The postmaster's children (its backends and helpers), read from /proc. */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number)
  } catch {
    return []
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(100)
  }
}

/**
 * kill -9 of a postmaster and of the processes it had started, as a crash of
 * the machine would end them; resolves once the postmaster has been reaped
 * (its lock file is then free for a restart) and its children are gone. A
 * backend forked in the same instant exits by itself: backends watch for
 * their postmaster's death.
 */
export async function killPostmaster(pgdata: string): Promise<void> {
  const pid = postmasterPid(pgdata)
  if (pid === null) throw new Error(`no postmaster is running on ${pgdata}`)
  const children = childrenOf(pid)
  process.kill(pid, 'SIGKILL')
  for (const child of children) signal(child, 'SIGKILL')
  await waitFor('the killed postmaster and its children to exit',
    () => !isAlive(pid) && children.every((child) => !isRunning(child)), 10_000)
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name)
  } catch {
    // already gone
  }
}

// Exited, even if not yet reaped: the children are reparented when the
// postmaster dies, and whoever reaps them may take its time.
function isRunning(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z'
  } catch {
    return false
  }
}

/** One PostgreSQL server, made by initdb and started from `pg_config --bindir`, to crash and restart. */
export class CrashCluster {
  private constructor(
    private readonly dir: string,
    private readonly bin: string,
    readonly port: number,
  ) {}

  get pgdata(): string {
    return join(this.dir, 'data')
  }

  get url(): string {
    return `postgres://postgres@${HOST}:${this.port}/postgres`
  }

  /** A new cluster; synchronousCommit 'off' acknowledges commits before they reach the disk. */
  static async start(synchronousCommit: 'on' | 'off'): Promise<CrashCluster> {
    const [port] = await freePorts(1)
    const cluster = new CrashCluster(privateDirectory('esp-crash-'), await binDir(), port)
    try {
      await runAsPostgres(join(cluster.bin, 'initdb'), ['-D', cluster.pgdata, '-U', 'postgres', '--auth=trust', '-N'])
      const settings = [
        `listen_addresses = '${HOST}'`,
        `port = ${port}`,
        `unix_socket_directories = '${cluster.dir}'`,
        `synchronous_commit = ${synchronousCommit}`,
        'max_connections = 100',
        'shared_buffers = 32MB',
      ]
      await runAsPostgres('sh', ['-c', `printf '%s\\n' "$@" >> ${cluster.pgdata}/postgresql.auto.conf`, 'sh', ...settings])
      await cluster.restart()
    } catch (error) {
      await cluster.stop()
      throw error
    }
    return cluster
  }

  /**
   * Starts the server and resolves once it takes connections (after a crash,
   * it recovers from its WAL first). Not through pg_ctl: the postmaster stays
   * a child of runuser, which reaps it when it is killed, so its lock file is
   * free at once for the next start.
   */
  async restart(): Promise<void> {
    const log = join(this.dir, 'log')
    const postmaster = spawnAsPostgres(join(this.bin, 'postgres'), ['-D', this.pgdata], {}, log)
    postmaster.on('error', () => {})
    const ready = () => run(join(this.bin, 'pg_isready'), ['-q', '-h', HOST, '-p', String(this.port)]).then(() => true, () => false)
    try {
      await waitFor('the server to take connections', async () => {
        if (postmaster.exitCode !== null) throw new Error('the server exited')
        return ready()
      }, 60_000)
    } catch (error) {
      const tail = existsSync(log) ? readFileSync(log, 'utf8').split('\n').slice(-15).join('\n') : ''
      throw new Error(`${(error as Error).message}\nserver log:\n${tail}`)
    }
  }

  /** kill -9 of the postmaster; resolves once it and its backends are gone. */
  async crash(): Promise<void> {
    await killPostmaster(this.pgdata)
  }

  async stop(): Promise<void> {
    if (postmasterPid(this.pgdata) !== null) await killPostmaster(this.pgdata)
    rmSync(this.dir, { recursive: true, force: true })
  }
}

export interface FailoverNode {
  readonly name: string
  readonly port: number
  readonly pgdata: string
}

/**
 * A pg_auto_failover formation: a monitor and two Postgres nodes, the second
 * a synchronous standby of the first (replication quorum on: a commit is
 * acknowledged once the standby has it).
 */
export class FailoverCluster {
  private readonly keepers: ChildProcess[] = []

  private constructor(
    private readonly dir: string,
    private readonly bin: string,
    readonly nodes: readonly FailoverNode[],
  ) {}

  /** A multi-host URL naming nodes in this order, for postgres.js. */
  url(nodes: readonly FailoverNode[] = this.nodes, targetSessionAttrs = 'primary'): string {
    const hosts = nodes.map((node) => `${HOST}:${node.port}`).join(',')
    return `postgres://postgres@${hosts}/postgres?target_session_attrs=${targetSessionAttrs}`
  }

  /** Resolves once a node (the same or the other) accepts connections and takes writes. */
  async waitWritable(timeoutMs: number): Promise<void> {
    const writable = async (node: FailoverNode) => {
      const out = await run('psql', ['-h', HOST, '-p', String(node.port), '-U', 'postgres', '-d', 'postgres',
        '-Atc', 'SELECT pg_is_in_recovery()']).then(({ stdout }) => stdout, () => '')
      return out.trim() === 'f'
    }
    await waitFor('a node to take writes', async () => (await Promise.all(this.nodes.map(writable))).some(Boolean), timeoutMs)
  }

  private get env(): NodeJS.ProcessEnv {
    const dir = this.dir
    return {
      HOME: dir,
      XDG_CONFIG_HOME: join(dir, 'config'),
      XDG_DATA_HOME: join(dir, 'data'),
      XDG_RUNTIME_DIR: join(dir, 'run'),
      PG_CONFIG: join(this.bin, 'pg_config'),
    }
  }

  private get monitorData(): string {
    return join(this.dir, 'monitor')
  }

  static async start(): Promise<FailoverCluster> {
    const [monitorPort, ...nodePorts] = await freePorts(3)
    const dir = privateDirectory('esp-failover-')
    const nodes = nodePorts.map((port, i) => ({ name: `node${i + 1}`, port, pgdata: join(dir, `node${i + 1}`) }))
    const cluster = new FailoverCluster(dir, await binDir(), nodes)
    try {
      await cluster.autoctl('create', 'monitor', '--pgdata', cluster.monitorData, '--pgport', String(monitorPort), ...cluster.local())
      cluster.keep(cluster.monitorData)
      const monitor = (await cluster.autoctl('show', 'uri', '--pgdata', cluster.monitorData, '--formation', 'monitor')).trim()
      for (const node of nodes) {
        await cluster.autoctl('create', 'postgres', '--pgdata', node.pgdata, '--pgport', String(node.port),
          '--name', node.name, '--monitor', monitor, ...cluster.local())
        cluster.keep(node.pgdata)
      }
      await cluster.waitHealthy(60_000)
    } catch (error) {
      await cluster.stop()
      throw error
    }
    return cluster
  }

  // Loopback only, no passwords, no TLS: a private test formation.
  private local(): string[] {
    return ['--hostname', HOST, '--listen', HOST, '--auth', 'trust', '--no-ssl']
  }

  private autoctl(...args: string[]): Promise<string> {
    return runAsPostgres('pg_autoctl', args, this.env)
  }

  /** Starts the pg_autoctl service that supervises the server at pgdata. */
  private keep(pgdata: string): void {
    const keeper = spawnAsPostgres('pg_autoctl', ['run', '--pgdata', pgdata], this.env, `${pgdata}.log`)
    keeper.on('error', () => {})
    this.keepers.push(keeper)
  }

  /** Each node's reported and assigned state, as the monitor sees them. */
  async states(): Promise<{ name: string; port: number; reported: string; assigned: string }[]> {
    const json = await this.autoctl('show', 'state', '--pgdata', this.monitorData, '--json')
    type Row = { nodename: string; nodeport: number; current_group_state: string; assigned_group_state: string }
    return (JSON.parse(json) as Row[]).map((n) => ({
      name: n.nodename, port: n.nodeport, reported: n.current_group_state, assigned: n.assigned_group_state,
    }))
  }

  /** The node the monitor sees as primary (reported and assigned). */
  async primary(): Promise<FailoverNode> {
    const states = await this.states()
    const primary = states.find((s) => s.reported === 'primary' && s.assigned === 'primary')
    if (!primary) throw new Error(`no primary: ${JSON.stringify(states)}`)
    return this.nodes.find((node) => node.name === primary.name)!
  }

  /** Resolves once one node is primary and the other its caught-up secondary. */
  async waitHealthy(timeoutMs: number): Promise<void> {
    await waitFor('a primary and a secondary', async () => {
      const states = await this.states().catch(() => [])
      const settled = (role: string) => states.some((s) => s.reported === role && s.assigned === role)
      return states.length === 2 && settled('primary') && settled('secondary')
    }, timeoutMs)
  }

  /** `pg_autoctl perform failover`: resolves when the standby has been promoted. */
  async performFailover(): Promise<void> {
    await this.autoctl('perform', 'failover', '--pgdata', this.monitorData, '--wait', '60')
  }

  async stop(): Promise<void> {
    const all = [...this.nodes.map((n) => n.pgdata), this.monitorData]
    for (const pgdata of all) {
      if (existsSync(pgdata)) await this.autoctl('stop', '--pgdata', pgdata, '--immediate').catch(() => {})
    }
    await waitFor('pg_autoctl to stop', () => this.keepers.every((k) => k.exitCode !== null || k.signalCode !== null), 10_000)
      .catch(() => {})
    for (const keeper of this.keepers) if (keeper.pid !== undefined) signal(-keeper.pid, 'SIGKILL')
    for (const pgdata of all) {
      const pid = postmasterPid(pgdata)
      if (pid !== null) for (const member of [pid, ...childrenOf(pid)]) signal(member, 'SIGKILL')
    }
    rmSync(this.dir, { recursive: true, force: true })
  }
}
