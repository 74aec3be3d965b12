// ListPodSandbox: vmlet's pod sandboxes that match a filter (filter.ts). The stats list
// (sandbox-stats-list.ts) filters the same way.
import { recordMatches, type RecordFilter } from './filter.js';
import type { PodManager } from './manager.js';
import type { SandboxRecord, SandboxState } from './records.js';

export type SandboxFilter = RecordFilter<SandboxState>;

export function listPodSandboxes(m: PodManager, filter: SandboxFilter | null | undefined): SandboxRecord[] {
  return [...m.sandboxes.values()].filter((s) => recordMatches(s, filter));
}
