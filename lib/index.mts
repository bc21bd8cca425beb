// The ES module entry: the CommonJS build re-exported, so `import` and
// `require()` in one process share one PostgresStore class.
export * from './index.js'
