// The background sweep of expired rows. A chain of timeouts rather than an
// interval: the next run is only scheduled once the previous one settled,
// so a slow database never gets two sweeps from one store at once.

export class CleanupTimer {
  private timer: NodeJS.Timeout | undefined
  private stopped = false

  constructor(
    private readonly intervalMs: number,
    private readonly sweep: () => Promise<unknown>,
    private readonly onError: (error: Error) => void,
  ) {
    if (intervalMs > 0) this.schedule()
  }

  get running(): boolean {
    return !this.stopped && this.intervalMs > 0
  }

  stop(): void {
    this.stopped = true
    clearTimeout(this.timer)
    this.timer = undefined
  }

  private schedule(): void {
    if (this.stopped) return
    this.timer = setTimeout(() => void this.tick(), this.intervalMs)
    // A session store must never be the reason a process stays up.
    this.timer.unref()
  }

  private async tick(): Promise<void> {
    try {
      await this.sweep()
    } catch (error) {
      reportSafely(this.onError, error)
    }
    this.schedule()
  }
}

/** Calls onError without letting a throwing handler escape a timer callback. */
export function reportSafely(onError: (error: Error) => void, error: unknown): void {
  try {
    onError(error instanceof Error ? error : new Error(String(error)))
  } catch {
    // An onError that throws has nowhere left to report to; crashing the
    // process from a background timer would be worse than dropping it.
  }
}

/** The default onError: one line on stderr, naming no session (the library's messages never do). */
export function logError(error: Error): void {
  process.stderr.write(`express-session-postgres: ${error.message.replace(/\s+/g, ' ')}\n`)
}
