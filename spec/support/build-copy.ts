// A fresh build of the working tree in a temporary directory, for the tests
// that run the compiled package (the CLI, npm pack). Building a copy keeps
// them independent of a stale dist/ and leaves the shared dist/ alone.
import { execFileSync } from 'node:child_process'
import { cpSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, join, resolve } from 'node:path'

export const ROOT = resolve(__dirname, '..', '..')

// Installed or generated: node_modules is linked instead, dist is rebuilt.
const SKIPPED = new Set(['.git', 'node_modules', 'dist', 'bench', 'coverage'])

export interface BuildCopy {
  /** The copy's root: package.json, schema.sql, dist/ freshly compiled. */
  readonly dir: string
  remove(): void
}

export function buildCopy(): BuildCopy {
  const dir = mkdtempSync(join(tmpdir(), 'esp-build-'))
  cpSync(ROOT, dir, {
    recursive: true,
    filter: (source) => source === ROOT || !SKIPPED.has(basename(source)) || !isTopLevel(source),
  })
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir')
  try {
    execFileSync(join(ROOT, 'node_modules', '.bin', 'tsc'), ['-p', '.'], { cwd: dir, stdio: 'pipe', encoding: 'utf8' })
  } catch (error) {
    rmSync(dir, { recursive: true, force: true })
    throw new Error(`tsc -p . failed in a copy of the working tree:\n${(error as { stdout?: string }).stdout}`)
  }
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) }
}

function isTopLevel(path: string): boolean {
  return resolve(path, '..') === ROOT
}
