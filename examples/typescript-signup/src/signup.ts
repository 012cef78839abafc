// What a signup service does with the `imp_uid` the browser hands it after PortOne's
// certification popup: Verify with the new account's id, which checks the certification and binds
// the person to the account in one call, then act on the answer or on the error's reason.

import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { CertificationService } from "./gen/certification/v1/certification_pb.js";
import { callError } from "./errors.js";

export type CertificationClient = Client<typeof CertificationService>;

/** A client over gRPC (HTTP/2 without TLS here; use an `https://` URL and TLS options in production). */
export function certificationClient(baseUrl: string, token?: string): CertificationClient {
  const transport = createGrpcTransport({
    baseUrl,
    interceptors: token
      ? [
          (next) => (req) => {
            req.header.set("authorization", `Bearer ${token}`);
            return next(req);
          },
        ]
      : [],
  });
  return createClient(CertificationService, transport);
}

export interface SignupRequest {
  /** From the browser, after PortOne's popup. */
  impUid: string;
  /** The account this signup creates. */
  accountId: string;
  /** The id this signup issued when it opened the popup; empty to skip the check. */
  merchantUid?: string;
}

export type SignupOutcome =
  /** The account now holds the person. `retried`: an earlier identical call already bound it. */
  | { kind: "registered"; accountId: string; name: string; age: number; adult: boolean; retried: boolean }
  /** The person already holds another account: offer login or account recovery, not signup. */
  | { kind: "already_registered" }
  /** The user must certify again, or cannot sign up: show `reason`'s message. */
  | { kind: "refused"; reason: string; detail: string }
  /** Nothing was decided: try again after `retryAfterMs` (or a backoff of your own). */
  | { kind: "retry_later"; reason: string; retryAfterMs?: number };

export async function signUp(client: CertificationClient, req: SignupRequest, signal?: AbortSignal): Promise<SignupOutcome> {
  try {
    const res = await client.verify(
      { impUid: req.impUid, accountId: req.accountId, merchantUid: req.merchantUid ?? "" },
      { timeoutMs: 10_000, signal },
    );
    // `bound` is the answer. `duplicate` says who held the person BEFORE this call: on a retry of
    // the same signup (a lost response, a double click) that is this very account, and the call
    // still succeeds with `bound: true`. Refusing on `duplicate` alone would lock the user out.
    if (!res.bound) throw new Error("Verify with an account_id answered bound: false");
    const retried = res.duplicate?.duplicate === true && res.duplicate.accountId === req.accountId;
    return {
      kind: "registered",
      accountId: req.accountId,
      name: res.identity?.name ?? "",
      age: res.ageCheck?.age ?? 0,
      adult: res.ageCheck?.satisfied ?? false,
      retried,
    };
  } catch (err) {
    const e = callError(err);
    const reason = e.errorInfo?.reason;
    switch (reason) {
      case "ALREADY_REGISTERED":
        return { kind: "already_registered" };
      case "CERTIFICATION_REUSED": // this imp_uid already served another account's signup
      case "ACCOUNT_HAS_IDENTITY": // this account holds another person
      case "NOT_CERTIFIED":
      case "CERTIFICATION_EXPIRED":
      case "MERCHANT_MISMATCH":
      case "UNDERAGE":
      case "CERTIFICATION_NOT_FOUND":
      case "INVALID_IMP_UID":
      case "INVALID_ACCOUNT_ID":
      case "INVALID_MERCHANT_UID":
        return { kind: "refused", reason, detail: e.message };
      case "REJOIN_COOLDOWN": {
        const until = e.errorInfo?.metadata["until"];
        return { kind: "refused", reason, detail: until ? `a new signup is possible from ${until}` : e.message };
      }
      case "UPSTREAM_UNAVAILABLE":
      case "UPSTREAM_AUTH_FAILED":
      case "STORE_UNAVAILABLE":
      case "NOT_READY":
      case "OVERLOADED":
      case "DEADLINE_EXCEEDED": {
        const delay = e.retryInfo?.retryDelay;
        const retryAfterMs = delay ? Number(delay.seconds) * 1000 + Math.floor(delay.nanos / 1e6) : undefined;
        return { kind: "retry_later", reason, retryAfterMs };
      }
      default:
        // No reason of ours (a transport error, a deadline hit on the client side) or one this
        // caller does not know yet: let the caller's error handling have it.
        throw err;
    }
  }
}

/** Whether the person behind `impUid` already holds an account, before asking for signup details. */
export async function holderOf(client: CertificationClient, impUid: string): Promise<{ accountId: string; since: Date } | undefined> {
  const res = await client.checkDuplicate({ key: { case: "impUid", value: impUid } }, { timeoutMs: 10_000 });
  if (!res.duplicate) return undefined;
  return { accountId: res.accountId, since: res.boundAt ? timestampDate(res.boundAt) : new Date(0) };
}
