#!/usr/bin/env node
// The package's entry. Compiled (`npm run build` writes dist/bin/kennel.js beside dist/bin/cli.js)
// it runs the JavaScript; from the sources (bin/kennel.js beside bin/cli.ts: tests, development)
// it registers tsx's loader first, so the TypeScript runs with no build step.
import fs from 'node:fs'

// computed, so that the compiler leaves the specifier alone
const source = new URL(`./cli${'.ts'}`, import.meta.url)
if (fs.existsSync(source)) {
  const { register } = await import('tsx/esm/api')
  register()
  await import(source.href)
} else {
  await import(new URL(`./cli${'.js'}`, import.meta.url).href)
}
