// A TCP proxy the tests put between postgres.js and PostgreSQL, so they can
// take the database away and give it back without touching the shared server.
//   pause()     the database is down: connections are reset, new ones too
//   blackhole() the network is lost: connections stay open, nothing arrives
//   resume()    the database is back; connections that lived through a
//               blackhole are reset, as a firewall that forgot them would
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net'

/** The two ways the proxy can take the database away. */
export type Fault = 'pause' | 'blackhole'
export type ProxyMode = 'forward' | Fault

interface Link {
  client: Socket
  upstream?: Socket
  blackholed: boolean
}

export class TcpProxy {
  private mode: ProxyMode = 'forward'
  private readonly links = new Set<Link>()
  /** Connections the proxy has accepted since it started, in any mode. */
  connectionsAccepted = 0

  private constructor(
    private readonly server: Server,
    private readonly target: { host: string; port: number },
  ) {
    server.on('connection', (client) => this.accept(client))
  }

  /** Listens on a free port of 127.0.0.1 and forwards to host:port. */
  static async start(host: string, port: number): Promise<TcpProxy> {
    const server = createServer()
    const proxy = new TcpProxy(server, { host, port })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, '127.0.0.1', () => resolve())
    })
    return proxy
  }

  /** The same URL with its host and port replaced by the proxy's. */
  static async forUrl(url: string): Promise<{ proxy: TcpProxy; url: string }> {
    const parsed = new URL(url)
    const proxy = await TcpProxy.start(parsed.hostname || '127.0.0.1', Number(parsed.port || 5432))
    parsed.hostname = '127.0.0.1'
    parsed.port = String(proxy.port)
    return { proxy, url: parsed.toString() }
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port
  }

  get currentMode(): ProxyMode {
    return this.mode
  }

  pause(): void {
    this.mode = 'pause'
    for (const link of this.links) this.drop(link)
  }

  blackhole(): void {
    this.mode = 'blackhole'
    for (const link of this.links) this.swallow(link)
  }

  resume(): void {
    this.mode = 'forward'
    for (const link of this.links) if (link.blackholed) this.drop(link)
  }

  async close(): Promise<void> {
    for (const link of this.links) this.drop(link)
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  private accept(client: Socket): void {
    this.connectionsAccepted++
    // A reset peer is the expected outcome here, not a test failure.
    client.on('error', () => {})
    if (this.mode === 'pause') return void client.resetAndDestroy()

    const link: Link = { client, blackholed: false }
    this.links.add(link)
    client.on('close', () => this.drop(link))
    if (this.mode === 'blackhole') return this.swallow(link)

    const upstream = connect(this.target.port, this.target.host)
    link.upstream = upstream
    upstream.on('error', () => this.drop(link))
    upstream.on('close', () => this.drop(link))
    client.pipe(upstream)
    upstream.pipe(client)
  }

  // Bytes keep flowing into the proxy (the kernel acknowledges them), but
  // none reach the other side: what a client sees when a route vanishes.
  private swallow(link: Link): void {
    link.blackholed = true
    link.client.unpipe()
    link.upstream?.unpipe()
    link.client.removeAllListeners('data')
    link.upstream?.removeAllListeners('data')
    link.client.on('data', () => {})
    link.upstream?.on('data', () => {})
    link.client.resume()
    link.upstream?.resume()
  }

  private drop(link: Link): void {
    if (!this.links.delete(link)) return
    if (!link.client.destroyed) link.client.resetAndDestroy()
    link.upstream?.destroy()
  }
}
