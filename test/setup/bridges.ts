// After the whole run: the bridges the test CNI configs make (test/helpers/vmlet.ts vmtest0,
// test/helpers/containerd.ts ctrtest0) are deleted when no port is left on them, so a second run
// (or critest's own networks) does not find their routes in the way.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';

const BRIDGES = ['vmtest0', 'ctrtest0'];

export function teardown(): void {
  for (const br of BRIDGES) {
    const ports = `/sys/class/net/${br}/brif`;
    if (!existsSync(ports) || readdirSync(ports).length > 0) continue;
    try {
      execFileSync('ip', ['link', 'del', br], { stdio: 'ignore' });
    } catch {
      // Gone meanwhile, or not ours to delete: nothing to do.
    }
  }
}
