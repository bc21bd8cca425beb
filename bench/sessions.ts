// Realistic sessions: about 300 bytes of JSON with express-session's cookie,
// and ids shaped like express-session's (24 random bytes, base64url).
import { randomBytes } from 'node:crypto'

export const SESSION_MAX_AGE_MS = 24 * 60 * 60 * 1000

export function newSid(): string {
  return randomBytes(24).toString('base64url')
}

export interface BenchSession {
  cookie: {
    originalMaxAge: number
    expires: Date
    secure: boolean
    httpOnly: boolean
    path: string
    sameSite: string
  }
  [key: string]: unknown
}

export function newSession(n: number): BenchSession {
  return {
    cookie: {
      originalMaxAge: SESSION_MAX_AGE_MS,
      expires: new Date(Date.now() + SESSION_MAX_AGE_MS),
      secure: false,
      httpOnly: true,
      path: '/',
      sameSite: 'lax',
    },
    userId: 100000 + n,
    username: `user${n}@example.com`,
    roles: ['reader', 'editor'],
    csrfSecret: randomBytes(18).toString('base64url'),
    locale: 'en-GB',
    cart: { items: [{ sku: 'SKU-1234', qty: 2 }], currency: 'EUR' },
    views: 0,
  }
}

/** The same session after a request changed it: one more view, a later expiry. */
export function changed(session: BenchSession): BenchSession {
  return {
    ...session,
    cookie: { ...session.cookie, expires: new Date(Date.now() + SESSION_MAX_AGE_MS) },
    views: (session.views as number) + 1,
  }
}
