// A signup service's side of phone identity verification (본인인증), in two steps:
//
//   1. beginSignup(): before the browser opens PortOne's popup, BeginVerification (PURPOSE_SIGNUP,
//      the new account's id, optionally whom the user said they are). The service issues the
//      `merchant_uid`; keep it with the pending signup (server side) and hand it to the browser
//      for `IMP.certification({merchant_uid})`.
//   2. completeSignup(): when the browser returns the `imp_uid`, Verify(imp_uid, merchant_uid)
//      checks the certification, redeems the session once and binds the person to the session's
//      account in one call; act on `bound`, or on the error's reason.

import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { CertificationService, Provider, Purpose } from "./gen/certification/v1/certification_pb.js";
import { callError } from "./errors.js";

export type CertificationClient = Client<typeof CertificationService>;

/**
 * A gRPC transport (HTTP/2 without TLS here; use an `https://` URL and TLS options in production).
 * `token`, when set, goes out as `authorization: Bearer …` on every call.
 */
export function grpcTransport(baseUrl: string, token?: string): Transport {
  return createGrpcTransport({
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
}

/** A CertificationService client over gRPC. */
export function certificationClient(baseUrl: string, token?: string): CertificationClient {
  return createClient(CertificationService, grpcTransport(baseUrl, token));
}

export interface BeginSignupRequest {
  /** The account this signup creates: the session binds the certified person to it. */
  accountId: string;
  /** The minimum age for this signup; the service's configured MIN_AGE when unset. */
  minAge?: number;
  /**
   * Whom the user said they are in the signup form; every field optional. A certified person who
   * differs is refused (IDENTITY_MISMATCH). Personal data: never log it.
   */
  expected?: { name?: string; birthDate?: string; phone?: string };
}

/** A verification session: hand `merchantUid` to the browser, keep both with the pending signup. */
export interface PendingSignup {
  accountId: string;
  /** For `IMP.certification({merchant_uid})`, and for the Verify that completes the signup. */
  merchantUid: string;
  /** The session's deadline: after it, start over with a new beginSignup(). */
  expiresAt: Date;
}

/** Step 1: begins a PURPOSE_SIGNUP session for the new account, before the browser's popup. */
export async function beginSignup(client: CertificationClient, req: BeginSignupRequest, signal?: AbortSignal): Promise<PendingSignup> {
  const res = await client.beginVerification(
    {
      purpose: Purpose.SIGNUP,
      // This example drives PortOne V1's popup (IMP.certification with a merchant_uid); a V2
      // integration leaves it unset or asks for PORTONE_V2 and reads identityVerificationId.
      provider: Provider.PORTONE_V1,
      accountId: req.accountId,
      minAge: req.minAge,
      expected: req.expected,
    },
    { timeoutMs: 10_000, signal },
  );
  return {
    accountId: req.accountId,
    merchantUid: res.merchantUid,
    expiresAt: res.expiresAt ? timestampDate(res.expiresAt) : new Date(0),
  };
}

export type SignupOutcome =
  /** The account now holds the person (a retried call answers exactly as the first one did). */
  | { kind: "registered"; accountId: string; name: string; age: number }
  /** The person already holds another account: offer login or account recovery, not signup. */
  | { kind: "already_registered" }
  /** The user must certify again (after a new beginSignup()), or cannot sign up: show `reason`'s message. */
  | { kind: "refused"; reason: string; detail: string }
  /** Nothing was decided: try again after `retryAfterMs` (or a backoff of your own). */
  | { kind: "retry_later"; reason: string; retryAfterMs?: number };

/**
 * Step 2: the browser came back with `impUid`. Verify redeems the signup's session (the
 * `merchantUid` kept from step 1, never one the browser makes up) once; retrying with the same
 * `impUid` (a lost response, a double click) answers as the first call did.
 */
export async function completeSignup(
  client: CertificationClient,
  signup: { accountId: string; merchantUid: string },
  impUid: string,
  signal?: AbortSignal,
): Promise<SignupOutcome> {
  try {
    // account_id is optional with a session (the session's is bound), but naming it makes the
    // service check that this session is this account's (SESSION_MISMATCH otherwise).
    const res = await client.verify(
      { impUid, merchantUid: signup.merchantUid, accountId: signup.accountId },
      { timeoutMs: 10_000, signal },
    );
    const age = res.ageCheck?.age ?? 0;
    // `bound` is the answer. A person under the session's minimum age is certified but never
    // bound (`age_check.satisfied: false`). `duplicate` says who held the person before the first
    // Verify of this session; deciding on it instead of `bound` would refuse good signups.
    if (res.bound) {
      return { kind: "registered", accountId: signup.accountId, name: res.identity?.name ?? "", age };
    }
    if (res.ageCheck && !res.ageCheck.satisfied) {
      return { kind: "refused", reason: "UNDERAGE", detail: `${age} years old, ${res.ageCheck.minAge} required` };
    }
    throw new Error("Verify of a signup session with an account answered bound: false");
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
      case "CERTIFIED_IN_FUTURE":
      case "MERCHANT_MISMATCH": // the certification was made for another session
      case "CERTIFIED_BEFORE_SESSION":
      case "UNDERAGE": // only with REJECT_UNDERAGE: otherwise the answer says bound: false
      case "CERTIFICATION_NOT_FOUND":
      case "INVALID_IMP_UID":
      case "SESSION_USED": // the session was redeemed by another certification: start over
      case "SESSION_EXPIRED": // start over with a new beginSignup()
      case "UPSTREAM_REJECTED":
        return { kind: "refused", reason, detail: e.message };
      case "IDENTITY_MISMATCH": {
        const fields = e.errorInfo?.metadata["fields"];
        return { kind: "refused", reason, detail: fields ? `differs from the signup form: ${fields}` : e.message };
      }
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
        // No reason of ours (a transport error, a deadline hit on the client side), one that is
        // this code's bug (SESSION_REQUIRED, SESSION_NOT_FOUND, SESSION_MISMATCH,
        // INVALID_MERCHANT_UID, INVALID_ACCOUNT_ID), or one this caller does not know yet: let
        // the caller's error handling have it.
        throw err;
    }
  }
}

/**
 * Whether the person the browser certified (`impUid`, made for the signup's session) already holds
 * an account. Asked through the signup's own session; binds, records and redeems nothing.
 */
export async function holderOf(
  client: CertificationClient,
  signup: Pick<PendingSignup, "merchantUid">,
  impUid: string,
): Promise<{ accountId: string; since: Date } | undefined> {
  const res = await client.checkDuplicate(
    { key: { case: "impUid", value: impUid }, merchantUid: signup.merchantUid },
    { timeoutMs: 10_000 },
  );
  if (!res.duplicate) return undefined;
  return { accountId: res.accountId, since: res.boundAt ? timestampDate(res.boundAt) : new Date(0) };
}
