// Reading the service's error details: the `grpc-status-details-bin` trailer holds a serialized
// google.rpc.Status whose `details` are Anys; ErrorInfo (always), BadRequest (INVALID_ARGUMENT)
// and RetryInfo (an open PortOne circuit) are unpacked from them. Done by hand here, with types
// generated from googleapis' own protos, because that is what a caller in any language does;
// Connect's `ConnectError.findDetails(ErrorInfoSchema)` is the one-line shortcut (the test checks
// that both agree).

import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  RetryInfoSchema,
  type BadRequest,
  type ErrorInfo,
  type RetryInfo,
} from "./gen/google/rpc/error_details_pb.js";
import { StatusSchema, type Status } from "./gen/google/rpc/status_pb.js";

/** The ErrorInfo domain of every error this service sends. */
export const DOMAIN = "certification.v1";

/** What a failed call says, decoded from its trailers. */
export interface CallError {
  code: Code;
  message: string;
  /** Present on every error the service itself raises; absent e.g. for a transport failure. */
  errorInfo?: ErrorInfo;
  /** Present with INVALID_ARGUMENT: which field, and why. */
  badRequest?: BadRequest;
  /** Present when the service knows how long to wait (open PortOne circuit). */
  retryInfo?: RetryInfo;
}

/** Decodes the `grpc-status-details-bin` trailer (base64, as every `-bin` metadata key). */
export function statusFromTrailers(trailers: Headers): Status | undefined {
  const value = trailers.get("grpc-status-details-bin");
  if (value === null) return undefined;
  // Node's base64 decoder accepts the unpadded form gRPC implementations may send.
  return fromBinary(StatusSchema, Buffer.from(value, "base64"));
}

/** Everything a caller switches on, from any error a call threw. */
export function callError(err: unknown): CallError {
  const connectError = ConnectError.from(err);
  const result: CallError = { code: connectError.code, message: connectError.rawMessage };
  // Connect keeps the trailers of a failed call in `metadata`.
  const status = statusFromTrailers(connectError.metadata);
  for (const any of status?.details ?? []) {
    // Unknown detail types are skipped: the service may add more.
    result.errorInfo ??= anyUnpack(any, ErrorInfoSchema);
    result.badRequest ??= anyUnpack(any, BadRequestSchema);
    result.retryInfo ??= anyUnpack(any, RetryInfoSchema);
  }
  return result;
}

/** The machine-readable reason, when the error is one of this service's own. */
export function reasonOf(err: unknown): string | undefined {
  const info = callError(err).errorInfo;
  return info?.domain === DOMAIN ? info.reason : undefined;
}
