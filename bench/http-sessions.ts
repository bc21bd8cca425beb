// Session ids both the HTTP server and the driver can compute from a seed.
import { createHash } from 'node:crypto'
import signature from 'cookie-signature'

export const HTTP_SECRET = 'benchmark secret, not a real one'

export function seededSid(seed: string, i: number): string {
  return createHash('sha256').update(`${seed}:${i}`).digest('base64url').slice(0, 32)
}

/** The Cookie header express-session expects for sid. */
export function sessionCookie(sid: string): string {
  return 'connect.sid=' + encodeURIComponent('s:' + signature.sign(sid, HTTP_SECRET))
}
