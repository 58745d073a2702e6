// Starts, watches and stops one Serving server process (the built Serving.Server.dll), so a
// scenario can read its RSS, SIGTERM it or kill -9 it and start it again on the same data directory.
import { spawn } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sleep } from './http.mjs';

/** A free TCP port on 127.0.0.1 (the OS picks it; closed again before the server binds it). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

export function newDataDirectory(label) {
  return mkdtempSync(join(tmpdir(), `serving-loadtest-${label}-`));
}

/**
 * One server process. `settings` are Serving configuration keys (without the `Serving:` prefix),
 * passed as command-line arguments; `hostArgs` are other command-line arguments
 * (e.g. `--shutdownTimeoutSeconds=3`); `port` keeps one port across restarts (a balancer names it).
 */
export class ServerProcess {
  constructor({ dll, dataDirectory, settings = {}, hostArgs = [], label = 'server', port = null }) {
    this.dll = dll;
    this.fixedPort = port;
    this.dataDirectory = dataDirectory;
    this.settings = settings;
    this.hostArgs = hostArgs;
    this.label = label;
    this.child = null;
    this.exit = null;
    this.starts = 0;
  }

  get pid() {
    return this.child?.pid ?? null;
  }

  get isRunning() {
    return this.child !== null && this.exit === null;
  }

  get logPath() {
    return join(this.dataDirectory, `${this.label}.log`);
  }

  /** Starts the process (on a new port each time, unless given one) and waits until /health/ready answers 200. */
  async start(readyTimeoutMs = 120_000) {
    this.port = this.fixedPort ?? await freePort();
    this.url = `http://127.0.0.1:${this.port}`;
    const args = [
      this.dll,
      `--urls=${this.url}`,
      `--Serving:DataDirectory=${this.dataDirectory}`,
      '--Logging:LogLevel:Default=Warning',
      '--Logging:LogLevel:Microsoft.AspNetCore=Warning',
      ...Object.entries(this.settings).map(([key, value]) => `--Serving:${key}=${value}`),
      ...this.hostArgs,
    ];
    const log = openSync(this.logPath, 'a');
    this.exit = null;
    this.child = spawn('dotnet', args, { stdio: ['ignore', log, log], env: { ...process.env, DOTNET_CLI_TELEMETRY_OPTOUT: '1' } });
    this.starts++;
    const child = this.child;
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => {
      if (this.child === child) {
        this.exit = { code, signal };
      }
      resolve({ code, signal });
    }));
    const deadline = Date.now() + readyTimeoutMs;
    while (Date.now() < deadline) {
      if (this.exit) {
        throw new Error(`${this.label} exited during start (${JSON.stringify(this.exit)}); log: ${this.logPath}\n${this.logTail()}`);
      }
      try {
        const response = await fetch(`${this.url}/health/ready`, { signal: AbortSignal.timeout(2000) });
        await response.arrayBuffer();
        if (response.status === 200) {
          return this;
        }
      } catch {
        // not listening yet
      }
      await sleep(200);
    }
    await this.kill();
    throw new Error(`${this.label} not ready within ${readyTimeoutMs / 1000} s; log: ${this.logPath}\n${this.logTail()}`);
  }

  /** Resident set size in bytes, from /proc/PID/status (null when the process is gone). */
  rssBytes() {
    try {
      const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
      const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
      return match ? Number(match[1]) * 1024 : null;
    } catch {
      return null;
    }
  }

  signal(name) {
    if (this.isRunning) {
      this.child.kill(name);
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit. */
  async stop(graceMs = 30_000) {
    if (!this.isRunning) {
      return this.exit;
    }
    this.signal('SIGTERM');
    const timer = setTimeout(() => this.signal('SIGKILL'), graceMs);
    const exit = await this.exited;
    clearTimeout(timer);
    return exit;
  }

  async kill() {
    if (!this.isRunning) {
      return this.exit;
    }
    this.signal('SIGKILL');
    return this.exited;
  }

  logTail(lines = 30) {
    try {
      return readFileSync(this.logPath, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** Log lines at error level or above (`fail:` / `crit:` in the console format). */
  errorLogLines() {
    try {
      return readFileSync(this.logPath, 'utf8').split('\n').filter((line) => /^(fail|crit): /.test(line));
    } catch {
      return [];
    }
  }

  removeData() {
    rmSync(this.dataDirectory, { recursive: true, force: true });
  }
}
