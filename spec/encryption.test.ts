// Encryption at rest, on its own: what a row holds and when it opens.
import { DecryptionError, Encryption } from '../lib/encryption'

const OLD = 'an old secret that was rotated out'
const NEW = 'the current secret, at least 16 chars'
const plaintext = Buffer.from('{"cookie":{},"user":"alice@example.com"}')

describe('Encryption', () => {
  const encryption = new Encryption(NEW)

  it('opens what it sealed, for the same token', () => {
    expect(encryption.open(encryption.seal(plaintext, 'tok'), 'tok')).toEqual(plaintext)
  })

  it('stores no plaintext, and never the same bytes twice', () => {
    const first = encryption.seal(plaintext, 'tok')
    const second = encryption.seal(plaintext, 'tok')
    expect(first.includes(Buffer.from('alice'))).toBe(false)
    expect(first.equals(second)).toBe(false)
  })

  it('round-trips empty and binary data', () => {
    for (const data of [Buffer.alloc(0), Buffer.from([0, 255, 0, 1])]) {
      expect(encryption.open(encryption.seal(data, 't'), 't')).toEqual(data)
    }
  })

  it('refuses a row copied under another token', () => {
    const sealed = encryption.seal(plaintext, 'victim')
    expect(() => encryption.open(sealed, 'attacker')).toThrow(DecryptionError)
  })

  it('catches tampering with any byte', () => {
    const sealed = encryption.seal(plaintext, 'tok')
    for (let i = 0; i < sealed.length; i++) {
      const tampered = Buffer.from(sealed)
      tampered[i] ^= 0x01
      expect(() => encryption.open(tampered, 'tok')).toThrow(DecryptionError)
    }
  })

  it('refuses truncated and unencrypted bytes', () => {
    const sealed = encryption.seal(plaintext, 'tok')
    expect(() => encryption.open(sealed.subarray(0, 20), 'tok')).toThrow(DecryptionError)
    expect(() => encryption.open(plaintext, 'tok')).toThrow(DecryptionError)
  })

  it('rotates: the first secret encrypts, every secret decrypts', () => {
    const before = new Encryption(OLD).seal(plaintext, 'tok')
    const rotated = new Encryption([NEW, OLD])
    expect(rotated.open(before, 'tok')).toEqual(plaintext)
    const after = rotated.seal(plaintext, 'tok')
    expect(new Encryption(NEW).open(after, 'tok')).toEqual(plaintext)
    expect(() => new Encryption(OLD).open(after, 'tok')).toThrow(/secret that is not configured/)
  })

  it('says why it failed without showing the data', () => {
    const error = (() => {
      try {
        encryption.open(encryption.seal(plaintext, 'victim'), 'attacker')
      } catch (e) {
        return e as Error
      }
    })()
    expect(error?.message).toBe('session data could not be decrypted: authentication failed (tampered, or stored under another token)')
  })

  it('rejects a secret shorter than 16 characters with a RangeError', () => {
    expect(() => new Encryption('short')).toThrow(RangeError)
    expect(() => new Encryption([NEW, 'short'])).toThrow(RangeError)
  })

  it.each([
    ['an empty list', []],
    ['a number', 42],
    ['a list with a non-string', [NEW, 7]],
  ])('rejects %s with a TypeError', (_, secret) => {
    expect(() => new Encryption(secret as unknown as string)).toThrow(TypeError)
  })
})
