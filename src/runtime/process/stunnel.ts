import type { LaunchTunnel } from '../driver.ts';

/** Debian names the binary stunnel4; other systems call it stunnel. */
export const STUNNEL_NAMES = ['stunnel4', 'stunnel'] as const;

// Options that would make stunnel daemonize, drop privileges it does not
// have, or write outside the sandbox; the instance copy replaces them.
const DROPPED = new Set(['foreground', 'pid', 'setuid', 'setgid', 'chroot', 'output']);

/**
 * The instance's copy of a user's stunnel.conf: forces `foreground = yes`
 * (so stunnel lives and dies with the app and logs to the instance log) and
 * an empty `pid =` (no pid file: the sandbox has nowhere to write one).
 * Relative paths (e.g. `PSKsecrets = psk.txt`) keep working because stunnel
 * runs in the directory that holds stunnel.conf.
 *
 * @example
 * instanceStunnelConfig('[db]\nclient = yes\naccept = 127.0.0.1:5432\nconnect = db.example:27037\nPSKsecrets = psk.txt\n')
 */
export function instanceStunnelConfig(source: string): string {
  const kept = source.split(/\r?\n/).filter((line) => {
    const m = /^\s*([A-Za-z]+)\s*=/.exec(line);
    return !(m && DROPPED.has(m[1]!.toLowerCase()));
  });
  return ['; instance copy written by ephemeric', 'foreground = yes', 'pid =', ...kept].join('\n') + '\n';
}

/**
 * Prefixes `argv` with a shell that starts stunnel in the background and then
 * execs the app, so the app keeps its pid and stunnel shares its sandbox,
 * namespace and process group (and is killed with them).
 */
export function withStunnel(argv: readonly string[], stunnel: string, conf: string): string[] {
  return ['/bin/sh', '-c', '"$1" "$2" & shift 2; exec "$@"', 'eph-stunnel', stunnel, conf, ...argv];
}

/**
 * The stunnel.conf of an instance's attached appliances: one client section
 * per tunnel, accepting on the instance's own loopback and connecting to
 * `connectHost` (the host's address seen from the instance), each with its
 * own identity from `pskPath`.
 *
 * @example
 * attachmentStunnelConfig([{ name: 'mydb', localPort: 5432, endpointPort: 27037, identity: 'attach-1', key: '…' }], '10.213.0.1', '/run/eph/attach-psk.txt')
 */
export function attachmentStunnelConfig(tunnels: readonly LaunchTunnel[], connectHost: string, pskPath: string): string {
  const lines = ['; attached appliances, written by ephemeric', 'foreground = yes', 'pid ='];
  for (const t of tunnels) {
    lines.push('', `[${t.name}]`, 'client = yes', `accept = 127.0.0.1:${t.localPort}`, `connect = ${connectHost}:${t.endpointPort}`, `PSKsecrets = ${pskPath}`, `PSKidentity = ${t.identity}`);
  }
  return lines.join('\n') + '\n';
}

/** The psk.txt beside {@link attachmentStunnelConfig}: `identity:key` per tunnel. */
export function attachmentPskFile(tunnels: readonly LaunchTunnel[]): string {
  return tunnels.map((t) => `${t.identity}:${t.key}\n`).join('');
}

/**
 * Like {@link withStunnel}, but the app starts only once stunnel accepts on
 * every port of `ports` on 127.0.0.1 (read from /proc/net/tcp, which shows
 * the instance's own network namespace), or after 10 s at the latest: an
 * app that connects to its database while it boots finds the tunnel there.
 */
export function withStunnelReady(argv: readonly string[], stunnel: string, conf: string, ports: readonly number[]): string[] {
  // 127.0.0.1:PORT listening, as /proc/net/tcp writes it: `0100007F:1538 00000000:0000 0A`.
  const wanted = ports.map((p) => `0100007F:${p.toString(16).toUpperCase().padStart(4, '0')} 00000000:0000 0A`);
  const ready = wanted.map((w) => `grep -q '${w}' /proc/net/tcp`).join(' && ');
  const script = `"$1" "$2" & shift 2; n=0; until { ${ready}; } || [ $n -ge 200 ]; do sleep 0.05; n=$((n+1)); done; exec "$@"`;
  return ['/bin/sh', '-c', script, 'eph-tunnels', stunnel, conf, ...argv];
}
