// A real BusFlow.Host for the client's tests: the repository's build, on the embedded default
// (in-memory transport, SQLite store in a temporary directory), on a free port. `kill()` sends
// SIGKILL; `start()` again runs it on the same port and database, as a restarted server.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

export const repositoryRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../../../..");

/** The host's build: BUSFLOW_HOST_DLL, or the Debug build `dotnet build BusFlow.sln` makes. */
const hostDll = process.env.BUSFLOW_HOST_DLL ?? join(repositoryRoot, "src/BusFlow.Host/bin/Debug/net10.0/BusFlow.Host.dll");

export class TestHost {
  constructor(settings = {}) {
    this.directory = mkdtempSync(join(tmpdir(), "busflow-ts-"));
    this.settings = { "BusFlow:Store:ConnectionString": `Data Source=${join(this.directory, "busflow.db")}`, ...settings };
    this.output = [];
    this.process = null;
  }

  get baseUrl() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start() {
    if (!existsSync(hostDll)) {
      throw new Error(`${hostDll} is missing: build the solution first (dotnet build BusFlow.sln), or set BUSFLOW_HOST_DLL`);
    }

    this.port ??= await freePort();
    const args = [hostDll, "--urls", this.baseUrl];
    for (const [key, value] of Object.entries(this.settings)) {
      args.push(`--${key}`, value);
    }

    const child = spawn("dotnet", args, {
      cwd: this.directory,
      env: { ...process.env, Logging__LogLevel__Default: "Warning", DOTNET_NOLOGO: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.process = child;
    const record = (chunk) => {
      this.output.push(...chunk.toString().split("\n").filter(Boolean));
      this.output.splice(0, Math.max(0, this.output.length - 200));
    };
    child.stdout.on("data", record);
    child.stderr.on("data", record);
    const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
    const deadline = Date.now() + 90_000;
    for (;;) {
      const early = await Promise.race([exited, delay(200).then(() => null)]);
      if (early) {
        throw new Error(`BusFlow.Host exited (${early.code ?? early.signal}):\n${this.output.join("\n")}`);
      }

      try {
        const ready = await fetch(`${this.baseUrl}/health/ready`);
        if (ready.ok) {
          return this;
        }
      } catch {
        // Not listening yet.
      }

      if (Date.now() > deadline) {
        throw new Error(`BusFlow.Host not ready within 90 s:\n${this.output.join("\n")}`);
      }
    }
  }

  /** SIGKILL: no shutdown, no drain, as a crashed server. */
  async kill() {
    const child = this.process;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGKILL");
      await exited;
    }

    this.process = null;
  }

  async dispose() {
    await this.kill();
    rmSync(this.directory, { recursive: true, force: true });
  }
}

export function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Collects a watch's events until it ends by itself; throws when it has not within `timeoutMs` (the watch is closed). */
export async function collect(watch, timeoutMs = 60_000) {
  const events = [];
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    watch.close();
  }, timeoutMs);
  try {
    for await (const event of watch) {
      events.push(event);
    }
  } finally {
    clearTimeout(timer);
  }

  if (timedOut) {
    throw new Error(`the watch of ${watch.pipelineId} did not end within ${timeoutMs} ms (${events.length} events)`);
  }

  return events;
}
