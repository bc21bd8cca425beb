export { PostgresStore, DEFAULT_CLEANUP_INTERVAL } from './postgres-store.js'
export type { PostgresStoreOptions } from './postgres-store.js'
