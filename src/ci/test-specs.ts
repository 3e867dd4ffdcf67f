import { spawn } from 'node:child_process';
import { parseReport, ReportFormatError, type TestResult } from './test-report.ts';

/** `http:/tests` (the app runs its own tests) or `cmd:<command>` (a local command against the instance). */
export type TestSpec = { kind: 'http'; path: string; raw: string } | { kind: 'cmd'; command: string; raw: string };

export class SpecError extends Error {
  readonly code = 'CI_BAD_TEST_SPEC';
}

export function parseSpec(raw: string): TestSpec {
  if (raw.startsWith('http:')) {
    const path = raw.slice(5);
    if (!path.startsWith('/')) throw new SpecError(`--test ${raw}: expected http:/PATH, e.g. http:/tests`);
    return { kind: 'http', path, raw };
  }
  if (raw.startsWith('cmd:')) {
    let command = raw.slice(4).trim();
    // `cmd:'curl …'` as the docs write it: the quotes are the user's, not part of the command.
    if (command.length >= 2 && command[0] === command.at(-1) && (command[0] === "'" || command[0] === '"')) command = command.slice(1, -1);
    if (!command) throw new SpecError(`--test ${raw}: empty command`);
    return { kind: 'cmd', command, raw };
  }
  throw new SpecError(`--test ${raw}: expected http:/PATH or cmd:'COMMAND'`);
}

export interface Target {
  /** The instance's hostname (sent as Host). */
  hostname: string;
  /** Where the gate listens, e.g. http://127.0.0.1:8080. */
  gateUrl: string;
  /** The instance's public URL, as the API shows it. */
  instanceUrl: string;
}

/** Runs one spec against the instance; a spec that cannot be read is one failed test, named so. */
export async function runSpec(spec: TestSpec, target: Target, signal: AbortSignal): Promise<TestResult[]> {
  return spec.kind === 'http' ? runHttp(spec, target, signal) : runCommand(spec, target, signal);
}

async function runHttp(spec: Extract<TestSpec, { kind: 'http' }>, target: Target, signal: AbortSignal): Promise<TestResult[]> {
  const { request } = await import('undici');
  const t0 = Date.now();
  let status = 0;
  let text = '';
  let type = '';
  try {
    const res = await request(new URL(spec.path, target.gateUrl), { headers: { host: target.hostname, accept: 'application/json, application/xml, text/plain' }, signal, bodyTimeout: 0, headersTimeout: 0 });
    status = res.statusCode;
    type = String(res.headers['content-type'] ?? '');
    text = await res.body.text();
  } catch (e) {
    return [{ suite: spec.raw, name: `GET ${spec.path}`, status: 'fail', message: `no answer: ${e instanceof Error ? e.message : String(e)}`, durationMs: Date.now() - t0 }];
  }
  try {
    return parseReport(text, spec.raw, type);
  } catch (e) {
    if (!(e instanceof ReportFormatError)) throw e;
    return [{ suite: spec.raw, name: `GET ${spec.path}`, status: 'fail', message: `HTTP ${status}: ${e.message}: ${text.slice(0, 200)}`, durationMs: Date.now() - t0 }];
  }
}

function runCommand(spec: Extract<TestSpec, { kind: 'cmd' }>, target: Target, signal: AbortSignal): Promise<TestResult[]> {
  return new Promise((resolvePromise) => {
    const t0 = Date.now();
    const env = { ...process.env, EPH_INSTANCE_URL: target.instanceUrl, EPH_INSTANCE_HOST: target.hostname, EPH_GATE_URL: target.gateUrl };
    const child = spawn('sh', ['-c', spec.command], { env, stdio: ['ignore', 'pipe', 'pipe'], signal });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out = (out + c.toString('utf8')).slice(-1_000_000)));
    child.stderr.on('data', (c: Buffer) => (err = (err + c.toString('utf8')).slice(-4000)));
    child.once('error', (e) => resolvePromise([{ suite: spec.raw, name: spec.command, status: 'fail', message: e.message, durationMs: Date.now() - t0 }]));
    child.once('close', (code, sig) => {
      const durationMs = Date.now() - t0;
      const failedExit = code !== 0;
      const why = sig ? `killed by ${sig}` : `exit ${code}`;
      let results: TestResult[] | null = null;
      try {
        if (out.trim()) results = parseReport(out, spec.raw);
      } catch {
        results = null;
      }
      // A command's own TAP/JUnit/JSON counts test by test; a non-zero exit fails the run even then.
      if (results) {
        if (failedExit && !results.some((r) => r.status === 'fail')) results.push({ suite: spec.raw, name: spec.command, status: 'fail', message: why, durationMs });
        resolvePromise(results);
        return;
      }
      const tail = (err.trim() || out.trim()).split('\n').slice(-3).join(' / ');
      resolvePromise([{ suite: spec.raw, name: spec.command, status: failedExit ? 'fail' : 'pass', ...(failedExit ? { message: `${why}${tail ? `: ${tail}` : ''}` } : {}), durationMs }]);
    });
  });
}
