// The ES module entry: the CommonJS build re-exported by name (`export *`
// would also leak `__esModule`), so `import` and `require()` in one process
// share one PostgresStore class. spec/package.test.ts checks the two agree.
export { PostgresStore, DEFAULT_CLEANUP_INTERVAL, PostgresSessionStore, DEFAULT_TTL_SECONDS, MAX_SAVE_ATTEMPTS, SessionConflictError, DecryptionError, hashToken } from './index.js'
export type * from './index.js'
