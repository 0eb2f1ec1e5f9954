import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import { keptData } from '../../bench/compare/toys.ts'

// KENNEL_BENCH_DATA: the compare bench's enrolled toys are kept in a directory and reused by the
// next run with the same number of toys, instead of being enrolled again.

t.test(
  'toys kept by one run are reused by the next with the same count, and made again for another count',
  async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kennel-kept-'))
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
    const said: string[] = []
    const first = await keptData(dir, 2, (s) => void said.push(s))
    t.equal(first.toys.length, 2)
    t.ok(
      said.some((s) => s.includes('enrolling 2 toys')),
      'the first run enrols',
    )
    said.length = 0
    const second = await keptData(dir, 2, (s) => void said.push(s))
    t.ok(
      said.some((s) => s.includes('reusing')) && !said.some((s) => s.includes('enrolling')),
      'the second reuses them',
    )
    t.same(second.toys, first.toys, 'the same toys, serials included')
    t.equal(second.ca.trustedPem, first.ca.trustedPem, 'under the same device CA')
    t.same(
      JSON.parse(fs.readFileSync(second.toysFile, 'utf8')).map((x: { id: string }) => x.id),
      first.toys.map((x) => x.id),
      'their keys and certificates for the load processes',
    )
    said.length = 0
    const third = await keptData(dir, 3, (s) => void said.push(s))
    t.equal(third.toys.length, 3, 'another count enrols again')
    t.ok(said.some((s) => s.includes('enrolling 3 toys')))
  },
)
