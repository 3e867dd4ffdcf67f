/**
 * A namespace prefix and subnet of this test process's own. Test files run
 * side by side, and a cloud's start-up recovery deletes every namespace of its
 * prefix it does not know: two files sharing a prefix would pull the network
 * out from under each other's instances. The pid makes the prefix unique
 * among live processes; `tag` keeps families of fixtures apart.
 */
let seq = 0;

export function driverIsolation(tag: string): { prefix: string; subnet: string } {
  let n = process.pid * 8 + (seq++ % 8);
  // Never `eph`, the prefix of a real `eph serve` on this machine.
  if (`${tag}${n.toString(36)}` === 'eph') n = process.pid * 8 + (seq++ % 8);
  const prefix = `${tag}${n.toString(36)}`;
  if (prefix.length > 6) throw new Error(`namespace prefix ${prefix} is too long`);
  // A shared /24 would only make the driver skip addresses in use; it is the prefix that must differ.
  const block = n % 10240;
  return { prefix, subnet: `10.${200 + Math.floor(block / 256)}.${block % 256}.0/24` };
}
