// The ES module entry: the same classes as the CommonJS build, so `import`
// and `require()` in one process share one PostgresStore class.
export { PostgresStore, DEFAULT_CLEANUP_INTERVAL } from './index.js'
export type { PostgresStoreOptions } from './index.js'
