// Container state changes as events, for GetContainerEvents (the kubelet's Evented PLEG): CREATED
// when a container enters the index (ContainerIndex), STARTED and STOPPED when its record is saved
// with a new state (records on disk are saved at every change; a VM's exit is sent as its state
// changes in memory, before the save), DELETED when it leaves the index
// or its record goes. A state a container already had is not sent again. Sent on the next turn of
// the event loop, so the status that goes with an event is the one the verb left.
import { EventEmitter } from 'node:events';
import type { ContainerRecord, ContainerState } from './records.js';

export type ContainerEventType = 'CONTAINER_CREATED_EVENT' | 'CONTAINER_STARTED_EVENT' | 'CONTAINER_STOPPED_EVENT' | 'CONTAINER_DELETED_EVENT';

export interface ContainerEvent {
  containerId: string;
  sandboxId: string;
  type: ContainerEventType;
  /** ns since the epoch, as the CRI's created_at. */
  createdAt: bigint;
}

const TYPE: Record<ContainerState, ContainerEventType | undefined> = {
  created: 'CONTAINER_CREATED_EVENT',
  running: 'CONTAINER_STARTED_EVENT',
  exited: 'CONTAINER_STOPPED_EVENT',
  unknown: undefined,
};

export class ContainerEvents extends EventEmitter<{ event: [ContainerEvent] }> {
  private readonly last = new Map<string, ContainerState>();

  /** The states the containers had at vmlet's start: no event for them. */
  seed(containers: Iterable<ContainerRecord>): void {
    for (const c of containers) this.last.set(c.id, c.state);
  }

  /** A container entered the index. */
  added(c: ContainerRecord): void {
    if (this.last.has(c.id)) return;
    this.last.set(c.id, c.state);
    const type = TYPE[c.state];
    if (type) this.send(c, type);
  }

  /** Its record was saved: an event when its state changed (a container not in the index yet waits for added). */
  saved(c: ContainerRecord): void {
    if (!this.last.has(c.id) || this.last.get(c.id) === c.state) return;
    this.last.set(c.id, c.state);
    const type = TYPE[c.state];
    if (type) this.send(c, type);
  }

  removed(c: ContainerRecord): void {
    if (!this.last.delete(c.id)) return;
    this.send(c, 'CONTAINER_DELETED_EVENT');
  }

  private send(c: ContainerRecord, type: ContainerEventType): void {
    const e: ContainerEvent = { containerId: c.id, sandboxId: c.sandboxId, type, createdAt: BigInt(Date.now()) * 1_000_000n };
    if (this.listenerCount('event') > 0) setImmediate(() => this.emit('event', e));
  }
}

/** The index of containers by id, telling the events of every container that enters or leaves it. */
export class ContainerIndex extends Map<string, ContainerRecord> {
  constructor(private readonly events: ContainerEvents) {
    super();
  }

  override set(id: string, c: ContainerRecord): this {
    super.set(id, c);
    // Map's constructor calls set before this.events exists; vmlet's index starts empty.
    this.events?.added(c);
    return this;
  }

  override delete(id: string): boolean {
    const c = super.get(id);
    const had = super.delete(id);
    if (c) this.events.removed(c);
    return had;
  }
}
