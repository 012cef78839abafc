// The signup flow against the real service (`serve --sandbox`, fresh database), over gRPC.
// Sandbox people (README "The PortOne sandbox"): imp_100000000001 and imp_100000000002 are the
// same person (홍길동) certified twice; imp_100000000005 was certified two hours ago.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema } from "../src/gen/google/rpc/error_details_pb.js";
import { callError, reasonOf } from "../src/errors.js";
import { certificationClient, holderOf, signUp, type CertificationClient } from "../src/signup.js";
import { startService, type RunningService } from "./service.js";

let service: RunningService;
let client: CertificationClient;

before(async () => {
  service = await startService();
  client = certificationClient(service.baseUrl);
});
after(async () => {
  await service?.stop();
});

async function rejection(call: Promise<unknown>): Promise<unknown> {
  try {
    await call;
  } catch (err) {
    return err;
  }
  assert.fail("the call succeeded");
}

// The steps build on each other (one database), so they run in order.
describe("signup", () => {
  test("a new person: nobody holds them yet", async () => {
    assert.equal(await holderOf(client, "imp_100000000001"), undefined);
  });

  test("signup binds the person to the new account", async () => {
    const outcome = await signUp(client, { impUid: "imp_100000000001", accountId: "user-1001", merchantUid: "signup-0001" });
    assert.ok(outcome.kind === "registered", JSON.stringify(outcome));
    assert.equal(outcome.accountId, "user-1001");
    assert.equal(outcome.name, "홍길동");
    assert.ok(outcome.age >= 30 && outcome.adult);
    assert.equal(outcome.retried, false);
  });

  test("the same signup retried: duplicate names our own account, bound is true, so it is a success", async () => {
    const raw = await client.verify({ impUid: "imp_100000000001", accountId: "user-1001", merchantUid: "signup-0001" });
    assert.equal(raw.bound, true);
    assert.equal(raw.duplicate?.duplicate, true);
    assert.equal(raw.duplicate?.accountId, "user-1001");
    const outcome = await signUp(client, { impUid: "imp_100000000001", accountId: "user-1001", merchantUid: "signup-0001" });
    assert.ok(outcome.kind === "registered", JSON.stringify(outcome));
    assert.equal(outcome.retried, true);
  });

  test("CheckDuplicate: the person, certified again, is held by the first account", async () => {
    const holder = await holderOf(client, "imp_100000000002");
    assert.ok(holder);
    assert.equal(holder.accountId, "user-1001");
    assert.ok(holder.since.getTime() > Date.now() - 60_000);
  });

  test("a second account for the same person: ALREADY_EXISTS, ErrorInfo reason ALREADY_REGISTERED", async () => {
    const err = await rejection(client.verify({ impUid: "imp_100000000002", accountId: "user-2002" }));
    const e = callError(err);
    assert.equal(e.code, Code.AlreadyExists);
    assert.equal(e.errorInfo?.domain, "certification.v1");
    assert.equal(e.errorInfo?.reason, "ALREADY_REGISTERED");
    // Connect's own decoding of the same trailer agrees with ours.
    assert.equal(ConnectError.from(err).findDetails(ErrorInfoSchema)[0]?.reason, "ALREADY_REGISTERED");
    // And the signup flow turns it into "log in instead".
    assert.deepEqual(await signUp(client, { impUid: "imp_100000000002", accountId: "user-2002" }), { kind: "already_registered" });
  });

  test("bad input: INVALID_ARGUMENT with ErrorInfo and a BadRequest naming the field", async () => {
    const err = await rejection(client.verify({ impUid: "imp_1/../users/getToken", accountId: "user-3003" }));
    const e = callError(err);
    assert.equal(e.code, Code.InvalidArgument);
    assert.equal(e.errorInfo?.reason, "INVALID_IMP_UID");
    assert.equal(e.badRequest?.fieldViolations[0]?.field, "imp_uid");
    assert.equal(ConnectError.from(err).findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field, "imp_uid");
  });

  test("a stale certification is refused with its reason", async () => {
    const outcome = await signUp(client, { impUid: "imp_100000000005", accountId: "user-5005" });
    assert.ok(outcome.kind === "refused", JSON.stringify(outcome));
    assert.equal(outcome.reason, "CERTIFICATION_EXPIRED");
  });

  test("after Unlink (회원 탈퇴) the person may sign up again with a new account", async () => {
    const unlinked = await client.unlink({ accountId: "user-1001" });
    assert.equal(unlinked.unlinked, true);
    assert.equal((await client.unlink({ accountId: "user-1001" })).unlinked, false);
    assert.equal(await holderOf(client, "imp_100000000002"), undefined);
    const outcome = await signUp(client, { impUid: "imp_100000000002", accountId: "user-2002" });
    assert.ok(outcome.kind === "registered", JSON.stringify(outcome));
    assert.equal(outcome.retried, false);
  });

  test("reasonOf ignores errors that are not the service's own", async () => {
    assert.equal(reasonOf(new ConnectError("boom", Code.Unavailable)), undefined);
  });
});
