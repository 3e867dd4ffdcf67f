import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { EphError } from '../../core/errors.ts';
import type { AddressBlock } from './address-pool.ts';
import { procStat, signalEach, untilGone } from './process-group.ts';

/** Names of the kernel objects that belong to one instance. */
export interface NamespaceNames {
  /** Network namespace, e.g. `eph-1a2b3c4d`. */
  ns: string;
  /** Host end of the veth pair (interface names are limited to 15 bytes). */
  hostVeth: string;
}

/** Where iproute2 keeps named namespaces. */
const NETNS_DIR = '/run/netns';

const INSTANCE_LABEL = /^eph-([0-9a-f]{8})(?:\.|$)/;

/**
 * Derives namespace and veth names from an instance hostname: the 8 hex
 * digits of `eph-xxxxxxxx.<domain>`, or a hash for any other hostname.
 * `prefix` (1..6 chars of [a-z0-9]) keeps separate drivers (tests) apart.
 */
export function namesFor(hostname: string, prefix: string): NamespaceNames {
  const hex = INSTANCE_LABEL.exec(hostname)?.[1] ?? createHash('sha256').update(hostname).digest('hex').slice(0, 8);
  return { ns: `${prefix}-${hex}`, hostVeth: `v${prefix}${hex}` };
}

/**
 * Names for a spare namespace, made before any instance needs it: `w` and 7
 * random hex digits (`eph-w3f09a1c`), which no hostname-derived name has
 * (those are all hex), within the 15 bytes of an interface name.
 */
export function spareNamesFor(prefix: string): NamespaceNames {
  const id = `w${randomBytes(4).toString('hex').slice(0, 7)}`;
  return { ns: `${prefix}-${id}`, hostVeth: `v${prefix}${id}` };
}

/** Matches the namespace names `namesFor` and `spareNamesFor` produce for `prefix`. */
export function namespacePattern(prefix: string): RegExp {
  return new RegExp(`^${prefix}-(?:[0-9a-f]{8}|w[0-9a-f]{7})$`);
}

/** Matches the host veth names `namesFor` and `spareNamesFor` produce for `prefix`. */
export function vethPattern(prefix: string): RegExp {
  return new RegExp(`^v${prefix}(?:[0-9a-f]{8}|w[0-9a-f]{7})$`);
}

/** Runs `ip ARGS` (optionally feeding a -batch script on stdin) and returns its stdout. */
export function ip(args: string[], stdin?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile('ip', args, { timeout: 10_000 }, (err, stdout, stderr) => {
      if (err) reject(new EphError('START_FAILED', `ip ${args.join(' ')}: ${stderr.trim() || err.message}`, { cause: err }));
      else resolve(stdout);
    });
    if (stdin !== undefined) child.stdin?.end(stdin);
  });
}

/**
 * Creates the namespace, a veth pair with the namespace end named eth0,
 * the /30 addresses, `lo` up and a default route via the host end (what
 * the app may reach through it is the firewall's decision, firewall.ts).
 * A leftover namespace of the same name is replaced.
 */
export async function createNamespace(names: NamespaceNames, block: AddressBlock): Promise<void> {
  if (namespaceExists(names.ns) || linkExists(names.hostVeth)) await deleteNamespace(names);
  const p = block.prefixLength;
  try {
    // Two `ip` runs in all: starting an instance is on the wake-up path.
    await ip(['-batch', '-'], [
      `netns add ${names.ns}`,
      `link add ${names.hostVeth} type veth peer name eth0 netns ${names.ns}`,
      `addr add ${block.hostIp}/${p} dev ${names.hostVeth}`,
      `link set ${names.hostVeth} up`,
      '',
    ].join('\n'));
    await ip(['-n', names.ns, '-batch', '-'], [
      'link set lo up',
      `addr add ${block.nsIp}/${p} dev eth0`,
      'link set eth0 up',
      `route add default via ${block.hostIp}`,
      '',
    ].join('\n'));
  } catch (e) {
    await deleteNamespace(names);
    throw e;
  }
}

/** Deletes the namespace (which destroys the veth pair) and a stray host veth; never throws. */
export async function deleteNamespace(names: NamespaceNames): Promise<void> {
  if (namespaceExists(names.ns)) await ip(['netns', 'delete', names.ns]).catch(() => undefined);
  if (linkExists(names.hostVeth)) await ip(['link', 'delete', names.hostVeth]).catch(() => undefined);
}

/**
 * Gives the namespace `ns` a second name `alias` (what `ip netns add` does:
 * a bind mount under /run/netns), replacing a leftover of that name, so that
 * an instance running in a spare namespace is still found under the name
 * derived from its hostname. `ip netns delete ALIAS` removes the name only.
 */
export async function aliasNamespace(ns: string, alias: string): Promise<void> {
  if (namespaceExists(alias)) await ip(['netns', 'delete', alias]).catch(() => undefined);
  await writeFile(`${NETNS_DIR}/${alias}`, '', { flag: 'wx', mode: 0o444 });
  try {
    await run('mount', ['--bind', `${NETNS_DIR}/${ns}`, `${NETNS_DIR}/${alias}`]);
  } catch (e) {
    await ip(['netns', 'delete', alias]).catch(() => undefined);
    throw e;
  }
}

/** Removes the name `alias` given by {@link aliasNamespace}; never throws. */
export async function deleteAlias(alias: string): Promise<void> {
  if (namespaceExists(alias)) await ip(['netns', 'delete', alias]).catch(() => undefined);
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 10_000 }, (err, _stdout, stderr) => {
      if (err) reject(new EphError('START_FAILED', `${cmd} ${args.join(' ')}: ${stderr.trim() || err.message}`, { cause: err }));
      else resolve();
    });
  });
}

// Where iproute2 keeps named namespaces and the kernel lists interfaces:
// checking them spares an `ip` run that would fail in the common case.
/** Whether a namespace of that name exists (no `ip` run). */
export function namespaceExists(ns: string): boolean {
  return existsSync(`${NETNS_DIR}/${ns}`);
}

/** Whether an interface of that name exists in the host namespace (no `ip` run). */
export function linkExists(name: string): boolean {
  return existsSync(`/sys/class/net/${name}`);
}

/** Names of all network namespaces on this host. */
export async function listNamespaces(): Promise<string[]> {
  const out = await ip(['netns', 'list']);
  return out.split('\n').map((l) => l.trim().split(/\s+/)[0] ?? '').filter((n) => n.length > 0);
}

/** Names of all veth interfaces in the host namespace. */
export async function listVeths(): Promise<string[]> {
  const out = await ip(['-o', 'link', 'show', 'type', 'veth']);
  const names: string[] = [];
  for (const line of out.split('\n')) {
    const m = /^\d+:\s+([^:@\s]+)/.exec(line);
    if (m) names.push(m[1]!);
  }
  return names;
}

/** Pids of processes whose network namespace is `ns`. */
export async function namespacePids(ns: string): Promise<number[]> {
  const out = await ip(['netns', 'pids', ns]).catch(() => '');
  return out.split('\n').map(Number).filter((n) => Number.isInteger(n) && n > 0);
}

/** SIGKILLs every process left in the namespace and waits (up to 2 s) until they are gone. */
export async function killNamespacePids(ns: string): Promise<void> {
  const pids = await namespacePids(ns);
  signalEach(pids, 'SIGKILL');
  await untilGone(() => pids.filter((p) => procStat(p) !== null));
}

/** IPv4 addresses configured on the host's interfaces. */
export async function hostAddresses(): Promise<Set<string>> {
  const out = await ip(['-o', '-4', 'addr', 'show']);
  const set = new Set<string>();
  for (const m of out.matchAll(/\binet\s+(\d+\.\d+\.\d+\.\d+)/g)) set.add(m[1]!);
  return set;
}
