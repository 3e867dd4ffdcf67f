import { readFileSync, readdirSync } from 'node:fs';

/** Fields of /proc/PID/stat we rely on (see proc(5)). */
export interface ProcStat {
  pid: number;
  pgid: number;
  /** Start time in clock ticks since boot: tells a live process from a reused pid. */
  startTime: number;
}

/** Reads /proc/PID/stat; null when the process is gone. */
export function procStat(pid: number): ProcStat | null {
  let raw: string;
  try {
    raw = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // comm (field 2) may contain spaces and parentheses: split after the last ')'.
  const rest = raw.slice(raw.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); pgrp is field 5, starttime field 22.
  const pgid = Number(rest[2]);
  const startTime = Number(rest[19]);
  if (rest[0] === 'Z' || !Number.isFinite(pgid)) return null;
  return { pid, pgid, startTime };
}

/** Live (non-zombie) pids in process group `pgid`. */
export function groupMembers(pgid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    const st = procStat(pid);
    if (st && st.pgid === pgid) out.push(pid);
  }
  return out;
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
