// Encryption at rest: AES-256-GCM from node:crypto. The row's token is bound
// as associated data, so a sealed value copied under another token fails its
// authentication check instead of decrypting into someone else's session.
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto'
import { typeOf } from './validate.js'

const FORMAT_VERSION = 1
const IV_BYTES = 12
const TAG_BYTES = 16
const KEY_ID_BYTES = 4
const HEADER_BYTES = 1 + KEY_ID_BYTES + IV_BYTES
const MIN_SECRET_LENGTH = 16

interface Key {
  readonly id: Buffer
  readonly key: Buffer
}

/** Thrown when sealed bytes do not open: wrong key, another token, tampering or corruption. */
export class DecryptionError extends Error {
  constructor(reason: string) {
    super(`session data could not be decrypted: ${reason}`)
    this.name = 'DecryptionError'
  }
}

export class Encryption {
  private readonly keys: Key[]

  /** The first secret encrypts; every secret decrypts, so keys can be rotated. */
  constructor(secrets: string | readonly string[]) {
    const list = typeof secrets === 'string' ? [secrets] : secrets
    if (!Array.isArray(list) || list.length === 0) {
      throw new TypeError(`secret must be a string or a non-empty array of strings, got ${typeOf(secrets)}`)
    }
    this.keys = list.map(deriveKey)
  }

  /** Encrypts data for the row stored under token. */
  seal(data: Uint8Array, token: string): Buffer {
    const { id, key } = this.keys[0]
    const iv = randomBytes(IV_BYTES)
    const cipher = createCipheriv('aes-256-gcm', key, iv).setAAD(Buffer.from(token))
    const body = Buffer.concat([cipher.update(data), cipher.final()])
    return Buffer.concat([Buffer.of(FORMAT_VERSION), id, iv, body, cipher.getAuthTag()])
  }

  /** Decrypts what seal() produced for the same token; anything else is a DecryptionError. */
  open(sealed: Buffer, token: string): Buffer {
    if (sealed.length < HEADER_BYTES + TAG_BYTES || sealed[0] !== FORMAT_VERSION) {
      throw new DecryptionError('not in the encrypted format')
    }
    const id = sealed.subarray(1, 1 + KEY_ID_BYTES)
    const key = this.keys.find((candidate) => candidate.id.equals(id))
    if (!key) throw new DecryptionError('encrypted with a secret that is not configured')
    const iv = sealed.subarray(1 + KEY_ID_BYTES, HEADER_BYTES)
    const tag = sealed.subarray(sealed.length - TAG_BYTES)
    const decipher = createDecipheriv('aes-256-gcm', key.key, iv).setAAD(Buffer.from(token)).setAuthTag(tag)
    try {
      return Buffer.concat([decipher.update(sealed.subarray(HEADER_BYTES, sealed.length - TAG_BYTES)), decipher.final()])
    } catch {
      throw new DecryptionError('authentication failed (tampered, or stored under another token)')
    }
  }
}

// Secrets are configuration strings, not keys: HKDF turns each into a
// 256-bit key, and a short id of that key tells open() which one sealed a row.
function deriveKey(secret: unknown): Key {
  if (typeof secret !== 'string') throw new TypeError(`each secret must be a string, got ${typeOf(secret)}`)
  if (secret.length < MIN_SECRET_LENGTH) {
    throw new RangeError(`each secret must be at least ${MIN_SECRET_LENGTH} characters long`)
  }
  const key = Buffer.from(hkdfSync('sha256', secret, 'express-session-postgres', 'aes-256-gcm session data', 32))
  const id = createHash('sha256').update(key).digest().subarray(0, KEY_ID_BYTES)
  return { id, key }
}
