// vmlet warns at start when its open-files limit is low (started by some other supervisor than
// vmlet.service / vmlet-service.sh, which raise it): the real vmlet, started under `ulimit -n
// 1024` (Node.js raises its soft limit to the hard one by itself), and under this test's own.
import { afterEach, describe, expect, it } from 'vitest';
import { parseLogLines, startVmlet, type VmletProcess } from '../helpers/vmlet.js';
import { LOW_OPEN_FILES, openFilesLimit } from '../../src/util/open-files.js';

const MSG = 'open files limit is low for a runtime: each VM pod and stream holds descriptors (vmlet.service and node-install/vmlet-service.sh raise it; ulimit -Hn before starting vmlet otherwise)';

let v: VmletProcess | undefined;
afterEach(async () => {
  await v?.stop();
  v = undefined;
});

describe('vmlet serve and its open-files limit', () => {
  it('warns, with the limits, when started with a hard limit of 1024', async () => {
    v = await startVmlet({ wrap: ['bash', '--norc', '-c', 'ulimit -n 1024 && exec "$@"', 'ulimit'] });
    const warned = parseLogLines(v.logLines).filter((l) => l.msg === MSG);
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatchObject({ level: 40, soft: 1024, hard: 1024, wanted: LOW_OPEN_FILES });
  });

  it.skipIf(openFilesLimit()!.soft < LOW_OPEN_FILES)('does not warn with a limit of at least 4096 (this test\'s own)', async () => {
    v = await startVmlet();
    expect(parseLogLines(v.logLines).filter((l) => l.msg === MSG)).toEqual([]);
  });
});
