export { PostgresStore, DEFAULT_CLEANUP_INTERVAL } from './postgres-store.js'
export type { PostgresStoreOptions } from './postgres-store.js'
export { PostgresSessionStore, DEFAULT_TTL_SECONDS } from './session-store.js'
export type { PostgresSessionStoreOptions, Serializer, Ttl, Callback } from './session-store.js'
