// The package as npm publishes it: `npm pack` of a fresh build, installed
// into an empty project next to nothing but its declared peer dependencies,
// then used the ways a user would (require, import, the CLI, TypeScript).
// attw and publint check the same tarball's exports and types.
import { execFile } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { buildCopy, ROOT, type BuildCopy } from './support/build-copy'

const NAME = 'express-session-postgres'
const bin = (tool: string) => join(ROOT, 'node_modules', '.bin', tool)

interface Run {
  status: number
  output: string
}

/** Runs a program; resolves with its exit status and combined output, never rejects. */
function run(file: string, args: string[], cwd: string): Promise<Run> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd, timeout: 120_000, env: { ...process.env, FORCE_COLOR: '0', NO_COLOR: '1' } },
      (error, stdout, stderr) => {
        const status = error ? (typeof error.code === 'number' ? error.code : -1) : 0
        resolve({ status, output: stdout + stderr })
      })
  })
}

async function succeed(file: string, args: string[], cwd: string): Promise<string> {
  const result = await run(file, args, cwd)
  if (result.status !== 0) throw new Error(`${file} ${args.join(' ')} exited ${result.status}:\n${result.output}`)
  return result.output
}

let build: BuildCopy
let work: string
let tarball: string
let project: string
let manifest: {
  bin?: Record<string, string>
  dependencies?: object
  peerDependencies?: Record<string, string>
  peerDependenciesMeta?: Record<string, { optional?: boolean }>
}

beforeAll(async () => {
  build = buildCopy()
  work = mkdtempSync(join(tmpdir(), 'esp-package-'))
  const packed = JSON.parse(await succeed('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work], build.dir))
  tarball = join(work, packed[0].filename)
  project = await installInFreshProject(tarball)
  manifest = JSON.parse(readFileSync(join(project, 'node_modules', NAME, 'package.json'), 'utf8'))
}, 120_000)

afterAll(() => {
  build?.remove()
  if (work) rmSync(work, { recursive: true, force: true })
})

/**
 * A project that installs the tarball the way a user does, offline: the
 * package declares no dependencies, so nothing is fetched. Its peers are
 * linked from this repository's node_modules, exactly those it declares
 * (less those left out: a driver the application does not use), so an
 * undeclared runtime import fails here as it would for a user.
 */
async function installInFreshProject(tgz: string, name = 'project', leftOut: string[] = []): Promise<string> {
  const dir = join(work, name)
  mkdirSync(dir)
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }))
  await succeed('npm', ['install', '--offline', '--no-audit', '--no-fund', '--legacy-peer-deps', '--no-save', tgz], dir)
  const installed = JSON.parse(readFileSync(join(dir, 'node_modules', NAME, 'package.json'), 'utf8'))
  const peers = Object.keys(installed.peerDependencies ?? {}).filter((peer) => !leftOut.includes(peer))
  // The type declarations a TypeScript user of express-session has anyway.
  const pgTypes = leftOut.includes('pg') ? [] : ['@types/pg']
  for (const name of [...peers, '@types/node', '@types/express-session', ...pgTypes]) linkFromRoot(name, dir)
  return dir
}

function linkFromRoot(name: string, dir: string): void {
  const target = join(dir, 'node_modules', name)
  mkdirSync(dirname(target), { recursive: true })
  if (!existsSync(target)) symlinkSync(join(ROOT, 'node_modules', name), target, 'dir')
}

describe('the packed tarball', () => {
  it('holds only what users need: compiled code, types, schema.sql, README, LICENSE, CHANGELOG', async () => {
    const [packed] = JSON.parse(await succeed('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], build.dir))
    const paths: string[] = packed.files.map((file: { path: string }) => file.path)
    expect(paths).toEqual(expect.arrayContaining(['package.json', 'README.md', 'LICENSE', 'schema.sql',
      'dist/index.js', 'dist/index.d.ts', 'dist/index.mjs', 'dist/index.d.mts', 'dist/cli.js']))
    const unexpected = paths.filter((path) => !/^(package\.json|README\.md|CHANGELOG\.md|LICENSE|schema\.sql|dist\/(drivers\/)?[\w-]+\.(js|d\.ts|mjs|d\.mts))$/.test(path))
    expect(unexpected).toEqual([])
  })

  it('declares no dependencies, express-session as a required peer, and both drivers as optional ones', () => {
    expect(manifest.dependencies).toBeUndefined()
    const optional = (name: string) => manifest.peerDependenciesMeta?.[name]?.optional === true
    const required = Object.keys(manifest.peerDependencies ?? {}).filter((name) => !optional(name))
    expect(required.sort()).toEqual(['express-session'])
    expect(optional('pg') && optional('postgres')).toBe(true)
  })

  it('passes arethetypeswrong (schema.sql is a file, not a module)', async () => {
    await succeed(bin('attw'), [tarball, '--exclude-entrypoints', './schema.sql', '--format', 'ascii'], work)
  }, 60_000)

  it('passes publint, warnings included', async () => {
    await succeed(bin('publint'), ['run', tarball, '--strict'], work)
  }, 60_000)
})

// An application installs the driver it uses and not the other: the package
// loads, and a store is built, with only that one present.
describe.each([
  ['node-postgres', 'postgres', `new PostgresSessionStore({ pool: new (require('pg').Pool)(), cleanupInterval: 0 })`,
    `import type { Pool } from 'pg'\ndeclare const pool: Pool\nexport const store = new PostgresSessionStore({ pool })`],
  ['postgres.js', 'pg', `new PostgresSessionStore({ connectionString: 'postgres://nobody@127.0.0.1:1/none', cleanupInterval: 0 })`,
    `import type { Sql } from 'postgres'\ndeclare const sql: Sql\nexport const store = new PostgresSessionStore({ sql })`],
])('installed beside %s only', (_, missing, createStore, typedUsage) => {
  let dir: string
  beforeAll(async () => {
    dir = await installInFreshProject(tarball, `without-${missing}`, [missing])
  }, 120_000)

  it(`has no ${missing} to load`, async () => {
    const result = await run(process.execPath, ['-e', `require.resolve('${missing}')`], dir)
    expect(result.output).toMatch(/Cannot find module/)
  })

  it('loads with require() and builds a store', async () => {
    const script = `
      const { PostgresSessionStore } = require('${NAME}')
      const store = ${createStore}
      store.close().then(() => console.log(store.store.table))`
    expect(await succeed(process.execPath, ['-e', script], dir)).toBe('sessions\n')
  })

  it('loads with import and builds a store', async () => {
    const script = `
      import { createRequire } from 'node:module'
      import { PostgresSessionStore } from '${NAME}'
      const require = createRequire(process.cwd() + '/')
      const store = ${createStore}
      await store.close()
      console.log(store.store.table)`
    expect(await succeed(process.execPath, ['--input-type=module', '-e', script], dir)).toBe('sessions\n')
  })

  it(`type-checks without ${missing}'s types, library declarations included`, async () => {
    const typed = join(dir, 'typed')
    mkdirSync(typed)
    writeFileSync(join(typed, 'app.ts'), `import { PostgresSessionStore } from '${NAME}'\n${typedUsage}\n`)
    const compilerOptions = { strict: true, noEmit: true, types: ['node'], skipLibCheck: false, module: 'node16', moduleResolution: 'node16', target: 'ES2022' }
    writeFileSync(join(typed, 'tsconfig.json'), JSON.stringify({ compilerOptions, include: ['*'] }))
    expect(await run(bin('tsc'), ['-p', typed], dir)).toEqual({ status: 0, output: '' })
  }, 60_000)
})

describe('installed in a fresh project', () => {
  it('loads with require() and with import, and both give the same classes', async () => {
    const script = `
      const required = require('${NAME}')
      import('${NAME}').then((imported) => console.log(JSON.stringify({
        required: Object.keys(required).sort(),
        imported: Object.keys(imported).filter((key) => key !== 'default').sort(),
        sameStore: required.PostgresStore === imported.PostgresStore,
        sameSessionStore: required.PostgresSessionStore === imported.PostgresSessionStore,
        storeIsClass: typeof required.PostgresStore === 'function',
      })))`
    const result = JSON.parse(await succeed(process.execPath, ['-e', script], project))
    expect(result.required).toEqual(expect.arrayContaining(['PostgresStore', 'PostgresSessionStore']))
    expect(result.imported).toEqual(result.required)
    expect(result).toMatchObject({ sameStore: true, sameSessionStore: true, storeIsClass: true })
  })

  it('serves named imports to an ES module', async () => {
    const script = `import { PostgresStore } from '${NAME}'; console.log(PostgresStore.name)`
    expect(await succeed(process.execPath, ['--input-type=module', '-e', script], project)).toBe('PostgresStore\n')
  })

  it('exports schema.sql', async () => {
    const script = `console.log(require('node:fs').readFileSync(require.resolve('${NAME}/schema.sql'), 'utf8'))`
    expect(await succeed(process.execPath, ['-e', script], project)).toContain('CREATE TABLE IF NOT EXISTS sessions')
  })

  it('links the CLI as a bin that runs on its own', async () => {
    expect(manifest.bin).toEqual({ [NAME]: 'dist/cli.js' })
    const cli = join(project, 'node_modules', '.bin', NAME)
    expect(await succeed(cli, ['--help'], project)).toMatch(/^Usage: express-session-postgres <command>/)
    // schema reads schema.sql next to dist/, so this proves the file ships where the code looks.
    expect(await succeed(cli, ['schema', '--table', 'app.sessions'], project)).toContain('CREATE TABLE IF NOT EXISTS "app"."sessions"')
  })

  describe('type-checks a TypeScript user', () => {
    const usage = `
      import { PostgresSessionStore, PostgresStore, type PostgresStoreOptions } from '${NAME}'
      import type { Store } from 'express-session'
      import type { Pool } from 'pg'
      import type { Sql } from 'postgres'

      declare const sql: Sql
      declare const pool: Pool
      const options: PostgresStoreOptions = { table: 'app.sessions', cleanupInterval: 0 }
      const store = new PostgresStore(sql, options)
      export const onPool = new PostgresStore(pool, { ...options, prepare: false })
      export const found: Promise<Buffer | null> = store.find('token')
      export const sessions: Store = new PostgresSessionStore({ sql })
      export const sessionsOnPool: Store = new PostgresSessionStore({ pool })
      // @ts-expect-error commit needs an expiry: this line proves the types are not any.
      store.commit('token', Buffer.from('data'))
    `

    function check(name: string, compilerOptions: object, files: Record<string, string>): Promise<Run> {
      const dir = join(project, name)
      mkdirSync(dir)
      for (const [file, text] of Object.entries(files)) writeFileSync(join(dir, file), text)
      const base = { strict: true, noEmit: true, types: ['node'], skipLibCheck: false, target: 'ES2022' }
      writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { ...base, ...compilerOptions }, include: ['*'] }))
      return run(bin('tsc'), ['-p', dir], project)
    }

    it('under moduleResolution node16, from CommonJS and from ESM', async () => {
      const result = await check('node16', { module: 'node16', moduleResolution: 'node16' }, { 'cjs.cts': usage, 'esm.mts': usage })
      expect(result).toEqual({ status: 0, output: '' })
    }, 60_000)

    it('under moduleResolution bundler', async () => {
      const result = await check('bundler', { module: 'esnext', moduleResolution: 'bundler' }, { 'app.ts': usage })
      expect(result).toEqual({ status: 0, output: '' })
    }, 60_000)
  })
})
