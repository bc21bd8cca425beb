// Hashed ids at rest: with hashTokens, the table holds SHA-256(token) and
// never the token, so a leaked table or backup holds no usable session id.
import { createHash } from 'node:crypto'

/** The key a token is stored under when hashTokens is on: lowercase hex SHA-256. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex')
}
