/**
 * A seccomp filter for sandboxed apps, as the classic BPF program that
 * bubblewrap's `--seccomp FD` loads (an array of `struct sock_filter`, 8 bytes
 * each, native byte order). Written by hand so that no native module or
 * libseccomp is needed; x86_64 only (on other machines there is no filter).
 *
 * The program:
 *   1. refuses every call of another architecture (i386 `int 0x80`, x32 numbers):
 *      the number lists below would not mean the same calls there;
 *   2. refuses the calls in {@link BLOCKED_SYSCALLS} with EPERM;
 *   3. refuses `unshare`/`clone` with CLONE_NEWUSER with EPERM (unless user
 *      namespaces are allowed), and `clone3` with ENOSYS: its flags sit in
 *      memory that seccomp cannot read, and C libraries fall back to `clone`;
 *   4. allows everything else.
 */

/** x86_64 numbers of calls an app has no business making; mostly kernel attack surface. */
export const BLOCKED_SYSCALLS: Readonly<Record<string, number>> = {
  ptrace: 101,
  process_vm_readv: 310,
  process_vm_writev: 311,
  keyctl: 250,
  add_key: 248,
  request_key: 249,
  mount: 165,
  umount2: 166,
  pivot_root: 155,
  setns: 308,
  open_tree: 428,
  move_mount: 429,
  fsopen: 430,
  fsconfig: 431,
  fsmount: 432,
  fspick: 433,
  mount_setattr: 442,
  open_by_handle_at: 304,
  kexec_load: 246,
  kexec_file_load: 320,
  init_module: 175,
  finit_module: 313,
  delete_module: 176,
  bpf: 321,
  perf_event_open: 298,
  userfaultfd: 323,
  acct: 163,
  swapon: 167,
  swapoff: 168,
  reboot: 169,
};

const NR_CLONE = 56;
const NR_UNSHARE = 272;
const NR_CLONE3 = 435;
const CLONE_NEWUSER = 0x10000000;
/** Calls of the x32 ABI carry this bit in their number. */
const X32_SYSCALL_BIT = 0x40000000;
const AUDIT_ARCH_X86_64 = 0xc000003e;

// struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6];
const OFF_NR = 0;
const OFF_ARCH = 4;
/** Low 32 bits of args[0] on a little-endian machine: where clone/unshare flags are. */
const OFF_ARG0_LOW = 16;

const BPF_LD_W_ABS = 0x20;
const BPF_JEQ_K = 0x15;
const BPF_JGE_K = 0x35;
const BPF_JSET_K = 0x45;
const BPF_RET_K = 0x06;

const RET_ALLOW = 0x7fff0000;
const RET_ERRNO = 0x00050000;
const EPERM = 1;
const ENOSYS = 38;

/** Where a jump goes: the next instruction, or the instruction with that label. */
type Target = 'next' | 'deny' | 'allow' | 'enosys' | 'flags';

interface Insn {
  code: number;
  k: number;
  jt?: Target;
  jf?: Target;
  label?: Exclude<Target, 'next'>;
}

export interface SeccompOptions {
  /** Let the app create user namespaces (a plan's `userns=on`). */
  allowUserns: boolean;
}

/** True when {@link seccompProgram} has a filter for this machine. */
export function seccompSupported(): boolean {
  return process.arch === 'x64';
}

/** The filter as bytes for bubblewrap's `--seccomp FD` (about 40 instructions). */
export function seccompProgram(opts: SeccompOptions): Buffer {
  const ld = (off: number, label?: 'flags'): Insn => ({ code: BPF_LD_W_ABS, k: off, ...(label ? { label } : {}) });
  const jeq = (k: number, jt: Target, jf: Target = 'next'): Insn => ({ code: BPF_JEQ_K, k, jt, jf });
  const prog: Insn[] = [
    ld(OFF_ARCH),
    jeq(AUDIT_ARCH_X86_64, 'next', 'deny'),
    ld(OFF_NR),
    { code: BPF_JGE_K, k: X32_SYSCALL_BIT, jt: 'deny', jf: 'next' },
    ...Object.values(BLOCKED_SYSCALLS).map((nr) => jeq(nr, 'deny')),
  ];
  if (!opts.allowUserns) {
    prog.push(
      jeq(NR_CLONE3, 'enosys'),
      jeq(NR_CLONE, 'flags'),
      jeq(NR_UNSHARE, 'flags', 'allow'),
      // A now holds the flags of clone or unshare.
      ld(OFF_ARG0_LOW, 'flags'),
      { code: BPF_JSET_K, k: CLONE_NEWUSER, jt: 'deny', jf: 'allow' },
    );
  }
  return assemble([
    ...prog,
    { code: BPF_RET_K, k: RET_ALLOW, label: 'allow' },
    { code: BPF_RET_K, k: RET_ERRNO | EPERM, label: 'deny' },
    { code: BPF_RET_K, k: RET_ERRNO | ENOSYS, label: 'enosys' },
  ]);
}

/** Resolves labels into relative forward jump offsets and packs the instructions. */
function assemble(prog: Insn[]): Buffer {
  const at = new Map<Target, number>();
  prog.forEach((insn, i) => {
    if (insn.label) at.set(insn.label, i);
  });
  const out = Buffer.alloc(prog.length * 8);
  prog.forEach((insn, i) => {
    const off = (t: Target | undefined): number => {
      if (t === undefined || t === 'next') return 0;
      const d = at.get(t)! - (i + 1);
      // Classic BPF jumps only forward, at most 255 instructions.
      if (d < 0 || d > 255) throw new RangeError(`seccomp jump out of range at ${i}`);
      return d;
    };
    out.writeUInt16LE(insn.code, i * 8);
    out.writeUInt8(off(insn.jt), i * 8 + 2);
    out.writeUInt8(off(insn.jf), i * 8 + 3);
    out.writeUInt32LE(insn.k >>> 0, i * 8 + 4);
  });
  return out;
}
