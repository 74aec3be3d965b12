// GetContainerEvents: a server stream of container state changes (the kubelet's Evented PLEG),
// each with its pod's status and its containers' statuses, as PodSandboxStatus answers them, so
// the kubelet needs no relist to act on it. Open until the client goes; many clients at once.
import type { handleServerStreamingCall } from '@grpc/grpc-js';
import type { Logger } from '../log.js';
import type { PodManager } from '../pod/manager.js';
import type { ContainerEvent } from '../pod/container-events.js';
import { podSandboxStatus } from '../pod/sandbox-status.js';
import type { GetEventsRequest__Output } from '../gen/runtime/v1/GetEventsRequest.js';
import type { ContainerEventResponse } from '../gen/runtime/v1/ContainerEventResponse.js';
import { wireContainerStatus, wirePodSandboxStatus } from './pod-wire.js';

export function containerEventsHandler(log: Logger, pods: PodManager): handleServerStreamingCall<GetEventsRequest__Output, ContainerEventResponse> {
  return (call) => {
    const send = (e: ContainerEvent) => {
      const res: ContainerEventResponse = { container_id: e.containerId, container_event_type: e.type, created_at: e.createdAt.toString() };
      try {
        const st = podSandboxStatus(pods, e.sandboxId, false);
        res.pod_sandbox_status = wirePodSandboxStatus(st.sandbox, st.ips);
        res.containers_statuses = st.containers.map(wireContainerStatus);
      } catch {
        // The pod is gone (its last containers' DELETED events): the event alone.
      }
      call.write(res);
    };
    pods.events.on('event', send);
    log.info({ rpc: 'GetContainerEvents' }, 'container event stream opened');
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      pods.events.off('event', send);
      log.info({ rpc: 'GetContainerEvents' }, 'container event stream closed');
    };
    call.on('cancelled', close);
    call.on('close', close);
    call.on('error', close);
  };
}
