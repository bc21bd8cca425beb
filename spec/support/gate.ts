/**
 * Holds /slow requests after they have read their session, until the test
 * releases them: a request in flight while another one logs out.
 */
export class Gate {
  private arrive!: () => void
  /** Resolves once a /slow request has its session and is waiting. */
  readonly entered = new Promise<void>((resolve) => (this.arrive = resolve))
  release!: () => void
  private readonly released = new Promise<void>((resolve) => (this.release = resolve))

  async pass(): Promise<void> {
    this.arrive()
    await this.released
  }
}
