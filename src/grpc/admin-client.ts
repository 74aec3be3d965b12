// The client side of vmlet.admin.v1.Admin (admin-proto.ts), for the CLI.
import { credentials, makeGenericClientConstructor, status, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { adminDefinition, type AdminPullReply, type AdminPullRequest } from './admin-proto.js';
import { codeName } from './rpc-log.js';

/** A failed call: `code` is the gRPC code's name (UNAVAILABLE, NOT_FOUND, …). */
export class AdminCallError extends Error {
  constructor(
    readonly code: string,
    readonly details: string,
  ) {
    super(`${code}: ${details}`);
  }
}

/** Pulls through the server on `socket`, calling `onProgress` with each report; resolves to the image id. */
export async function adminPull(socket: string, req: AdminPullRequest, onProgress: (r: AdminPullReply) => void): Promise<string> {
  const Admin = makeGenericClientConstructor(adminDefinition, 'Admin');
  const client = new Admin(`unix:${socket}`, credentials.createInsecure());
  try {
    return await new Promise<string>((resolve, reject) => {
      const call = (client as unknown as { PullImage(r: AdminPullRequest): ClientReadableStream<AdminPullReply> }).PullImage(req);
      let imageRef: string | undefined;
      call.on('data', (r: AdminPullReply) => {
        if (r.imageRef) imageRef = r.imageRef;
        else onProgress(r);
      });
      call.on('error', (e: ServiceError) => reject(new AdminCallError(codeName(e.code ?? status.UNKNOWN), e.details || e.message)));
      call.on('end', () => (imageRef ? resolve(imageRef) : reject(new AdminCallError('UNKNOWN', 'the server ended the pull without an image id'))));
    });
  } finally {
    client.close();
  }
}
