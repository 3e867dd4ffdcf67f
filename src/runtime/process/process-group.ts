import { readFileSync, readdirSync } from 'node:fs';

/** Fields of /proc/PID/stat we rely on (see proc(5)). */
export interface ProcStat {
  pid: number;
  /** Command name (at most 15 bytes). */
  comm: string;
  ppid: number;
  pgid: number;
  /** Start time in clock ticks since boot: tells a live process from a reused pid. */
  startTime: number;
}

/** Reads /proc/PID/stat; null when the process is gone or a zombie. */
export function procStat(pid: number): ProcStat | null {
  let raw: string;
  try {
    raw = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // comm (field 2) may contain spaces and parentheses: split after the last ')'.
  const close = raw.lastIndexOf(')');
  const comm = raw.slice(raw.indexOf('(') + 1, close);
  const rest = raw.slice(close + 2).split(' ');
  // rest[0] is field 3 (state); ppid is field 4, pgrp field 5, starttime field 22.
  const ppid = Number(rest[1]);
  const pgid = Number(rest[2]);
  const startTime = Number(rest[19]);
  if (rest[0] === 'Z' || !Number.isFinite(pgid)) return null;
  return { pid, comm, ppid, pgid, startTime };
}

/** Live (non-zombie) processes in process group `pgid`. */
export function groupProcesses(pgid: number): ProcStat[] {
  const out: ProcStat[] = [];
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    const st = procStat(pid);
    if (st && st.pgid === pgid) out.push(st);
  }
  return out;
}

/** Live (non-zombie) pids in process group `pgid`. */
export function groupMembers(pgid: number): number[] {
  return groupProcesses(pgid).map((p) => p.pid);
}

const SHELLS = new Set(['sh', 'dash', 'bash', 'ash', 'zsh', 'ksh', 'mksh']);

/**
 * The processes of a group that should get SIGTERM on a graceful stop: all
 * but `exclude` and shells that still wait for children. A shell running a
 * Procfile command (`sh -c 'node server.js'`; dash does not exec the last
 * command) dies at once on SIGTERM, and its death ends the sandbox or triggers
 * the group clean-up before the app has finished its own shutdown; left alone,
 * it exits by itself when the app does.
 */
export function termTargets(pgid: number, exclude: ReadonlySet<number>): number[] {
  const procs = groupProcesses(pgid).filter((p) => !exclude.has(p.pid));
  const parents = new Set(procs.map((p) => p.ppid));
  return procs.filter((p) => !(SHELLS.has(p.comm) && parents.has(p.pid))).map((p) => p.pid);
}

/** Sends `signal` to each of `pids`, ignoring processes that are already gone. */
export function signalEach(pids: readonly number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // exited meanwhile
    }
  }
}

/** Sends `signal` to the whole group; false when no member was left. */
export function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  }
}

/**
 * Resolves true once `alive()` lists no process (zombies count as gone: they
 * have released everything), false after `timeoutMs`. SIGKILL is delivered
 * asynchronously: a killed process may still be tearing down when kill() returns.
 */
export async function untilGone(alive: () => number[], timeoutMs = 2000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (alive().length > 0) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}
