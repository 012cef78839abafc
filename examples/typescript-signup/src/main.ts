// One signup against a running service (e.g. `cargo run --release -- serve --sandbox`):
//
//   node dist/src/main.js [--url URL] begin <account_id> [--min-age N]
//       BeginVerification (PURPOSE_SIGNUP): prints the merchant_uid for the browser's popup.
//   node dist/src/main.js [--url URL] complete <account_id> <merchant_uid> <imp_uid>
//       Verify with the imp_uid the browser returned: prints the outcome.
//   node dist/src/main.js [--url URL] sandbox <account_id> [--min-age N] [--person PERSON_ADULT] [--person-key KEY]
//       Both steps, with the sandbox's Sandbox/Certify playing the browser in between
//       (`serve --sandbox` only).
//
// CALLER_TOKEN, when set, is sent as the bearer token.

import { parseArgs } from "node:util";
import { Code, createClient } from "@connectrpc/connect";
import { Person, Sandbox } from "./gen/certification/sandbox/v1/sandbox_pb.js";
import { CertificationService } from "./gen/certification/v1/certification_pb.js";
import { callError } from "./errors.js";
import { beginSignup, completeSignup, grpcTransport, holderOf } from "./signup.js";

const usage = `usage: node dist/src/main.js [--url URL] begin <account_id> [--min-age N]
       node dist/src/main.js [--url URL] complete <account_id> <merchant_uid> <imp_uid>
       node dist/src/main.js [--url URL] sandbox <account_id> [--min-age N] [--person PERSON_ADULT] [--person-key KEY]`;

const { values, positionals } = parseArgs({
  options: {
    url: { type: "string", default: "http://127.0.0.1:50051" },
    person: { type: "string", default: "PERSON_ADULT" },
    "person-key": { type: "string" },
    "min-age": { type: "string" },
  },
  allowPositionals: true,
});
const [command, accountId, merchantUid, impUid] = positionals;
if (!accountId || !(command === "begin" || command === "sandbox" || (command === "complete" && merchantUid && impUid))) {
  console.error(usage);
  process.exit(2);
}

const transport = grpcTransport(values.url!, process.env["CALLER_TOKEN"]);
const client = createClient(CertificationService, transport);
try {
  if (command === "complete") {
    console.log(JSON.stringify(await completeSignup(client, { accountId, merchantUid: merchantUid! }, impUid!)));
  } else {
    const minAge = values["min-age"] === undefined ? undefined : Number(values["min-age"]);
    const pending = await beginSignup(client, { accountId, minAge });
    console.log(JSON.stringify(pending));
    if (command === "sandbox") {
      // The browser's part: PortOne's popup, completed by the sandbox.
      const person = Person[values.person!.replace(/^PERSON_/, "") as keyof typeof Person];
      if (typeof person !== "number") throw new Error(`unknown person ${values.person}`);
      const sandbox = createClient(Sandbox, transport);
      const certified = await sandbox.certify({ merchantUid: pending.merchantUid, person, personKey: values["person-key"] });
      console.log(`certified: ${certified.impUid}`);
      const holder = await holderOf(client, pending, certified.impUid);
      console.log(holder ? `held by ${holder.accountId} since ${holder.since.toISOString()}` : "held by nobody yet");
      console.log(JSON.stringify(await completeSignup(client, pending, certified.impUid)));
    }
  }
} catch (err) {
  const e = callError(err);
  console.error(`failed: ${Code[e.code]}, reason ${e.errorInfo?.reason ?? "-"}: ${e.message}`);
  process.exit(1);
}
