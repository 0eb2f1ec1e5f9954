#!/usr/bin/env node
// The package's bin. TypeScript runs through tsx's loader, so `npx kennel` works right after
// `npm install` with no build step.
import { register } from 'tsx/esm/api'

register()
await import('./cli.ts')
