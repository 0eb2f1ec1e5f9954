// Entry of the projector thread (bin/projector.ts startProjectorThread). Plain JavaScript that
// registers tsx's loader itself before importing the TypeScript body, because a worker thread
// neither inherits a loader registered with register() (bin/kennel.js) nor, on Node 20, applies
// an --import loader to its own entry: so it starts the same way under tap, the bench and
// `node bin/kennel.js` from any directory.
import { register } from 'tsx/esm/api'

register()
await import('./projector-thread.ts')
