// Starts the service binary with `serve --sandbox` on a free port and a fresh SQLite file, and
// waits until gRPC health reports CertificationService SERVING.

import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus } from "../src/gen/grpc/health/v1/health_pb.js";

const here = fileURLToPath(new URL(".", import.meta.url)); // dist/test/
/** CERTIFICATION_SERVICE_BIN, else the repository's debug build. */
export const binary = process.env["CERTIFICATION_SERVICE_BIN"] ?? resolve(here, "../../../../target/debug/certification-service");

export interface RunningService {
  baseUrl: string;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address ? ok(address.port) : fail(new Error("no port"))));
    });
  });
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((ok) => (child.exitCode !== null || child.signalCode !== null ? ok() : child.once("exit", () => ok())));
}

export async function startService(): Promise<RunningService> {
  if (!existsSync(binary)) {
    throw new Error(`${binary} does not exist: build it (cargo build --bin certification-service) or set CERTIFICATION_SERVICE_BIN`);
  }
  const dir = mkdtempSync(join(tmpdir(), "cs-signup-example-"));
  const port = await freePort();
  // A minimal environment: nothing from the caller's shell (DATABASE_URL, REDIS_URL,
  // CALLER_TOKENS…) leaks in, and the database is new on every run.
  const child = spawn(binary, ["serve", "--sandbox"], {
    env: {
      PATH: process.env["PATH"] ?? "/usr/bin:/bin",
      GRPC_LISTEN_ADDR: `127.0.0.1:${port}`,
      METRICS_LISTEN_ADDR: "off",
      DATABASE_URL: `sqlite://${join(dir, "cs.db")}?mode=rwc`,
      SHUTDOWN_DRAIN_DELAY: "0s",
      RUST_LOG: "warn",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  child.stdout!.on("data", (chunk: Buffer) => (log += chunk.toString()));
  child.stderr!.on("data", (chunk: Buffer) => (log += chunk.toString()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited(child);
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };

  const baseUrl = `http://127.0.0.1:${port}`;
  const health = createClient(Health, createGrpcTransport({ baseUrl }));
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      await stop();
      throw new Error(`the service exited (${child.exitCode ?? child.signalCode}) before SERVING:\n${log}`);
    }
    try {
      const res = await health.check({ service: "certification.v1.CertificationService" }, { timeoutMs: 1_000 });
      if (res.status === HealthCheckResponse_ServingStatus.SERVING) return { baseUrl, stop };
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`the service was not SERVING within 30 s:\n${log}`);
    }
    await new Promise((ok) => setTimeout(ok, 100));
  }
}
