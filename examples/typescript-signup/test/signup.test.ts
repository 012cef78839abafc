// The signup flow against the real service (`serve --sandbox`, fresh database), over gRPC:
// beginSignup() issues the session, the sandbox's Sandbox/Certify plays the browser (PortOne's
// popup) for its merchant_uid, completeSignup() verifies the imp_uid the "browser" returned.
// Every test certifies its own people (`person_key`: a distinct CI, DI and phone, the built-in
// person's other traits), so the tests do not depend on one another's bindings.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema } from "../src/gen/google/rpc/error_details_pb.js";
import { Person, Sandbox } from "../src/gen/certification/sandbox/v1/sandbox_pb.js";
import { CertificationService, Provider, Purpose } from "../src/gen/certification/v1/certification_pb.js";
import { callError, reasonOf } from "../src/errors.js";
import {
  beginSignup,
  completeSignup,
  grpcTransport,
  holderOf,
  type BeginSignupRequest,
  type CertificationClient,
  type PendingSignup,
} from "../src/signup.js";
import { startService, type RunningService } from "./service.js";

let service: RunningService;
let client: CertificationClient;
let sandbox: Client<typeof Sandbox>;

before(async () => {
  service = await startService();
  const transport = grpcTransport(service.baseUrl);
  client = createClient(CertificationService, transport);
  sandbox = createClient(Sandbox, transport);
});
after(async () => {
  await service?.stop();
});

/** The browser's part: `person` (as `personKey`) completes PortOne's popup for the session. */
async function certify(merchantUid: string, person: Person, personKey: string, certifiedSecondsAgo?: number): Promise<string> {
  const res = await sandbox.certify({ merchantUid, person, personKey, certifiedSecondsAgo });
  assert.equal(res.merchantUid, merchantUid);
  return res.impUid;
}

/** A signup from the form to the popup: the session, and the imp_uid the browser came back with. */
async function certifiedSignup(req: BeginSignupRequest, person: Person, personKey: string): Promise<{ pending: PendingSignup; impUid: string }> {
  const pending = await beginSignup(client, req);
  return { pending, impUid: await certify(pending.merchantUid, person, personKey) };
}

async function rejection(call: Promise<unknown>): Promise<unknown> {
  try {
    await call;
  } catch (err) {
    return err;
  }
  assert.fail("the call succeeded");
}

describe("signup", () => {
  test("beginSignup issues a session: a vs_ merchant_uid and a deadline in the future", async () => {
    const pending = await beginSignup(client, { accountId: "user-begin" });
    assert.match(pending.merchantUid, /^vs_[0-9a-f]{32}$/);
    assert.ok(pending.expiresAt.getTime() > Date.now());
    assert.notEqual((await beginSignup(client, { accountId: "user-begin" })).merchantUid, pending.merchantUid);
  });

  test("happy path: the adult's certification binds the session's account; a retry answers the same", async () => {
    const { pending, impUid } = await certifiedSignup(
      { accountId: "user-1001", expected: { name: "홍길동", birthDate: "1990-03-15" } },
      Person.ADULT,
      "happy",
    );
    assert.equal(await holderOf(client, pending, impUid), undefined, "nobody holds a new person yet");

    const outcome = await completeSignup(client, pending, impUid);
    assert.ok(outcome.kind === "registered", JSON.stringify(outcome));
    assert.equal(outcome.accountId, "user-1001");
    assert.equal(outcome.name, "홍길동");
    assert.ok(outcome.age >= 30);
    assert.equal((await holderOf(client, pending, impUid))?.accountId, "user-1001");

    // A lost response, a double click: the same imp_uid under the same session answers as the
    // first call did (bound, and `duplicate` as it was before the first call).
    const raw = await client.verify({ impUid, merchantUid: pending.merchantUid });
    assert.equal(raw.bound, true);
    assert.equal(raw.duplicate?.duplicate, false);
    assert.equal(raw.certification?.impUid, impUid);
    assert.equal(raw.certification?.merchantUid, pending.merchantUid);
    assert.equal(raw.identity?.birthDate, "1990-03-15");
    assert.deepEqual(await completeSignup(client, pending, impUid), outcome);
  });

  test("the same adult for a second account: ALREADY_EXISTS, ErrorInfo reason ALREADY_REGISTERED", async () => {
    const first = await certifiedSignup({ accountId: "user-2001" }, Person.ADULT, "twice");
    assert.equal((await completeSignup(client, first.pending, first.impUid)).kind, "registered");

    // The same person (same person_key) certifies again, for another account's session.
    const { pending, impUid } = await certifiedSignup({ accountId: "user-2002" }, Person.ADULT, "twice");
    assert.equal((await holderOf(client, pending, impUid))?.accountId, "user-2001");
    const err = await rejection(client.verify({ impUid, merchantUid: pending.merchantUid }));
    const e = callError(err);
    assert.equal(e.code, Code.AlreadyExists);
    assert.equal(e.errorInfo?.domain, "certification.v1");
    assert.equal(e.errorInfo?.reason, "ALREADY_REGISTERED");
    // Connect's own decoding of the same trailer agrees with ours.
    assert.equal(ConnectError.from(err).findDetails(ErrorInfoSchema)[0]?.reason, "ALREADY_REGISTERED");
    // And the signup flow turns it into "log in instead", on a retry too.
    assert.deepEqual(await completeSignup(client, pending, impUid), { kind: "already_registered" });
  });

  test("a minor under a min_age 19 session: certified, not bound, age_check not satisfied", async () => {
    const { pending, impUid } = await certifiedSignup({ accountId: "user-3001", minAge: 19 }, Person.MINOR, "minor");
    const raw = await client.verify({ impUid, merchantUid: pending.merchantUid });
    assert.equal(raw.bound, false);
    assert.equal(raw.ageCheck?.satisfied, false);
    assert.equal(raw.ageCheck?.minAge, 19);
    assert.ok((raw.ageCheck?.age ?? 99) < 19);
    const outcome = await completeSignup(client, pending, impUid);
    assert.ok(outcome.kind === "refused", JSON.stringify(outcome));
    assert.equal(outcome.reason, "UNDERAGE");
    assert.equal(await holderOf(client, pending, impUid), undefined, "a minor is never bound");
  });

  test("a replayed session: another person's certification under a redeemed session is SESSION_USED", async () => {
    const { pending, impUid } = await certifiedSignup({ accountId: "user-4001" }, Person.ADULT, "replay-first");
    assert.equal((await completeSignup(client, pending, impUid)).kind, "registered");

    const other = await certify(pending.merchantUid, Person.ADULT, "replay-second");
    const e = callError(await rejection(client.verify({ impUid: other, merchantUid: pending.merchantUid })));
    assert.equal(e.code, Code.FailedPrecondition);
    assert.equal(e.errorInfo?.reason, "SESSION_USED");
    const outcome = await completeSignup(client, pending, other);
    assert.ok(outcome.kind === "refused" && outcome.reason === "SESSION_USED", JSON.stringify(outcome));
    // Asked through a session of its own: the replayed person is bound to nobody.
    const asked = await certifiedSignup({ accountId: "user-4002" }, Person.ADULT, "replay-second");
    assert.equal(await holderOf(client, asked.pending, asked.impUid), undefined, "the replayed person is bound to nobody");
  });

  test("a Verify without a session: FAILED_PRECONDITION, SESSION_REQUIRED; one the service never issued: SESSION_NOT_FOUND", async () => {
    const pending = await beginSignup(client, { accountId: "user-5001" });
    const impUid = await certify(pending.merchantUid, Person.ADULT, "no-session");
    let e = callError(await rejection(client.verify({ impUid, accountId: "user-5001" })));
    assert.equal(e.code, Code.FailedPrecondition);
    assert.equal(e.errorInfo?.reason, "SESSION_REQUIRED");

    e = callError(await rejection(client.verify({ impUid, merchantUid: "signup-0001" })));
    assert.equal(e.code, Code.NotFound);
    assert.equal(e.errorInfo?.reason, "SESSION_NOT_FOUND");
    // Both are bugs of the caller, not the user's doing: completeSignup leaves them to the caller.
    assert.equal(reasonOf(await rejection(completeSignup(client, { accountId: "user-5001", merchantUid: "" }, impUid))), "SESSION_REQUIRED");

    // The session itself was not touched: it still completes the signup.
    assert.equal((await completeSignup(client, pending, impUid)).kind, "registered");
  });

  test("another account than the session's: INVALID_ARGUMENT, SESSION_MISMATCH", async () => {
    const { pending, impUid } = await certifiedSignup({ accountId: "user-6001" }, Person.ADULT, "mismatch");
    const e = callError(await rejection(client.verify({ impUid, merchantUid: pending.merchantUid, accountId: "user-6002" })));
    assert.equal(e.code, Code.InvalidArgument);
    assert.equal(e.errorInfo?.reason, "SESSION_MISMATCH");
  });

  test("someone else than the signup form says: IDENTITY_MISMATCH naming the fields", async () => {
    const { pending, impUid } = await certifiedSignup(
      { accountId: "user-7001", expected: { name: "홍길동", birthDate: "1991-03-15" } },
      Person.ADULT,
      "identity",
    );
    const outcome = await completeSignup(client, pending, impUid);
    assert.ok(outcome.kind === "refused", JSON.stringify(outcome));
    assert.equal(outcome.reason, "IDENTITY_MISMATCH");
    assert.match(outcome.detail, /birth_date/);
  });

  test("bad input: INVALID_ARGUMENT with ErrorInfo and a BadRequest naming the field", async () => {
    const pending = await beginSignup(client, { accountId: "user-8001" });
    const err = await rejection(client.verify({ impUid: "imp_1/../users/getToken", merchantUid: pending.merchantUid }));
    const e = callError(err);
    assert.equal(e.code, Code.InvalidArgument);
    assert.equal(e.errorInfo?.reason, "INVALID_IMP_UID");
    assert.equal(e.badRequest?.fieldViolations[0]?.field, "imp_uid");
    assert.equal(ConnectError.from(err).findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field, "imp_uid");
  });

  test("a stale certification (two hours old) is refused with its reason", async () => {
    const pending = await beginSignup(client, { accountId: "user-9001" });
    const impUid = await certify(pending.merchantUid, Person.ADULT, "stale", 7200);
    const outcome = await completeSignup(client, pending, impUid);
    assert.ok(outcome.kind === "refused", JSON.stringify(outcome));
    assert.equal(outcome.reason, "CERTIFICATION_EXPIRED");
  });

  test("after Unlink (회원 탈퇴) the person may sign up again with a new account", async () => {
    const first = await certifiedSignup({ accountId: "user-10001" }, Person.ADULT, "rejoin");
    assert.equal((await completeSignup(client, first.pending, first.impUid)).kind, "registered");

    const unlinked = await client.unlink({ accountId: "user-10001" });
    assert.equal(unlinked.unlinked, true);
    assert.equal((await client.unlink({ accountId: "user-10001" })).unlinked, false);
    assert.equal(await holderOf(client, first.pending, first.impUid), undefined);

    const { pending, impUid } = await certifiedSignup({ accountId: "user-10002" }, Person.ADULT, "rejoin");
    const outcome = await completeSignup(client, pending, impUid);
    assert.ok(outcome.kind === "registered", JSON.stringify(outcome));
    assert.equal((await holderOf(client, first.pending, first.impUid))?.accountId, "user-10002");
  });

  test("holderOf asks only through the caller's own session of a purpose that answers the holder", async () => {
    const { pending, impUid } = await certifiedSignup({ accountId: "user-11001" }, Person.ADULT, "asked");
    // No session named: the certification was made for one, so it answers through it only.
    let e = callError(await rejection(client.checkDuplicate({ key: { case: "impUid", value: impUid } })));
    assert.equal(e.code, Code.FailedPrecondition);
    assert.equal(e.errorInfo?.reason, "SESSION_REQUIRED");
    // An age gate's session never answers who holds its person.
    const gate = await client.beginVerification({ purpose: Purpose.AGE_CHECK, provider: Provider.PORTONE_V1, minAge: 19 });
    const gated = await certify(gate.merchantUid, Person.ADULT, "asked");
    e = callError(await rejection(holderOf(client, gate, gated)));
    assert.equal(e.code, Code.PermissionDenied);
    assert.equal(e.errorInfo?.reason, "PURPOSE_NOT_ALLOWED");
    assert.equal(await holderOf(client, pending, impUid), undefined);
  });

  test("reasonOf ignores errors that are not the service's own", async () => {
    assert.equal(reasonOf(new ConnectError("boom", Code.Unavailable)), undefined);
  });
});
