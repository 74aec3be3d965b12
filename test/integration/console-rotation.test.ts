// The console log across virtlogd's own rotation (max_size, 2 MiB by default): a guest writes
// ~2.1 MB to its serial console, virtlogd renames console.log to console.log.0 and starts a new
// file, and every line still reaches the container's CRI log once, in order. (Before vmlet
// followed the rotation by inode, ~660 of these 25000 lines were lost at the switch.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { call, tempDir, type VmletProcess } from '../helpers/vmlet.js';
import type { TestRegistry } from '../helpers/registry.js';
import { consoleLines, podDiagnostics, runVmPod, startVmSuite, stopVmSuite, waitForAgent, waitForConsoleLine } from '../helpers/vm-suite.js';

let reg: TestRegistry;
let v: VmletProcess;
let image = '';
const logDir = tempDir('vmlet-rotationlogs-');
const rt = <T>(method: string, req: object) => call<object, T>(v.runtime, method, req);
const LINES = 25_000;

beforeAll(async () => {
  ({ reg, v, refs: [image = ''] } = await startVmSuite([['kernelboot', 'vmlet/kernelboot:rotation']]));
});

afterAll(() => stopVmSuite(v, reg));

describe('console log across virtlogd rotation', () => {
  it('keeps every line when virtlogd rotates the console file', async () => {
    const pod = await runVmPod(v, { name: 'rotation', namespace: 'console-test', image, logDir });
    const { id, cid, log } = pod;
    await waitForConsoleLine(log, 'VMLET-HOSTNAME', 90_000, () => podDiagnostics(v, pod));
    await waitForAgent(v, cid);
    const pad = 'x'.repeat(77); // ~88 bytes a line: 25000 lines pass 2 MiB
    const script = `i=0; while [ $i -lt ${LINES} ]; do echo "SPAM $i ${pad}"; i=$((i+1)); done >/dev/console; echo SPAM-DONE >/dev/console`;
    const r = await rt<{ exit_code: number }>('ExecSync', { container_id: cid, cmd: ['sh', '-c', script], timeout: 300 });
    expect(r.exit_code).toBe(0);
    await waitForConsoleLine(log, 'SPAM-DONE', 120_000);
    const { info } = await rt<{ info: Record<string, string> }>('ContainerStatus', { container_id: cid, verbose: true });
    const consoleFile = (JSON.parse(info.info!) as { consoleLog: string }).consoleLog;
    expect(existsSync(`${consoleFile}.0`)).toBe(true); // virtlogd did rotate
    const spam = consoleLines(log).filter((l) => l.startsWith('SPAM '));
    expect(spam.length).toBe(LINES);
    expect(spam.every((l, i) => l === `SPAM ${i} ${pad}`)).toBe(true);
    await rt('RemovePodSandbox', { pod_sandbox_id: id });
  });
});
