// ImageService: every RPC answers UNIMPLEMENTED until the image store lands (issue: image service).
import type { ServiceDefinition, UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from '../log.js';
import { withUnimplemented } from './rpc.js';

export function imageService(log: Logger, definition: ServiceDefinition): UntypedServiceImplementation {
  return withUnimplemented(log, 'ImageService', definition, {});
}
