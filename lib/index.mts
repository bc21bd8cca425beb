// The ES module entry: the same classes as the CommonJS build, so `import`
// and `require()` in one process share one PostgresStore class.
export { PostgresStore, DEFAULT_CLEANUP_INTERVAL, PostgresSessionStore, DEFAULT_TTL_SECONDS } from './index.js'
export type { PostgresStoreOptions, PostgresSessionStoreOptions, Serializer, Ttl, Callback } from './index.js'
