// Regenerates the README's screenshots of the example (docs/*.png): runs the
// browser test (spec/browser.test.ts), which saves a screenshot of each step
// it checks, into a temporary folder, and copies the README's ones to docs/.
// So the pictures show exactly what the test saw. Needs /usr/bin/chromium.
// Run it with `npm run screenshots`; with TEST_DATABASE_URL set the example
// runs on that server, else on an embedded PostgreSQL (PGlite).
import { spawnSync } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const README_SCREENSHOTS = ['your-devices.png', 'logged-out-phone.png']

const dir = mkdtempSync(join(tmpdir(), 'screenshots-'))
try {
  const jest = createRequire(import.meta.url).resolve('jest/bin/jest')
  // CI=true: a missing chromium fails the test instead of skipping it.
  const run = spawnSync(process.execPath, [jest, 'spec/browser.test.ts'], {
    cwd: ROOT, stdio: 'inherit', env: { ...process.env, CI: 'true', SCREENSHOTS_DIR: dir },
  })
  if (run.status !== 0) throw new Error(`spec/browser.test.ts failed (exit code ${run.status}): no screenshots written`)
  mkdirSync(join(ROOT, 'docs'), { recursive: true })
  for (const file of README_SCREENSHOTS) {
    copyFileSync(join(dir, file), join(ROOT, 'docs', file))
    console.log(`wrote docs/${file}`)
  }
} finally {
  rmSync(dir, { recursive: true, force: true })
}
