// Loads proto/api.proto (CRI v1) at run time; types come from src/gen (generated from the same file).
import { fileURLToPath } from 'node:url';
import { loadPackageDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import type { ProtoGrpcType } from '../gen/api.js';

/** proto/ sits beside src/ and dist/, so the same relative path works from both. */
export const PROTO_PATH = fileURLToPath(new URL('../../proto/api.proto', import.meta.url));

/** The options the types in src/gen were generated with (see `npm run gen`): keep them in step. */
export const LOADER_OPTIONS = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true } as const;

let cached: ProtoGrpcType | undefined;

export function loadCri(): ProtoGrpcType {
  cached ??= loadPackageDefinition(loadSync(PROTO_PATH, LOADER_OPTIONS)) as unknown as ProtoGrpcType;
  return cached;
}
