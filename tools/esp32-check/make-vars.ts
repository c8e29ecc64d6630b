/**
 * The compiler command Moddable's esp32 build runs for a module's C file,
 * read from the SDK's tools/mcconfig/make.esp32.mk by GNU make itself.
 *
 * mcconfig writes a makefile that sets a few variables (the paths, the
 * manifest's DIRECTORIES and MANAGED_COMPONENT_DIRS, the `build` section's
 * variables) and then includes make.esp32.mk; every module C file is compiled
 * with `$(CC) $(C_DEFINES) $(C_INCLUDES) $(C_FLAGS) $< -o $@`
 * (tools/mcconfig.js, MakeFile.generateObjectsRules). This file writes the
 * same kind of wrapper, includes the real make.esp32.mk, and asks make for
 * those four variables; nothing in the include list or the flags is
 * hard-coded here. IDF_VERSION (make.esp32.mk runs `git describe` in
 * IDF_PATH, which is not a git checkout here) is passed on the command line
 * from esp_idf_version.h.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface MakeInputs {
  readonly moddable: string;
  readonly idfPath: string;
  readonly idfVersion: string;
  readonly subclass: string;
  /** The output folder of the check (TMP_DIR, LIB_DIR and the generated sdkconfig.h live under it). */
  readonly out: string;
  readonly directories: readonly string[];
  readonly managedComponentDirs: readonly string[];
  /** Variables from the manifests' `build` sections (ESP32_SUBCLASS, C_FLAGS_SUBPLATFORM, ...). */
  readonly build: Readonly<Record<string, string>>;
  readonly debug?: boolean;
  readonly instrument?: boolean;
}

export interface ModuleCompile {
  readonly cc: string;
  readonly defines: string[];
  readonly includes: string[];
  readonly flags: string[];
  /** $(SDKCONFIG_H_DIR): where make.esp32.mk expects IDF's generated sdkconfig.h. */
  readonly sdkconfigDir: string;
  readonly tmpDir: string;
  readonly espArch: string;
}

const PRINTED = ['CC', 'C_DEFINES', 'C_INCLUDES', 'C_FLAGS', 'SDKCONFIG_H_DIR', 'TMP_DIR', 'ESP_ARCH'] as const;

/** Make treats '#' and '$' specially; the paths we pass have neither, but refuse rather than guess. */
function makeValue(value: string): string {
  if (/[#$\n]/.test(value.replace(/\$\((TMP_DIR|ESP32_SUBCLASS)\)/g, ''))) throw new Error(`esp32-check: cannot pass ${JSON.stringify(value)} to make`);
  return value;
}

export function moduleCompile(inputs: MakeInputs): ModuleCompile {
  const tmp = join(inputs.out, 'tmp', inputs.subclass);
  mkdirSync(tmp, { recursive: true });
  const lines = [
    `MODDABLE = ${makeValue(inputs.moddable)}`,
    `IDF_PATH = ${makeValue(inputs.idfPath)}`,
    `BUILD_DIR = ${makeValue(join(inputs.moddable, 'build'))}`,
    `XS_DIR = ${makeValue(join(inputs.moddable, 'xs'))}`,
    `TMP_DIR = ${makeValue(tmp)}`,
    `LIB_DIR = ${makeValue(join(tmp, 'lib'))}`,
    `BIN_DIR = ${makeValue(join(tmp, 'bin'))}`,
    ...(inputs.debug ? ['DEBUG = 1'] : []),
    ...(inputs.debug || inputs.instrument ? ['INSTRUMENT = 1'] : []),
    ...Object.entries(inputs.build).map(([name, value]) => `${name} = ${makeValue(value)}`),
    `ESP32_SUBCLASS = ${makeValue(inputs.subclass)}`,
    'DIRECTORIES = ' + inputs.directories.map((d) => `-I${makeValue(d)}`).join(' '),
    'MANAGED_COMPONENT_DIRS = ' + [...new Set(inputs.managedComponentDirs)].map(makeValue).join(' '),
    `include ${makeValue(join(inputs.moddable, 'tools/mcconfig/make.esp32.mk'))}`,
    '',
    ...printGoal(),
  ];
  const makefile = join(tmp, 'esp32-check.mk');
  writeFileSync(makefile, lines.join('\n') + '\n');
  return printCompile([makefile], tmp, inputs.idfVersion);
}

/**
 * The same, from the makefile mcconfig itself generated (`mcconfig -p esp32`
 * without -m writes it and runs nothing; it holds make.esp32.mk inline). Only
 * the print goal runs; of the makefile's $(shell ...) calls only the `:=`
 * ones are evaluated (uname, nproc, git describe), never recipes such as
 * KILL_SERIAL2XSBUG.
 */
export function moduleCompileFromMakefile(generated: string, out: string, idfVersion: string): ModuleCompile {
  mkdirSync(out, { recursive: true });
  const printer = join(out, 'esp32-check-print.mk');
  writeFileSync(printer, printGoal().join('\n') + '\n');
  return printCompile([generated, printer], out, idfVersion);
}

function printGoal(): string[] {
  return ['.PHONY: lockstep-print-compile', 'lockstep-print-compile:', ...PRINTED.map((name) => `\t@printf '%s\\n' '${name}=$(strip $(${name}))'`)];
}

function printCompile(makefiles: readonly string[], cwd: string, idfVersion: string): ModuleCompile {
  const tmp = cwd;
  const output = execFileSync('make', ['--no-print-directory', '-s', ...makefiles.flatMap((m) => ['-f', m]), `IDF_VERSION=${idfVersion}`, 'lockstep-print-compile'], {
    encoding: 'utf8',
    // make.esp32.mk's $(shell git -C $(ARDUINO_ROOT) describe --dirty) runs in the current folder
    // when ARDUINO_ROOT is empty: run make outside any checkout so that git never touches one.
    cwd: tmp,
    env: { ...process.env, MAKEFLAGS: '' },
    stdio: ['ignore', 'pipe', 'pipe'], // make.esp32.mk runs git describe in folders that are not checkouts
  });
  const values = new Map<string, string>();
  for (const line of output.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) values.set(line.slice(0, eq), line.slice(eq + 1));
  }
  const tokens = (name: string): string[] => (values.get(name) ?? '').split(/\s+/).filter((t) => t.length > 0);
  return {
    cc: values.get('CC') ?? '',
    defines: tokens('C_DEFINES'),
    includes: tokens('C_INCLUDES'),
    flags: tokens('C_FLAGS'),
    sdkconfigDir: values.get('SDKCONFIG_H_DIR') ?? '',
    tmpDir: values.get('TMP_DIR') ?? tmp,
    espArch: values.get('ESP_ARCH') ?? '',
  };
}

/** The items of a `NAME = \\` list in a generated makefile (one per continued line). */
export function makefileList(text: string, name: string): string[] {
  const match = new RegExp(`^${name} =[ \\t]*\\\\?\\n((?:\\t.*\\n)*)`, 'm').exec(text);
  if (match === null) return [];
  return match[1]!
    .split('\n')
    .map((line) => line.trim().replace(/\\$/, '').trim())
    .filter((line) => line.length > 0);
}

/** "-I", "dir" and "-Idir" both name a folder; returns the folders in order. */
export function includeFolders(includes: readonly string[]): string[] {
  const folders: string[] = [];
  for (let i = 0; i < includes.length; i++) {
    const token = includes[i]!;
    if (token === '-I' && i + 1 < includes.length) folders.push(includes[++i]!);
    else if (token.startsWith('-I')) folders.push(token.slice(2));
  }
  return folders;
}
