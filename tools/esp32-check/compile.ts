/**
 * Compiles C files with a given command line and counts diagnostics, and
 * measures structure sizes with an ILP32 Xtensa compiler.
 *
 * Compilers:
 * - `gcc` (host, LP64): `-fsyntax-only`, the module flags minus the
 *   target-only ones (-m*, -march=*, -c, -o, -MMD/-MP, -Wl,*).
 * - `xtensa-lx106-elf-gcc` (Debian, an ESP8266 compiler standing in for
 *   xtensa-esp32-elf-gcc; ILP32 with `int32_t` = `int`, as on the ESP32
 *   since IDF 5): real objects with the module flags unchanged, except that
 *   for RISC-V subclasses `-march=rv32imc` is dropped.
 * Sizes: a probe declares `char lockstep_size_<T>[sizeof(T)]` (and `_align_`)
 * and `xtensa-lx106-elf-nm -S` reads the sizes back from the object.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const XTENSA_CC = 'xtensa-lx106-elf-gcc';
export const XTENSA_NM = 'xtensa-lx106-elf-nm';

export interface Diagnostics {
  readonly ok: boolean;
  readonly errors: number;
  readonly warnings: number;
  readonly output: string;
  readonly command: string[];
}

function run(command: string, args: readonly string[]): Diagnostics {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  const output = (result.stdout ?? '') + (result.stderr ?? '') + (result.error ? String(result.error) : '');
  const errors = (output.match(/(^|\s)(fatal )?error:/gm) ?? []).length;
  const warnings = (output.match(/(^|\s)warning:/gm) ?? []).length;
  return { ok: result.status === 0 && errors === 0, errors: errors + (result.status !== 0 && errors === 0 ? 1 : 0), warnings, output, command: [command, ...args] };
}

/** Host flags: what `gcc -fsyntax-only` accepts of the target command line. */
export function hostFlags(args: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '-c' || a === '-MMD' || a === '-MP' || a.startsWith('-Wl,') || a.startsWith('-march=') || /^-m[a-z]/.test(a)) continue;
    if (a === '-o') {
      i++;
      continue;
    }
    out.push(a);
  }
  return out;
}

/** Xtensa stand-in flags: unchanged for Xtensa; RISC-V's -march is not an Xtensa option. */
export function xtensaFlags(args: readonly string[], espArch: string): string[] {
  return espArch === 'riscv' ? args.filter((a) => !a.startsWith('-march=')) : [...args];
}

/**
 * The host compiler reads the target's C library headers (picolibc for
 * Xtensa, the newlib-style headers IDF's esp_libc wraps), not glibc's:
 * IDF's platform_include/endian.h expects newlib's <machine/endian.h>.
 */
export function hostLibcFlags(): string[] {
  const gccInclude = spawnSync('gcc', ['-print-file-name=include'], { encoding: 'utf8' }).stdout.trim();
  return ['-nostdinc', '-isystem', gccInclude, '-isystem', XTENSA_LIBC_INCLUDE];
}
export const XTENSA_LIBC_INCLUDE = '/usr/lib/xtensa-lx106-elf/include';

export function syntaxCheck(file: string, args: readonly string[]): Diagnostics {
  return run('gcc', [...hostFlags(args), ...hostLibcFlags(), '-fsyntax-only', file]);
}

export function xtensaObject(file: string, args: readonly string[], espArch: string, object: string): Diagnostics {
  return run(XTENSA_CC, [...xtensaFlags(args, espArch), file, '-o', object]);
}

/** Every header the preprocessor reads for `file` (gcc -H), for the CONFIG_ report. */
export function headersRead(file: string, args: readonly string[], espArch: string): string[] {
  const pre = xtensaFlags(args, espArch).filter((a) => a !== '-c' && a !== '-MMD' && a !== '-MP');
  const result = spawnSync(XTENSA_CC, [...pre, '-E', '-H', file, '-o', '/dev/null'], { encoding: 'utf8' });
  const headers = new Set<string>();
  for (const line of (result.stderr ?? '').split('\n')) {
    const m = /^\.+ (.+)$/.exec(line);
    if (m !== null) headers.add(m[1]!);
  }
  return [...headers];
}

export interface Probe {
  /** C type names to measure. */
  readonly types: readonly string[];
  /** Text before the measurements (includes). */
  readonly prologue: string;
}

export interface Sizes {
  readonly diagnostics: Diagnostics;
  /** type → { size, align } in bytes; absent when the type is unknown to that view. */
  readonly sizes: Map<string, { size: number; align: number }>;
}

const symbolName = (type: string): string => type.replace(/[^A-Za-z0-9_]/g, '_');

export function measure(probe: Probe, args: readonly string[], espArch: string, dir: string, name: string): Sizes {
  const source = join(dir, `${name}.c`);
  const object = join(dir, `${name}.o`);
  const body = probe.types.map((t) => `char lockstep_size_${symbolName(t)}[sizeof(${t})];\nchar lockstep_align_${symbolName(t)}[_Alignof(${t})];`).join('\n');
  writeFileSync(source, `${probe.prologue}\n/* measurements (tools/esp32-check) */\n${body}\n`);
  const diagnostics = run(XTENSA_CC, [...xtensaFlags(args, espArch), '-fno-common', source, '-o', object]);
  const sizes = new Map<string, { size: number; align: number }>();
  if (!diagnostics.ok) return { diagnostics, sizes };
  const nm = spawnSync(XTENSA_NM, ['-S', object], { encoding: 'utf8' });
  const found = new Map<string, number>();
  for (const line of nm.stdout.split('\n')) {
    const m = /^[0-9a-f]+ ([0-9a-f]+) [A-Za-z] (lockstep_(size|align)_\w+)$/.exec(line.trim());
    if (m !== null) found.set(m[2]!, parseInt(m[1]!, 16));
  }
  for (const t of probe.types) {
    const size = found.get(`lockstep_size_${symbolName(t)}`);
    const align = found.get(`lockstep_align_${symbolName(t)}`);
    if (size !== undefined && align !== undefined) sizes.set(t, { size, align });
  }
  return { diagnostics, sizes };
}
