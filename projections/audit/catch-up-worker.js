// Entry of an audit catch-up thread (projections/audit/catch-up-threads.ts). Plain JavaScript that
// registers tsx's loader itself before importing the TypeScript body (from the sources; compiled
// into dist/ it imports the JavaScript body), because a worker thread
// neither inherits a loader registered with register() (bin/kennel.js) nor, on Node 20, applies
// an --import loader to its own entry: so it starts the same way under tap, the bench and
// `node bin/kennel.js` from any directory.
import fs from 'node:fs'

// computed, so that the compiler leaves the specifier alone; compiled, the body is JavaScript
const source = new URL(`./catch-up-thread${'.ts'}`, import.meta.url)
if (fs.existsSync(source)) {
  const { register } = await import('tsx/esm/api')
  register()
  await import(source.href)
} else {
  await import(new URL(`./catch-up-thread${'.js'}`, import.meta.url).href)
}
