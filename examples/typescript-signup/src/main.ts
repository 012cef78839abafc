// node dist/src/main.js [--url http://127.0.0.1:50051] <imp_uid> <account_id> [merchant_uid]
// One signup against a running service (e.g. `cargo run --release -- serve --sandbox`).
// CALLER_TOKEN, when set, is sent as the bearer token.

import { parseArgs } from "node:util";
import { Code } from "@connectrpc/connect";
import { callError } from "./errors.js";
import { certificationClient, holderOf, signUp } from "./signup.js";

const { values, positionals } = parseArgs({
  options: { url: { type: "string", default: "http://127.0.0.1:50051" } },
  allowPositionals: true,
});
const [impUid, accountId, merchantUid] = positionals;
if (!impUid || !accountId) {
  console.error("usage: node dist/src/main.js [--url URL] <imp_uid> <account_id> [merchant_uid]");
  process.exit(2);
}

const client = certificationClient(values.url!, process.env["CALLER_TOKEN"]);
try {
  const holder = await holderOf(client, impUid);
  console.log(holder ? `held by ${holder.accountId} since ${holder.since.toISOString()}` : "held by nobody yet");
  console.log(JSON.stringify(await signUp(client, { impUid, accountId, merchantUid })));
} catch (err) {
  const e = callError(err);
  console.error(`failed: ${Code[e.code]}, reason ${e.errorInfo?.reason ?? "-"}: ${e.message}`);
  process.exit(1);
}
