import type { Config } from 'jest'

const config: Config = {
  testEnvironment: 'node',
  roots: ['<rootDir>/spec'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/spec/tsconfig.json' }] },
  // The sources import './x.js' as Node's ESM rules want; jest resolves the .ts.
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  // PGlite starts once per run (a few seconds) and every file reaches it over TCP.
  globalSetup: '<rootDir>/spec/support/global-setup.mjs',
  globalTeardown: '<rootDir>/spec/support/global-teardown.mjs',
  testTimeout: 30_000,
}

export default config
