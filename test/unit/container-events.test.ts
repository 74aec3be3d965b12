// Container state changes become GetContainerEvents' events: one per change of state, DELETED at
// removal, nothing for a state the container already had (a resize, a reopened log) or for the
// states found at vmlet's start.
import { describe, expect, it } from 'vitest';
import { ContainerEvents, ContainerIndex, type ContainerEvent } from '../../src/pod/container-events.js';
import type { ContainerRecord } from '../../src/pod/records.js';

const rec = (id: string, state: ContainerRecord['state']) => ({ id, sandboxId: 'pod1', state }) as ContainerRecord;
const next = () => new Promise((r) => setImmediate(r));

describe('container events', () => {
  it('sends CREATED as a container enters the index, STARTED and STOPPED as its record changes, DELETED as it leaves, once each', async () => {
    const ev = new ContainerEvents();
    const index = new ContainerIndex(ev);
    const got: ContainerEvent[] = [];
    ev.on('event', (e) => got.push(e));
    ev.saved(rec('c1', 'created')); // saved before it is indexed (CreateContainer): no event yet
    index.set('c1', rec('c1', 'created'));
    ev.saved(rec('c1', 'created')); // saved again without a new state: no event
    ev.saved(rec('c1', 'running'));
    ev.saved(rec('c1', 'exited'));
    index.delete('c1');
    ev.removed(rec('c1', 'exited')); // its record removed too: one event
    await next();
    expect(got.map((e) => [e.containerId, e.sandboxId, e.type])).toEqual([
      ['c1', 'pod1', 'CONTAINER_CREATED_EVENT'],
      ['c1', 'pod1', 'CONTAINER_STARTED_EVENT'],
      ['c1', 'pod1', 'CONTAINER_STOPPED_EVENT'],
      ['c1', 'pod1', 'CONTAINER_DELETED_EVENT'],
    ]);
    expect(got.every((e) => e.createdAt > 1_600_000_000_000_000_000n)).toBe(true);
  });

  it('sends nothing for the states found at start, and is sent after the saving code went on', async () => {
    const ev = new ContainerEvents();
    ev.seed([rec('c2', 'running')]);
    new ContainerIndex(ev).set('c2', rec('c2', 'running')); // loaded at start: no CREATED
    const got: string[] = [];
    ev.on('event', (e) => got.push(e.type));
    ev.saved(rec('c2', 'running'));
    expect(got).toEqual([]); // not synchronously, either
    ev.saved(rec('c2', 'exited'));
    expect(got).toEqual([]);
    await next();
    expect(got).toEqual(['CONTAINER_STOPPED_EVENT']);
  });
});
